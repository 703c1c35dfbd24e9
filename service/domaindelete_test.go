package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/internal/testkv"
	"mailcluster/kvstore"
	"mailcluster/schema"
	"mailcluster/service"
)

func init() {
	// A write: it deletes what former primaries left half deleted.
	writeCalls["ResumeDomainDeletions"] = func(ctx context.Context, e roEnv) error {
		return e.svc.ResumeDomainDeletions(ctx)
	}
}

// gateStore is a standalone store whose transactions a test can make
// fail after a number of them, or hold at a gate; it records the largest
// transaction it was given.
type gateStore struct {
	*kvstore.BoltStore
	mu       sync.Mutex
	failFrom int // the transaction number from which Txn fails (0: never)
	n        int // transactions seen
	maxOps   int // the most operations in one transaction
	holdFrom int // the transaction number from which Txn waits for hold to close (0: never)
	hold     chan struct{}
	held     chan struct{} // receives (non-blocking) when a Txn waits at hold
}

func (g *gateStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	g.mu.Lock()
	g.n++
	n, hold, held := g.n, g.hold, g.held
	g.maxOps = max(g.maxOps, len(ops))
	fail := g.failFrom > 0 && n >= g.failFrom
	wait := g.holdFrom > 0 && n >= g.holdFrom
	g.mu.Unlock()
	if wait {
		select {
		case held <- struct{}{}:
		default:
		}
		<-hold
	}
	if fail {
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The store cannot be reached.")
	}
	return g.BoltStore.Txn(ctx, ops)
}

// set changes the store's behaviour under its lock.
func (g *gateStore) set(f func(g *gateStore)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

// eventLog records cluster events and signals each one.
type eventLog struct {
	mu     sync.Mutex
	events []mailcluster.ClusterEvent
	added  chan struct{}
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{}, 1000)} }

func (l *eventLog) Record(ev mailcluster.ClusterEvent) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

func (l *eventLog) Events(limit int) ([]mailcluster.ClusterEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mailcluster.ClusterEvent(nil), l.events...), nil
}

// of returns the recorded events of kind about domain.
func (l *eventLog) of(kind mailcluster.EventKind, domain string) []mailcluster.ClusterEvent {
	evs, _ := l.Events(0)
	var out []mailcluster.ClusterEvent
	for _, ev := range evs {
		if ev.Event == kind && ev.Fields["domain"] == domain {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor waits up to 10 s for an event of kind about domain.
func (l *eventLog) waitFor(t *testing.T, kind mailcluster.EventKind, domain string) mailcluster.ClusterEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if evs := l.of(kind, domain); len(evs) > 0 {
			return evs[0]
		}
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no %s event for %s", kind, domain)
		}
	}
}

// mustOpenGateService returns a bootstrapped primary over a gateStore
// that records its cluster events.
func mustOpenGateService(t *testing.T) (*service.Service, *gateStore, *eventLog) {
	t.Helper()
	st := &gateStore{BoltStore: testkv.MustOpenBoltStore(t, "")}
	events := newEventLog()
	svc := service.New(st, mailcluster.StaticLeadership{Self: primaryRef}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		service.Options{BcryptCost: bcrypt.MinCost, Events: events})
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		t.Fatal(err)
	}
	return svc, st, events
}

// mustFillDomain creates domain with n accounts written straight into the
// store (500 records a transaction: the standalone store has no limit):
// every third has a usage record, every tenth a freeze record, every
// hundredth is a global administrator with its index record.
func mustFillDomain(t *testing.T, svc *service.Service, st *gateStore, domain string, n int) {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: domain}); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("user-pass-1"), bcrypt.MinCost)
	var ops []mailcluster.Op
	flush := func() {
		if _, err := st.BoltStore.Txn(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		a := mailcluster.Account{Domain: domain, Mailbox: fmt.Sprintf("user%05d", i), PasswordHash: string(hash),
			MailboxPath: "/srv/mc/mailboxes/" + domain + "/" + fmt.Sprint(i), AdminRights: mailcluster.AdminNone}
		if i%100 == 0 {
			a.AdminRights = mailcluster.AdminGlobal
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GlobalAdmin(a.Address()), Value: []byte("{}")})
		}
		b, _ := json.Marshal(a)
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account(domain, a.Mailbox), Value: b})
		if i%3 == 0 {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Usage(domain, a.Mailbox), Value: []byte(`{"bytes":1,"messages":1}`)})
		}
		if i%10 == 0 {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.FrozenAccount(a.Address()), Value: []byte(`{"address":"` + a.Address() + `"}`)})
		}
		if len(ops) >= 500 {
			flush()
		}
	}
	// A usage record left without its account.
	ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Usage(domain, "gone"), Value: []byte(`{}`)})
	flush()
	if got := st.Count(schema.AccountPrefix(domain)); got != n {
		t.Fatalf("%d accounts written, want %d", got, n)
	}
}

