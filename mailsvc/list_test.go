package mailsvc_test

import (
	"context"
	"io"
	"net/mail"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

func TestListPolicies(t *testing.T) {
	e, d := MustOpenAddrEnv(t)
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "staff", Policy: mailcluster.ListPostMembers,
		ReplyTo: mailcluster.ListReplyToSender}, "alice@example.com", "bob@example.com")
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "announce", Policy: mailcluster.ListPostModerated,
		ReplyTo: mailcluster.ListReplyToList, Owner: "carol@example.com"}, "alice@example.com", "bob@example.com")

	t.Run("ErrMembersOnly", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		c := dial(t, e.inbound)
		err := send(c, "stranger@remote.test", []string{"staff@example.com"}, listMsg)
		wantReply(t, err, 550, smtp.EnhancedCode{5, 7, 1})
		if !strings.Contains(err.Error(), "members") {
			t.Errorf("refusal %q does not say why", err)
		}
		if calls := d.resolved(); !slices.Contains(calls, resolveCall{"staff@example.com", "stranger@remote.test"}) {
			t.Fatalf("resolutions %v lack the list with the envelope sender", calls)
		}
		// The refused recipient does not end the transaction; bob, named
		// too, gets the message and nobody else does.
		if err := c.Rcpt("bob@example.com", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, listMsg)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"bob@example.com": 1})
		wantReply(t, send(dial(t, e.inbound), "", []string{"staff@example.com"}, listMsg), 550, smtp.EnhancedCode{5, 7, 1})
		wantNewMessages(t, e, before, map[string]int{"bob@example.com": 1})
	})
	t.Run("MemberPosts", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "alice@example.com", []string{"staff@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1})
	})
	t.Run("ModeratedReview", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "stranger@remote.test", []string{"announce@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"carol@example.com": 1})
		stored := last(t, e, "carol@example.com")
		m := parsed(t, stored)
		if v := m.Header["X-Mailcluster-Review"]; len(v) != 1 || v[0] != "announce@example.com" {
			t.Errorf("X-Mailcluster-Review = %q", v)
		}
		for _, f := range []string{"List-Id", "List-Post", "List-Unsubscribe", "List-Owner", "Precedence"} {
			if v, ok := m.Header[f]; ok {
				t.Errorf("the copy for review carries %s: %q", f, v)
			}
		}
		if v := m.Header.Get("Reply-To"); v != "first@remote.test, second@remote.test" {
			t.Errorf("Reply-To = %q, want the poster's own", v)
		}
		// The owner passes the post on to the list: it is not a loop.
		before = mailCounts(t, e, everyone...)
		if err := send(dial(t, e.inbound), "carol@example.com", []string{"announce@example.com"}, stored[strings.Index(stored, "X-Mailcluster-Review"):]); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1})
		if v := parsed(t, last(t, e, "bob@example.com")).Header.Get("Reply-To"); v != "<announce@example.com>" {
			t.Errorf("the members' Reply-To = %q, want the list", v)
		}
	})
	t.Run("ErrLoop", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		looped := "List-ID: Staff\r\n <STAFF.example.com>\r\n" + listMsg
		c := dial(t, e.inbound)
		wantReply(t, send(c, "alice@example.com", []string{"dave@example.com", "staff@example.com"}, looped), 554, smtp.EnhancedCode{5, 4, 6})
		wantNewMessages(t, e, before, nil)
		// Another list's List-Id, or this one's in a phrase, is no loop.
		other := "List-Id: \"about <staff.example.com>\" <other.example.net>\r\n" + listMsg
		if err := send(dial(t, e.inbound), "alice@example.com", []string{"staff@example.com"}, other); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1})
	})
}

