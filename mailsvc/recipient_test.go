package mailsvc_test

import (
	"context"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// fakeDir is the service with aliases, mailing lists and postmasters
// resolved from its tables, as service.Local.ResolveRecipient resolves
// them: accounts are the service's own (with their mailbox paths and
// usage); an account, then an alias, then a list, then postmaster@ and
// abuse@ of a local domain; a list leaves out its disabled members and
// checks its posting policy against the envelope sender. It records
// every resolution.
type fakeDir struct {
	*service.Local
	mu         sync.Mutex
	aliases    map[string]string    // address -> target address
	lists      map[string]*fakeList // address -> list
	postmaster map[string]string    // domain ("" for the bare postmaster) -> account address
	calls      []resolveCall        // every ResolveRecipient
}

// fakeList is a mailing list and its members (account addresses).
type fakeList struct {
	list    mailcluster.MailingList
	members []string
}

type resolveCall struct{ address, sender string }

var _ mailsvc.Directory = (*fakeDir)(nil)

func (d *fakeDir) ResolveRecipient(address, sender string) (*mailcluster.Recipient, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, resolveCall{address, sender})
	if strings.EqualFold(address, mailcluster.Postmaster) {
		return d.accounts(mailcluster.Postmaster, d.postmaster[""])
	}
	mb, dom, err := mailcluster.SplitAddress(address)
	if err != nil {
		return nil, err
	}
	addr := mb + "@" + dom
	if !d.IsLocalDomain(dom) {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "%s is not served here.", addr)
	}
	if _, err := d.Local.LookupAccount(addr); err == nil {
		return d.accounts(addr, addr)
	}
	if target, ok := d.aliases[addr]; ok {
		return d.accounts(addr, target)
	}
	if l, ok := d.lists[addr]; ok {
		r := &mailcluster.Recipient{Address: addr, List: &l.list}
		sender = strings.ToLower(sender)
		switch {
		case l.list.Policy == mailcluster.ListPostMembers && !slices.Contains(l.members, sender):
			return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only members may post to %s.", addr)
		case l.list.Policy == mailcluster.ListPostModerated && sender != l.list.Owner:
			owner, err := d.accounts(addr, l.list.Owner)
			if err != nil {
				return nil, err
			}
			r.Accounts, r.Review = owner.Accounts, true
			return r, nil
		}
		for _, m := range l.members {
			a, err := d.Local.LookupAccount(m)
			if err != nil {
				return nil, err
			}
			if !a.Disabled {
				r.Accounts = append(r.Accounts, a)
			}
		}
		return r, nil
	}
	if mb == mailcluster.Postmaster || mb == mailcluster.Abuse {
		if p, ok := d.postmaster[dom]; ok {
			return d.accounts(addr, p)
		}
	}
	return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "%s does not exist.", addr)
}

// accounts resolves addr to the account target (disabled or not: the
// session decides).
func (d *fakeDir) accounts(addr, target string) (*mailcluster.Recipient, error) {
	a, err := d.Local.LookupAccount(target)
	if err != nil {
		return nil, err
	}
	return &mailcluster.Recipient{Address: addr, Accounts: []*mailcluster.Account{a}}, nil
}

// resolved returns the resolutions made so far.
func (d *fakeDir) resolved() []resolveCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *fakeDir) addList(l mailcluster.MailingList, members ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lists[l.Address()] = &fakeList{list: l, members: members}
}

// MustOpenAddrEnv is MustOpenEnv whose mail service resolves recipients
// through a fakeDir, with the accounts carol and dave besides MustOpenEnv's,
// the alias sales@example.com -> bob@example.com, and postmaster@ and
// abuse@ of example.com (and the bare postmaster) delivered to carol.
func MustOpenAddrEnv(t *testing.T) (*env, *fakeDir) {
	t.Helper()
	var d *fakeDir
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	e := mustOpenEnvDir(t, log, func(svc *service.Service) mailsvc.Directory {
		d = &fakeDir{Local: mustLocal(svc), aliases: map[string]string{}, lists: map[string]*fakeList{}, postmaster: map[string]string{}}
		return d
	})
	ctx := service.SystemContext(context.Background(), "test")
	for _, mb := range []string{"carol", "dave"} {
		if _, err := e.svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: mb + "-pass-123"}); err != nil {
			t.Fatal(err)
		}
	}
	d.aliases["sales@example.com"] = "bob@example.com"
	d.postmaster["example.com"] = "carol@example.com"
	d.postmaster[""] = "carol@example.com"
	return e, d
}