// leftOf returns the keys of domain still in the store.
func leftOf(st mailcluster.Store, domain string) []string {
	var out []string
	for _, kv := range st.List("", "", 0) {
		if kv.Key == schema.Domain(domain) || strings.HasPrefix(kv.Key, schema.AccountPrefix(domain)) ||
			strings.HasPrefix(kv.Key, schema.UsagePrefix(domain)) || strings.HasSuffix(kv.Key, "@"+domain) {
			out = append(out, kv.Key)
		}
	}
	return out
}

func TestDeleteDomainLarge(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	t.Run("OK", func(t *testing.T) {
		svc, st, events := mustOpenGateService(t)
		mustFillDomain(t, svc, st, "big.example", 1200)
		mustFillDomain(t, svc, st, "kept.example", 10)
		if err := svc.DeleteDomain(ctx, "big.example", true); err != nil {
			t.Fatal(err)
		}
		if left := leftOf(st, "big.example"); len(left) != 0 {
			t.Fatalf("%d keys of the deleted domain are left, first %q", len(left), left[0])
		}
		if _, err := svc.FindDomain(ctx, "big.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("FindDomain after the deletion: %v", err)
		}
		if got := len(leftOf(st, "kept.example")); got != 1+10+4+1+1+1 { // domain, accounts, usage, freeze, admin, orphan usage
			t.Errorf("the other domain has %d keys left", got)
		}
		if _, ok := st.Get(schema.Account("localhost", "admin")); !ok {
			t.Error("the administrator of another domain is gone")
		}
		if st.maxOps > service.MaxDeleteOps {
			t.Errorf("a transaction held %d operations, more than %d", st.maxOps, service.MaxDeleteOps)
		}
		started := events.waitFor(t, mailcluster.EventDomainDeleteStarted, "big.example")
		if started.Fields["accounts"] != "1200" || started.Fields["resumed"] != "false" || started.Fields["by"] != "system: test" {
			t.Errorf("started event %+v", started)
		}
		finished := events.waitFor(t, mailcluster.EventDomainDeleteFinished, "big.example")
		if finished.Fields["accounts"] != "1200" {
			t.Errorf("finished event %+v", finished)
		}
	})
	t.Run("ErrLastAdmin", func(t *testing.T) {
		svc, st, _ := mustOpenGateService(t)
		wantCode(t, svc.DeleteDomain(ctx, "localhost", true), mailcluster.ECONFLICT)
		d, err := svc.FindDomain(ctx, "localhost")
		if err != nil || d.Deleting != nil {
			t.Fatalf("refused deletion left %+v, %v", d, err)
		}
		if st.Count(schema.AccountPrefix("localhost")) != 1 {
			t.Fatal("refused deletion deleted accounts")
		}
	})
	t.Run("ErrLastAdminOutsideDeletions", func(t *testing.T) {
		// a.example and b.example each hold a global administrator; the
		// bootstrap administrator is disabled; a.example is being deleted.
		svc, st, _ := mustOpenGateService(t)
		for _, dom := range []string{"a.example", "b.example"} {
			if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: dom}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: dom, Mailbox: "boss", Password: "boss-pass-123",
				AdminRights: mailcluster.AdminGlobal}); err != nil {
				t.Fatal(err)
			}
		}
		off := true
		if _, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{Disabled: &off}); err != nil {
			t.Fatal(err)
		}
		kv, _ := st.Get(schema.Domain("a.example"))
		var rec mailcluster.Domain
		_ = json.Unmarshal(kv.Value, &rec)
		rec.Deleting = &mailcluster.DomainDeletion{Since: time.Now().UTC(), By: "test", Accounts: 1}
		b, _ := json.Marshal(rec)
		if _, err := st.BoltStore.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex}}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, svc.DeleteDomain(ctx, "b.example", true), mailcluster.ECONFLICT)
		if d, err := svc.FindDomain(ctx, "b.example"); err != nil || d.Deleting != nil {
			t.Fatalf("refused deletion left %+v, %v", d, err)
		}
	})
	t.Run("ErrDomainAdmin", func(t *testing.T) {
		svc, st, _ := mustOpenGateService(t)
		mustFillDomain(t, svc, st, "small.example", 3)
		da := &mailcluster.Account{Domain: "small.example", Mailbox: "user00001", AdminRights: mailcluster.AdminDomain}
		wantCode(t, svc.DeleteDomain(service.NewContextWithCaller(ctx, da), "small.example", true), mailcluster.EFORBIDDEN)
		if d, err := svc.FindDomain(ctx, "small.example"); err != nil || d.Deleting != nil || d.AccountCount != 3 {
			t.Fatalf("refused deletion left %+v, %v", d, err)
		}
	})
}