func TestListMembersThatCannotReceive(t *testing.T) {
	e, d := MustOpenAddrEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "all", Policy: mailcluster.ListPostAnyone,
		ReplyTo: mailcluster.ListReplyToSender}, "alice@example.com", "small@example.com", "bob@example.com", "dave@example.com")

	t.Run("OverQuotaSkipped", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		big := listMsg + lines(2500) // over small's 2000-byte quota
		if err := send(dial(t, e.inbound), "sender@remote.test", []string{"all@example.com"}, big); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "dave@example.com": 1})
		waitUsage(t, e, "bob", 1)
		if u := mustLocal(e.svc).Usage("example.com", "small"); u.Messages != 0 {
			t.Fatalf("small's usage %+v counts a message it did not get", u)
		}
	})
	t.Run("DisabledMeanwhileSkipped", func(t *testing.T) {
		before := mailCounts(t, e, everyone...)
		c := dial(t, e.inbound)
		if err := c.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("all@example.com", nil); err != nil {
			t.Fatal(err)
		}
		off := true
		if _, err := e.svc.UpdateAccount(ctx, "example.com", "dave", mailcluster.AccountUpdate{Disabled: &off}); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, listMsg)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1, "bob@example.com": 1, "small@example.com": 1})
	})
	t.Run("DirectRecipientStillStrict", func(t *testing.T) {
		// small named directly with a message over its quota: the whole
		// message is refused, the list's members get nothing either.
		before := mailCounts(t, e, everyone...)
		big := listMsg + lines(2500)
		wantReply(t, send(dial(t, e.inbound), "sender@remote.test", []string{"small@example.com", "all@example.com"}, big), 552, smtp.EnhancedCode{5, 2, 2})
		wantNewMessages(t, e, before, nil)
	})
}

// TestListHeaderInjection gives lists descriptions with CR, LF, NUL and
// quotes (and long non-ASCII text): the copies carry no field but the
// ones added, every header line is a line, and List-Id shows the
// description as one phrase.
func TestListHeaderInjection(t *testing.T) {
	e, d := MustOpenAddrEnv(t)
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "evil", Policy: mailcluster.ListPostAnyone, ReplyTo: mailcluster.ListReplyToSender,
		Description: "Evil\r\nBcc: victim@remote.test\r\nX-Injected: yes\n\rX-Also: yes\x00\"quoted\\\"", Owner: "carol@example.com"}, "bob@example.com")
	intl := "Équipe X-Injected: ü " + strings.Repeat("ß", 300)
	d.addList(mailcluster.MailingList{Domain: "example.com", Name: "intl", Policy: mailcluster.ListPostAnyone, ReplyTo: mailcluster.ListReplyToSender,
		Description: strings.Replace(intl, " ", "\r\n", 1)}, "dave@example.com")
	if err := send(dial(t, e.inbound), "sender@remote.test", []string{"evil@example.com", "intl@example.com"}, listMsg); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]struct{ raw, phrase, id string }{
		"bob@example.com": {
			id:     "evil.example.com",
			raw:    `"Evil Bcc: victim@remote.test X-Injected: yes X-Also: yes \"quoted\\\"" <evil.example.com>`,
			phrase: `Evil Bcc: victim@remote.test X-Injected: yes X-Also: yes "quoted\"`,
		},
		"dave@example.com": {id: "intl.example.com", phrase: string([]rune(intl)[:200])},
	} {
		stored := last(t, e, addr)
		m := parsed(t, stored)
		for _, f := range []string{"Bcc", "X-Injected", "X-Also"} {
			if _, ok := m.Header[f]; ok {
				t.Errorf("%s: an injected %s field:\n%s", addr, f, headerOf(stored))
			}
		}
		for _, line := range strings.SplitAfter(headerOf(stored), "\r\n") {
			if strings.ContainsAny(strings.TrimSuffix(line, "\r\n"), "\r\n\x00") || len(line) > 78+2 && strings.HasPrefix(line, " =?") {
				t.Errorf("%s: bad header line %q", addr, line)
			}
		}
		ids := m.Header["List-Id"]
		if len(ids) != 1 {
			t.Fatalf("%s: List-Id %q", addr, ids)
		}
		if want.raw != "" && ids[0] != want.raw {
			t.Errorf("%s: List-Id %s, want %s", addr, ids[0], want.raw)
		}
		phrase, id, ok := strings.Cut(ids[0], " <")
		if !ok || id != want.id+">" {
			t.Fatalf("%s: List-Id %q, want the list-id <%s>", addr, ids[0], want.id)
		}
		if a, err := mail.ParseAddress(phrase + " <x@example.com>"); err != nil || a.Name != want.phrase {
			t.Errorf("%s: List-Id phrase %q reads %q (%v), want %q", addr, phrase, a, err, want.phrase)
		}
	}
}