// parsed parses a stored message; it fails the test when it is not a
// valid message.
func parsed(t *testing.T, stored string) *mail.Message {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(stored))
	if err != nil {
		t.Fatalf("stored message does not parse: %v\n%s", err, stored)
	}
	return m
}

// headerOf returns the header section of a stored message.
func headerOf(stored string) string {
	h, _, _ := strings.Cut(stored, "\r\n\r\n")
	return h + "\r\n"
}

// mailCounts returns the number of messages of each address.
func mailCounts(t *testing.T, e *env, addrs ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, a := range addrs {
		out[a] = len(messages(t, e, a))
	}
	return out
}

// wantNewMessages asserts how many messages each address received since
// before (absent: none).
func wantNewMessages(t *testing.T, e *env, before map[string]int, want map[string]int) {
	t.Helper()
	for a, n := range before {
		if got := len(messages(t, e, a)); got-n != want[a] {
			t.Errorf("%s received %d messages, want %d", a, got-n, want[a])
		}
	}
}

// last returns the newest message of addr (unique names start with the
// delivery time, and messages lists them in name order).
func last(t *testing.T, e *env, addr string) string {
	t.Helper()
	got := messages(t, e, addr)
	if len(got) == 0 {
		t.Fatalf("%s has no message", addr)
	}
	return got[len(got)-1]
}

// everyone is the accounts whose mailboxes the tests watch.
var everyone = []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com", "small@example.com"}

func TestAliasAndPostmasterDelivery(t *testing.T) {
	e, d := MustOpenAddrEnv(t)
	t.Run("Alias", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"Sales@Example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"bob@example.com": 1})
		got := messages(t, e, "bob@example.com")
		if !strings.HasSuffix(got[0], msg) || !strings.Contains(got[0], "for <bob@example.com>") {
			t.Fatalf("stored message:\n%s", got[0])
		}
		if calls := d.resolved(); !slices.Contains(calls, resolveCall{"Sales@Example.com", "sender@remote.test"}) {
			t.Fatalf("resolutions %v lack the alias with the envelope sender", calls)
		}
		// The alias's mail counts in the target's usage.
		if u := waitUsage(t, e, "bob", 1); u.Bytes != int64(len(got[0])) {
			t.Fatalf("bob's usage %+v, want %d bytes", u, len(got[0]))
		}
	})
	t.Run("AliasAndTargetGetOneCopy", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"sales@example.com", "bob@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"bob@example.com": 1})
	})
	t.Run("PostmasterAndAbuse", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"PostMaster@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if err := send(dial(t, e.inbound), "", []string{"abuse@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"carol@example.com": 2})
	})
	t.Run("BarePostmasterSession", func(t *testing.T) {
		srv := mailsvc.NewServer(e.store, d, mailsvc.ServerConfig{Hostname: "mx.test", Log: slog.New(slog.DiscardHandler)})
		got, err := srv.Rcpt("sender@remote.test", "Postmaster")
		if err != nil || !slices.Equal(got, []string{"carol@example.com"}) {
			t.Fatalf("RCPT TO:<Postmaster> holds %v, %v; want carol@example.com", got, err)
		}
		if _, err := srv.Rcpt("sender@remote.test", "postmasterx"); err == nil {
			t.Fatal("RCPT TO:<postmasterx> accepted")
		}
	})
	t.Run("BarePostmasterSMTP", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		c := dial(t, e.inbound)
		if err := c.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("postmaster", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"carol@example.com": 1})
	})
	t.Run("ErrUnknown", func(t *testing.T) {
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"nobody@example.com"}, msg), 550, smtp.EnhancedCode{5, 1, 1})
	})
	t.Run("ErrAliasTargetDisabled", func(t *testing.T) {
		d.mu.Lock()
		d.aliases["old@example.com"] = "off@example.com"
		d.mu.Unlock()
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"old@example.com"}, msg), 550, smtp.EnhancedCode{5, 2, 1})
	})
	t.Run("ErrAliasTargetFull", func(t *testing.T) {
		d.mu.Lock()
		d.aliases["tiny@example.com"] = "small@example.com"
		d.mu.Unlock()
		before := mailCounts(t, e, everyone...)
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"tiny@example.com"}, msg+lines(2500)), 552, smtp.EnhancedCode{5, 2, 2})
		wantNewMessages(t, e, before, nil)
	})
	t.Run("ErrRelay", func(t *testing.T) {
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"postmaster@elsewhere.test"}, msg), 554, smtp.EnhancedCode{5, 7, 1})
	})
}