// TestDeleteDomainResume: a deletion whose store fails halfway leaves the
// domain marked (shown, refusing new accounts, changes and mail) and
// ResumeDomainDeletions finishes it.
func TestDeleteDomainResume(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, st, events := mustOpenGateService(t)
	mustFillDomain(t, svc, st, "big.example", 1000)
	st.set(func(g *gateStore) { g.failFrom = g.n + 10 }) // the mark and 8 batches commit
	err := svc.DeleteDomain(ctx, "big.example", true)
	wantCode(t, err, mailcluster.EUNAVAILABLE)
	failed := events.waitFor(t, mailcluster.EventDomainDeleteFailed, "big.example")
	left := st.Count(schema.AccountPrefix("big.example"))
	if left == 0 || left == 1000 || failed.Fields["accounts"] != fmt.Sprint(1000-left) {
		t.Fatalf("%d accounts left after the failure, event %+v", left, failed)
	}
	st.set(func(g *gateStore) { g.failFrom = 0 })

	t.Run("Shown", func(t *testing.T) {
		d, err := svc.FindDomain(ctx, "big.example")
		if err != nil || d.Deleting == nil || d.Deleting.Accounts != 1000 || d.Deleting.By != "system: test" || d.Deleting.Since.IsZero() {
			t.Fatalf("domain %+v, %v", d, err)
		}
		ds, err := svc.FindDomains(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if (d.Name == "big.example") != (d.Deleting != nil) {
				t.Errorf("listed %s with deleting %+v", d.Name, d.Deleting)
			}
		}
	})
	t.Run("ErrNewAccount", func(t *testing.T) {
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "big.example", Mailbox: "new", Password: "new-pass-12"})
		wantCode(t, err, mailcluster.ECONFLICT)
		if _, ok := st.Get(schema.Account("big.example", "new")); ok {
			t.Fatal("an account was created in a domain being deleted")
		}
	})
	t.Run("ErrDomainUpdate", func(t *testing.T) {
		desc := "changed"
		_, err := svc.UpdateDomain(ctx, "big.example", mailcluster.DomainUpdate{Description: &desc})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("ErrAccountUpdate", func(t *testing.T) {
		name := "changed"
		_, err := svc.UpdateAccount(ctx, "big.example", "user00001", mailcluster.AccountUpdate{FullName: &name})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("ErrLogin", func(t *testing.T) {
		_, err := svc.Authenticate(ctx, "user00001@big.example", "user-pass-1")
		wantCode(t, err, mailcluster.EUNAUTHORIZED)
	})
	t.Run("ErrLastAdminInDeletedDomain", func(t *testing.T) {
		// The only other global administrators are in the domain being
		// deleted: they do not count.
		none := mailcluster.AdminNone
		_, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{AdminRights: &none})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("ErrMailLookup", func(t *testing.T) {
		local := mustLocal(svc)
		_, err := local.LookupAccount("user00999@big.example")
		wantCode(t, err, mailcluster.ENOTFOUND)
		if _, ok := st.Get(schema.Account("big.example", "user00999")); !ok {
			t.Fatal("the account looked up is already deleted: the lookup proves nothing")
		}
		if _, err := local.LookupAccount("admin@localhost"); err != nil {
			t.Fatalf("lookup in another domain: %v", err)
		}
	})

	if err := svc.ResumeDomainDeletions(ctx); err != nil {
		t.Fatal(err)
	}
	if left := leftOf(st, "big.example"); len(left) != 0 {
		t.Fatalf("%d keys left after resuming, first %q", len(left), left[0])
	}
	var resumed bool
	for _, ev := range events.of(mailcluster.EventDomainDeleteStarted, "big.example") {
		resumed = resumed || ev.Fields["resumed"] == "true"
	}
	if !resumed {
		t.Error("no resumed start in the cluster log")
	}
	if fin := events.waitFor(t, mailcluster.EventDomainDeleteFinished, "big.example"); fin.Fields["accounts"] != fmt.Sprint(left) {
		t.Errorf("finished event %+v, want %d accounts", fin, left)
	}
	if err := svc.ResumeDomainDeletions(ctx); err != nil {
		t.Fatalf("nothing to resume: %v", err)
	}
}

// TestDeleteDomainCallerGone: the deletion goes on when its caller goes
// away, and a second call joins it and answers when it ends.
func TestDeleteDomainCallerGone(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, st, events := mustOpenGateService(t)
	mustFillDomain(t, svc, st, "big.example", 300)
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	st.set(func(g *gateStore) { g.holdFrom, g.hold, g.held = g.n+2, hold, held }) // the mark commits, the first batch waits
	cctx, cancel := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() { first <- svc.DeleteDomain(cctx, "big.example", true) }()
	<-held
	cancel()
	// The caller is gone and answered; the work waits at the gate.
	wantCode(t, <-first, mailcluster.EUNAVAILABLE)
	second := make(chan error, 1)
	go func() { second <- svc.DeleteDomain(ctx, "big.example", true) }()
	for i := 0; service.DeletionWaiters(svc, "big.example") != 1; i++ {
		if i == 1000 {
			t.Fatal("the second call did not join the deletion under way")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(hold)
	if err := <-second; err != nil {
		t.Fatalf("second call: %v", err)
	}
	// The second call answered once the domain was gone.
	if left := leftOf(st, "big.example"); len(left) != 0 {
		t.Fatalf("%d keys left, first %q", len(left), left[0])
	}
	if n := len(events.of(mailcluster.EventDomainDeleteFinished, "big.example")); n != 1 {
		t.Errorf("%d finished events, want 1", n)
	}
	if n := len(events.of(mailcluster.EventDomainDeleteStarted, "big.example")); n != 1 {
		t.Errorf("%d started events, want 1 (the second call joined)", n)
	}
}