func TestListFieldHelpers(t *testing.T) {
	t.Run("RemoveFields", func(t *testing.T) {
		for _, tc := range []struct{ in, want string }{
			{"From: a\r\nReply-To: b,\r\n\tc\r\nTo: d\r\n\r\n", "From: a\r\nTo: d\r\n\r\n"},
			{"reply-to : b\nIn-Reply-To: <x>\nReply-To-Extra: y\n\n", "In-Reply-To: <x>\nReply-To-Extra: y\n\n"},
			{"Subject: s\r\nReply-To: b", "Subject: s\r\n"},
			{"Reply-To: a\r\nReply-To: b\r\n", ""},
			{"no colon\r\nReply-To: b\r\n\r\n", "no colon\r\n\r\n"},
		} {
			if got := string(mailsvc.RemoveFields([]byte(tc.in), "Reply-To")); got != tc.want {
				t.Errorf("RemoveFields(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	})
	t.Run("HasListID", func(t *testing.T) {
		for _, tc := range []struct {
			in   string
			want bool
		}{
			{"List-Id: <team.example.com>\r\n\r\n", true},
			{"list-id:\r\n \"T\"\r\n <TEAM.example.com> (comment)\r\n", true},
			{"List-Id: <team.example.com.evil>\r\n", false},
			{"List-Id: \"<team.example.com>\" <other.example.com>\r\n", false},
			{"X-List-Id: <team.example.com>\r\n", false},
			{"Subject: x\r\n\r\nList-Id: <team.example.com>\r\n", false}, // in the body
		} {
			if got := mailsvc.HasListID([]byte(tc.in), "team.example.com"); got != tc.want {
				t.Errorf("HasListID(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	})
	t.Run("ListHeader", func(t *testing.T) {
		l := &mailcluster.MailingList{Domain: "example.com", Name: "team", ReplyTo: mailcluster.ListReplyToList, Owner: "Carol@Example.com"}
		want := "List-Id: <team.example.com>\r\nList-Post: <mailto:team@example.com>\r\n" +
			"List-Unsubscribe: <mailto:carol@example.com?subject=unsubscribe%20team@example.com>\r\n" +
			"List-Owner: <mailto:carol@example.com>\r\nPrecedence: list\r\nReply-To: <team@example.com>\r\n"
		if got := string(mailsvc.ListHeader(l)); got != want {
			t.Errorf("ListHeader = %q, want %q", got, want)
		}
		// A stored owner that is not an address is not written.
		l.Owner, l.ReplyTo = "x@example.com>\r\nBcc: y@remote.test", mailcluster.ListReplyToSender
		if got := string(mailsvc.ListHeader(l)); strings.Contains(got, "Bcc") || !strings.Contains(got, "List-Owner: <mailto:postmaster@example.com>\r\n") {
			t.Errorf("ListHeader with a bad owner = %q", got)
		}
		if got := string(mailsvc.ReviewHeader(l)); got != "X-Mailcluster-Review: team@example.com\r\n" {
			t.Errorf("ReviewHeader = %q", got)
		}
	})
}

// TestListMemberOutsideRoots gives a list member a mailbox path outside
// the mailbox roots: nothing is written there, the other members receive,
// and the same account named directly refuses the whole message.
func TestListMemberOutsideRoots(t *testing.T) {
	e, d := MustOpenPathsEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Policy: mailcluster.ListPostAnyone,
		Members: []mailcluster.ListMember{{Address: "alice@example.com"}, {Address: "bob@example.com"}}}); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "victim")
	d.setPath("bob@example.com", outside)
	before := mailCounts(t, e, "alice@example.com")
	if err := send(dial(t, e.inbound), "s@remote.test", []string{"team@example.com"}, listMsg); err != nil {
		t.Fatal(err)
	}
	wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1})
	wantNothingAt(t, outside)
	wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"team@example.com", "bob@example.com"}, listMsg), 451, smtp.EnhancedCode{4, 3, 0})
	wantNewMessages(t, e, before, map[string]int{"alice@example.com": 1})
	wantNothingAt(t, outside)
}