// listMsg is a message with its own Reply-To (folded over two lines).
const listMsg = "From: Sender <sender@remote.test>\r\nReply-To: first@remote.test,\r\n second@remote.test\r\n" +
	"To: team@example.com\r\nSubject: news\r\n\r\nHello, team.\r\n"

func TestListDelivery(t *testing.T) {
	e, d := MustOpenAddrEnv(t)
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "team", Description: `Team "A" list`, Policy: mailcluster.ListPostAnyone,
		ReplyTo: mailcluster.ListReplyToList, Owner: "carol@example.com"}, "alice@example.com", "bob@example.com", "carol@example.com")
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "news", Policy: mailcluster.ListPostAnyone,
		ReplyTo: mailcluster.ListReplyToSender}, "alice@example.com", "dave@example.com")

	t.Run("ReplyToList", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "carol@example.com": 1})
		for _, a := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
			stored := last(t, e, a)
			m := parsed(t, stored)
			for field, want := range map[string]string{
				"List-Id":          `"Team \"A\" list" <team.example.com>`,
				"List-Post":        "<mailto:team@example.com>",
				"List-Unsubscribe": "<mailto:carol@example.com?subject=unsubscribe%20team@example.com>",
				"List-Owner":       "<mailto:carol@example.com>",
				"Precedence":       "list",
				"Subject":          "news",
			} {
				if v := m.Header[field]; len(v) != 1 || v[0] != want {
					t.Errorf("%s: %s = %q, want %q", a, field, v, want)
				}
			}
			if v := m.Header["Reply-To"]; len(v) != 1 || v[0] != "<team@example.com>" {
				t.Errorf("%s: Reply-To = %q, want only the list", a, v)
			}
			if strings.Contains(stored, "second@remote.test") || strings.Contains(stored, "first@remote.test") {
				t.Errorf("%s: the message's own Reply-To survived:\n%s", a, stored)
			}
			if !strings.HasSuffix(stored, "\r\n\r\nHello, team.\r\n") || !strings.Contains(stored, "for <team@example.com>") {
				t.Errorf("%s: stored message:\n%s", a, stored)
			}
		}
		// Each member's usage counts its copy.
		got := messages(t, e, "carol@example.com")
		if u := waitUsage(t, e, "carol", int64(len(got))); u.Bytes != int64(len(got[len(got)-1])) {
			t.Fatalf("carol's usage %+v, want %d bytes", u, len(got[len(got)-1]))
		}
	})
	t.Run("ReplyToSender", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"news@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "dave@example.com": 1})
		stored := last(t, e, "dave@example.com")
		m := parsed(t, stored)
		if v := m.Header.Get("Reply-To"); v != "first@remote.test, second@remote.test" {
			t.Errorf("Reply-To = %q, want the message's own", v)
		}
		if !strings.Contains(stored, "Reply-To: first@remote.test,\r\n second@remote.test\r\n") {
			t.Errorf("the folded Reply-To was changed:\n%s", stored)
		}
		// No owner: unsubscribe requests go to the domain's postmaster.
		for field, want := range map[string]string{
			"List-Id":          "<news.example.com>",
			"List-Unsubscribe": "<mailto:postmaster@example.com?subject=unsubscribe%20news@example.com>",
			"List-Owner":       "<mailto:postmaster@example.com>",
		} {
			if v := m.Header.Get(field); v != want {
				t.Errorf("%s = %q, want %q", field, v, want)
			}
		}
	})
	t.Run("MemberAlsoDirectGetsOneCopy", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"alice@example.com", "team@example.com", "news@example.com", "TEAM@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "carol@example.com": 1, "dave@example.com": 1})
		// alice was named directly: her copy is the message as sent.
		if latest := last(t, e, "alice@example.com"); strings.Contains(latest, "List-Id") {
			t.Errorf("alice's direct copy carries list fields:\n%s", latest)
		}
	})
	t.Run("ListIsOneRecipient", func(t *testing.T) {
		ctx := service.SystemContext(context.Background(), "test")
		if err := e.svc.SetSetting(ctx, "mailcluster", "SMTP", "MaxRecipients", "1"); err != nil {
			t.Fatal(err)
		}
		defer e.svc.DeleteSetting(ctx, "mailcluster", "SMTP", "MaxRecipients")
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "carol@example.com": 1})
		wantReply(t, send(dial(t, e.inbound), "sender@remote.test", []string{"team@example.com", "bob@example.com"}, listMsg), 452, smtp.EnhancedCode{4, 5, 3})
	})
}

