package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/testkv"
	"mailcluster/schema"
	"mailcluster/service"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
)

// recordingStore is a Store that records the keys read (Get), the
// prefixes listed and the size of every transaction.
type recordingStore struct {
	mailcluster.Store
	mu    sync.Mutex
	gets  []string
	lists []string
	txns  []int
}

func (r *recordingStore) Get(key string) (mailcluster.KV, bool) {
	r.mu.Lock()
	r.gets = append(r.gets, key)
	r.mu.Unlock()
	return r.Store.Get(key)
}

func (r *recordingStore) List(prefix, after string, limit int) []mailcluster.KV {
	r.mu.Lock()
	r.lists = append(r.lists, prefix)
	r.mu.Unlock()
	return r.Store.List(prefix, after, limit)
}

func (r *recordingStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	r.mu.Lock()
	r.txns = append(r.txns, len(ops))
	r.mu.Unlock()
	return r.Store.Txn(ctx, ops)
}

// reset forgets what was recorded so far.
func (r *recordingStore) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets, r.lists, r.txns = nil, nil, nil
}

// MustOpenRecording returns a Service over a recording fresh store, not
// bootstrapped.
func MustOpenRecording(t *testing.T) (*service.Service, *recordingStore) {
	t.Helper()
	rs := &recordingStore{Store: testkv.MustOpenBoltStore(t, "")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return service.New(rs, mailcluster.StaticLeadership{Self: primaryRef}, log, service.Options{BcryptCost: bcrypt.MinCost}), rs
}

// indexedAdmins returns the addresses in the global-administrator index.
func indexedAdmins(st mailcluster.Store) []string {
	var out []string
	for _, kv := range st.List(schema.PrefixGlobalAdmins, "", 0) {
		if string(kv.Value) != "{}" {
			out = append(out, "bad value "+string(kv.Value))
		}
		out = append(out, strings.TrimPrefix(kv.Key, schema.PrefixGlobalAdmins))
	}
	return out
}

func wantAdmins(t *testing.T, st mailcluster.Store, want ...string) {
	t.Helper()
	if got := indexedAdmins(st); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("global-administrator index = %v, want %v", got, want)
	}
}

// TestAdminIndexFollowsWrites: the index lists exactly the accounts with
// global rights (frozen and disabled ones included) through creates,
// rights changed both ways, and deletes.
func TestAdminIndexFollowsWrites(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, ok := st.Get(schema.KeyAdminIndexBuilt); !ok {
		t.Fatal("a new state is not marked as indexed")
	}
	wantAdmins(t, st, "admin@localhost")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mailbox string
		rights  mailcluster.AdminRights
	}{{"g1", mailcluster.AdminGlobal}, {"d1", mailcluster.AdminDomain}, {"u1", mailcluster.AdminNone}} {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: c.mailbox, Password: "some-pass-1", AdminRights: c.rights}); err != nil {
			t.Fatal(err)
		}
	}
	wantAdmins(t, st, "admin@localhost", "g1@example.com")

	global, domain, yes := mailcluster.AdminGlobal, mailcluster.AdminDomain, true
	name := "Someone"
	steps := []struct {
		name    string
		mailbox string
		upd     mailcluster.AccountUpdate
		want    []string
	}{
		{"Promote", "u1", mailcluster.AccountUpdate{AdminRights: &global}, []string{"admin@localhost", "g1@example.com", "u1@example.com"}},
		{"Demote", "g1", mailcluster.AccountUpdate{AdminRights: &domain}, []string{"admin@localhost", "u1@example.com"}},
		{"OtherField", "u1", mailcluster.AccountUpdate{FullName: &name}, []string{"admin@localhost", "u1@example.com"}},
		{"DisabledStaysListed", "u1", mailcluster.AccountUpdate{Disabled: &yes}, []string{"admin@localhost", "u1@example.com"}},
		{"PromoteDomainAdmin", "d1", mailcluster.AccountUpdate{AdminRights: &global}, []string{"admin@localhost", "d1@example.com", "u1@example.com"}},
	}
	for _, s := range steps {
		if _, err := svc.UpdateAccount(ctx, "example.com", s.mailbox, s.upd); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		wantAdmins(t, st, s.want...)
	}
	if err := svc.DeleteAccount(ctx, "example.com", "u1"); err != nil {
		t.Fatal(err)
	}
	wantAdmins(t, st, "admin@localhost", "d1@example.com")
	if err := svc.DeleteAccount(ctx, "example.com", "g1"); err != nil { // not a global admin any more
		t.Fatal(err)
	}
	wantAdmins(t, st, "admin@localhost", "d1@example.com")

	// The last-administrator rule follows the index: d1 is the other
	// usable one, so the bootstrap admin may go; then d1 may not.
	none := mailcluster.AdminNone
	if _, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{AdminRights: &none}); err != nil {
		t.Fatal(err)
	}
	wantAdmins(t, st, "d1@example.com")
	_, err := svc.UpdateAccount(ctx, "example.com", "d1", mailcluster.AccountUpdate{AdminRights: &none})
	wantCode(t, err, mailcluster.ECONFLICT)
	wantCode(t, svc.DeleteAccount(ctx, "example.com", "d1"), mailcluster.ECONFLICT)
	wantAdmins(t, st, "d1@example.com")
}