// TestAddressesThroughService creates an alias, a group and mailing lists
// through the service and sends mail to them, and to postmaster@, over
// SMTP: the service resolves them as the session expects.
func TestAddressesThroughService(t *testing.T) {
	e := MustOpenEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := e.svc.CreateAlias(ctx, "example.com", "sales", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateGroup(ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "ops", Members: []string{"ice"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Description: "The team",
		Policy: mailcluster.ListPostAnyone, ReplyTo: mailcluster.ListReplyToList, Owner: "alice@example.com",
		Members: []mailcluster.ListMember{{Address: "alice@example.com"}, {Address: "bob@example.com"}, {Group: "ops"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "example.com", Name: "staff",
		Members: []mailcluster.ListMember{{Address: "alice@example.com"}}}); err != nil {
		t.Fatal(err)
	}
	watched := []string{"alice@example.com", "bob@example.com", "ice@example.com", "small@example.com", "admin@localhost"}

	t.Run("Alias", func(t *testing.T) {
		before := mailCounts(t, e, watched...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"sales@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"bob@example.com": 1})
		waitUsage(t, e, "bob", 1)
	})
	t.Run("List", func(t *testing.T) {
		before := mailCounts(t, e, watched...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "ice@example.com": 1})
		m := parsed(t, last(t, e, "ice@example.com"))
		for field, want := range map[string]string{
			"List-Id":          `"The team" <team.example.com>`,
			"List-Unsubscribe": "<mailto:alice@example.com?subject=unsubscribe%20team@example.com>",
			"Reply-To":         "<team@example.com>",
			"Precedence":       "list",
		} {
			if v := m.Header.Get(field); v != want {
				t.Errorf("%s = %q, want %q", field, v, want)
			}
		}
	})
	t.Run("ErrMembersOnly", func(t *testing.T) {
		before := mailCounts(t, e, watched...)
		wantReply(t, send(dial(t, e.inbound), "stranger@remote.test", []string{"staff@example.com"}, listMsg), 550, smtp.EnhancedCode{5, 7, 1})
		if err := send(dial(t, e.inbound), "alice@example.com", []string{"staff@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1})
	})
	t.Run("Postmaster", func(t *testing.T) {
		// No postmaster set: the first global administrator receives.
		before := mailCounts(t, e, watched...)
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"postmaster@example.com", "abuse@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"admin@localhost": 1})
		srv := mailsvc.NewServer(e.store, mustLocal(e.svc), mailsvc.ServerConfig{Hostname: "mx.test", Log: slog.New(slog.DiscardHandler)})
		if got, err := srv.Rcpt("sender@remote.test", "POSTMASTER"); err != nil || !slices.Equal(got, []string{"admin@localhost"}) {
			t.Fatalf("RCPT TO:<POSTMASTER> holds %v, %v; want admin@localhost", got, err)
		}
	})
}