// TestCheckLastAdminReadsOnlyAdmins: the last-administrator rule reads the
// index and the accounts it lists, never an account of a domain without a
// global administrator, nor a list of accounts.
func TestCheckLastAdminReadsOnlyAdmins(t *testing.T) {
	svc, rs := MustOpenRecording(t)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"plain.example", "other.example"} {
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: d, Mailbox: fmt.Sprintf("user%d", i), Password: "some-pass-1", AdminRights: mailcluster.AdminDomain}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(t *testing.T) {
		t.Helper()
		rs.mu.Lock()
		defer rs.mu.Unlock()
		for _, p := range rs.lists {
			if strings.HasPrefix(p, schema.PrefixAccounts) {
				t.Fatalf("listed %q", p)
			}
		}
		for _, k := range rs.gets {
			if strings.HasPrefix(k, schema.AccountPrefix("plain.example")) || strings.HasPrefix(k, schema.AccountPrefix("other.example")) {
				t.Fatalf("read %q, an account of a domain without a global administrator", k)
			}
		}
	}
	t.Run("ErrLastAdmin", func(t *testing.T) {
		rs.reset()
		none := mailcluster.AdminNone
		_, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{AdminRights: &none})
		wantCode(t, err, mailcluster.ECONFLICT)
		check(t)
	})
	t.Run("OK", func(t *testing.T) {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "localhost", Mailbox: "second", Password: "some-pass-1", AdminRights: mailcluster.AdminGlobal}); err != nil {
			t.Fatal(err)
		}
		rs.reset()
		yes := true
		if _, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{Frozen: &yes}); err != nil {
			t.Fatal(err)
		}
		check(t)
		rs.mu.Lock()
		defer rs.mu.Unlock()
		read := false
		for _, k := range rs.gets {
			read = read || k == schema.Account("localhost", "second")
		}
		if !read {
			t.Fatal("the other listed administrator was not read")
		}
	})
}

// TestAdminIndexBuiltOnBootstrap: a state written before the index existed
// gets it on the primary's bootstrap, in transactions of at most 100
// operations, with entries of accounts that are no global administrators
// dropped; until then the last-administrator rule scans the accounts.
func TestAdminIndexBuiltOnBootstrap(t *testing.T) {
	svc, rs := MustOpenRecording(t)
	ctx := service.SystemContext(context.Background(), "test")
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	hash, _ := bcrypt.GenerateFromPassword([]byte("some-pass-1"), bcrypt.MinCost)
	ops := []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.KeyBootstrap, Value: []byte("2026-12-01T00:00:00Z")}}
	put := func(domain, mailbox string, rights mailcluster.AdminRights) {
		b, _ := json.Marshal(&mailcluster.Account{Domain: domain, Mailbox: mailbox, PasswordHash: string(hash), MailboxPath: "/srv/mc/" + mailbox,
			AdminRights: rights, CreatedAt: now, UpdatedAt: now})
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account(domain, mailbox), Value: b})
		if len(ops) == 64 {
			if _, err := rs.Txn(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	var want []string
	for _, d := range []string{"a.example", "b.example"} {
		b, _ := json.Marshal(&mailcluster.Domain{Name: d, CreatedAt: now, UpdatedAt: now})
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Domain(d), Value: b})
		for i := range 150 {
			rights := mailcluster.AdminNone
			if i%2 == 0 {
				rights = mailcluster.AdminGlobal
				want = append(want, fmt.Sprintf("u%03d@%s", i, d))
			}
			put(d, fmt.Sprintf("u%03d", i), rights)
		}
	}
	// Stale entries: an account that is no global administrator, and one
	// that does not exist.
	ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GlobalAdmin("u001@a.example"), Value: []byte("{}")},
		mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GlobalAdmin("gone@a.example"), Value: []byte("{}")})
	if _, err := rs.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}

	t.Run("ScanBeforeBuild", func(t *testing.T) {
		// The index lists none of the other global administrators yet: the
		// rule scans the accounts and finds them.
		rs.reset()
		none := mailcluster.AdminNone
		_, err := svc.UpdateAccount(ctx, "a.example", "u000", mailcluster.AccountUpdate{AdminRights: &none})
		if err != nil {
			t.Fatal(err)
		}
		want = want[1:]
		rs.mu.Lock()
		scanned := false
		for _, p := range rs.lists {
			scanned = scanned || p == schema.PrefixAccounts
		}
		rs.mu.Unlock()
		if !scanned {
			t.Fatal("the rule trusted an index that is not built")
		}
	})

	rs.reset()
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := rs.Get(schema.KeyAdminIndexBuilt); !ok {
		t.Fatal("the index is not marked as built")
	}
	sort.Strings(want)
	wantAdmins(t, rs, want...)
	rs.mu.Lock()
	txns := append([]int(nil), rs.txns...)
	rs.mu.Unlock()
	if len(txns) < 3 {
		t.Fatalf("the index of %d administrators was built in %d transactions", len(want), len(txns))
	}
	for _, n := range txns {
		if n > 100 {
			t.Fatalf("a transaction of %d operations (limit 100): %v", n, txns)
		}
	}
	if _, ok := rs.Get(schema.Account("localhost", "admin")); ok {
		t.Fatal("bootstrap of an initialised state created its admin")
	}

	// A second bootstrap (the next primary) writes nothing.
	rs.reset()
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		t.Fatal(err)
	}
	if len(rs.txns) != 0 {
		t.Fatalf("a second bootstrap ran %d transactions", len(rs.txns))
	}
}
