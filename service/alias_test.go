package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/internal/testkv"
	"mailcluster/kvstore"
	"mailcluster/schema"
	"mailcluster/service"
)

// addrStore is a standalone store that records the largest transaction it
// was given and can run a function just before the next transaction (to
// make a concurrent change between a call's reads and its commit).
type addrStore struct {
	*kvstore.BoltStore
	mu     sync.Mutex
	maxOps int
	before func()
}

func (s *addrStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	s.mu.Lock()
	s.maxOps = max(s.maxOps, len(ops))
	before := s.before
	s.before = nil
	s.mu.Unlock()
	if before != nil {
		before()
	}
	return s.BoltStore.Txn(ctx, ops)
}

// beforeNextTxn sets f to run just before the next transaction.
func (s *addrStore) beforeNextTxn(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = f
}

// put writes a record straight into the store, as another writer would.
func (s *addrStore) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := s.BoltStore.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: key, Value: []byte(value)}}); err != nil {
		t.Fatal(err)
	}
}

// addrEnv is a primary with domains example.com (accounts alice, bob and
// the domain administrator dadmin) and other.com (account carol).
type addrEnv struct {
	svc  *service.Service
	st   *addrStore
	ctx  context.Context // the node itself
	dctx context.Context // dadmin@example.com, a domain administrator
}

func mustOpenAddrEnv(t *testing.T) addrEnv {
	t.Helper()
	st := &addrStore{BoltStore: testkv.MustOpenBoltStore(t, "")}
	svc := service.New(st, mailcluster.StaticLeadership{Self: primaryRef}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		service.Options{BcryptCost: bcrypt.MinCost})
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		t.Fatal(err)
	}
	e := addrEnv{svc: svc, st: st, ctx: ctx}
	for _, d := range []string{"example.com", "other.com"} {
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []mailcluster.AccountCreate{
		{Domain: "example.com", Mailbox: "alice"}, {Domain: "example.com", Mailbox: "bob"},
		{Domain: "example.com", Mailbox: "dadmin", AdminRights: mailcluster.AdminDomain}, {Domain: "other.com", Mailbox: "carol"},
	} {
		a.Password = "pass-word-1"
		if _, err := svc.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	e.dctx = service.NewContextWithCaller(ctx, &mailcluster.Account{Domain: "example.com", Mailbox: "dadmin", AdminRights: mailcluster.AdminDomain})
	return e
}

// refused runs a call that must fail with code and change nothing.
func (e addrEnv) refused(t *testing.T, code string, call func() error) {
	t.Helper()
	before := e.st.Index()
	wantCode(t, call(), code)
	if e.st.Index() != before {
		t.Fatalf("a refused call changed the store (index %d -> %d)", before, e.st.Index())
	}
}

// errOf returns the error of a call's result, for refused.
func errOf[T any](_ T, err error) error { return err }

// keysUnder returns the keys under prefix.
func (e addrEnv) keysUnder(prefix string) []string {
	var out []string
	for _, kv := range e.st.List(prefix, "", 0) {
		out = append(out, kv.Key)
	}
	return out
}

func TestAliases(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		a, err := e.svc.CreateAlias(e.dctx, "Example.COM", "Sales", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if a.Address() != "sales@example.com" || a.Target != "alice@example.com" || a.CreatedAt.IsZero() {
			t.Fatalf("alias %+v", a)
		}
		if got, err := e.svc.FindAlias(e.dctx, "example.com", "SALES"); err != nil || got.Target != "alice@example.com" {
			t.Fatalf("FindAlias = %+v, %v", got, err)
		}
		if keys := e.keysUnder(schema.AliasTargetPrefix("alice@example.com")); len(keys) != 1 || keys[0] != schema.AliasTarget("alice@example.com", "sales@example.com") {
			t.Fatalf("index %v", keys)
		}
		if as, err := e.svc.AccountAliases(e.dctx, "example.com", "alice"); err != nil || len(as) != 1 || as[0].Name != "sales" {
			t.Fatalf("AccountAliases = %v, %v", as, err)
		}
		a, err = e.svc.UpdateAlias(e.dctx, "example.com", "sales", "bob@example.com")
		if err != nil || a.Target != "bob@example.com" {
			t.Fatalf("UpdateAlias = %+v, %v", a, err)
		}
		if as, _ := e.svc.AccountAliases(e.ctx, "example.com", "alice"); len(as) != 0 {
			t.Fatalf("alice still has %v", as)
		}
		if as, _ := e.svc.AccountAliases(e.ctx, "example.com", "bob"); len(as) != 1 || as[0].Address() != "sales@example.com" {
			t.Fatalf("bob has %v", as)
		}
		if err := e.svc.DeleteAlias(e.dctx, "example.com", "sales"); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.FindAlias(e.ctx, "example.com", "sales")
		wantCode(t, err, mailcluster.ENOTFOUND)
		if keys := e.keysUnder(schema.PrefixAliasTargets); len(keys) != 0 {
			t.Fatalf("index entries left: %v", keys)
		}
	})
	t.Run("Pages", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		for i := range 5 {
			if _, err := e.svc.CreateAlias(e.ctx, "example.com", fmt.Sprintf("a%d", i), "alice"); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		cursor := ""
		for pages := 0; ; pages++ {
			page, next, err := e.svc.FindAliases(e.dctx, "example.com", cursor, 2)
			if err != nil || pages > 3 {
				t.Fatalf("page %d: %v", pages, err)
			}
			for _, a := range page {
				names = append(names, a.Name)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if strings.Join(names, ",") != "a0,a1,a2,a3,a4" {
			t.Fatalf("pages gave %v", names)
		}
		_, _, err := e.svc.FindAliases(e.ctx, "example.com", "", 1001)
		wantCode(t, err, mailcluster.EINVALID)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		_, err := e.svc.FindAlias(e.ctx, "example.com", "nobody")
		wantCode(t, err, mailcluster.ENOTFOUND)
		e.refused(t, mailcluster.ENOTFOUND, func() error { return e.svc.DeleteAlias(e.ctx, "example.com", "nobody") })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.UpdateAlias(e.ctx, "example.com", "nobody", "alice")) })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", "sales", "nobody")) })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.CreateAlias(e.ctx, "missing.com", "sales", "alice@example.com")) })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", "sales", "carol@missing.com")) })
		_, err = e.svc.AccountAliases(e.ctx, "example.com", "nobody")
		wantCode(t, err, mailcluster.ENOTFOUND)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		for _, tc := range [][2]string{{"bad name", "alice"}, {"", "alice"}, {"sales", "not an address@"}, {"sales", ""}} {
			e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", tc[0], tc[1])) })
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "sales", "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		// alias vs account, alias vs alias, alias vs list
		for _, name := range []string{"alice", "sales", "team"} {
			e.refused(t, mailcluster.ECONFLICT, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", name, "bob")) })
		}
		// account vs alias, account vs list
		for _, name := range []string{"sales", "team"} {
			e.refused(t, mailcluster.ECONFLICT, func() error {
				return errOf(e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: name, Password: "pass-word-1"}))
			})
		}
		// list vs alias, list vs account
		for _, name := range []string{"sales", "alice"} {
			e.refused(t, mailcluster.ECONFLICT, func() error {
				return errOf(e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: name}))
			})
		}
		// The same name in another domain is another address.
		if _, err := e.svc.CreateAlias(e.ctx, "other.com", "sales", "carol"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrConflictInTransaction", func(t *testing.T) {
		// A record of the same name written between the call's reads and
		// its commit fails the commit: the checks are in the transaction.
		e := mustOpenAddrEnv(t)
		for i, key := range []string{schema.Account("example.com", "x0"), schema.List("example.com", "x1"), schema.Alias("example.com", "x2")} {
			e.st.beforeNextTxn(func() { e.st.put(t, key, `{}`) })
			_, err := e.svc.CreateAlias(e.ctx, "example.com", fmt.Sprintf("x%d", i), "alice")
			wantCode(t, err, mailcluster.ECONFLICT)
			if keys := e.keysUnder(schema.PrefixAliasTargets); len(keys) != 0 {
				t.Fatalf("index entries after a failed create: %v", keys)
			}
		}
		e.st.beforeNextTxn(func() { e.st.put(t, schema.Alias("example.com", "y"), `{}`) })
		_, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "y", Password: "pass-word-1"})
		wantCode(t, err, mailcluster.ECONFLICT)
		e.st.beforeNextTxn(func() { e.st.put(t, schema.Account("example.com", "z"), `{}`) })
		_, err = e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "z"})
		wantCode(t, err, mailcluster.ECONFLICT)
		if _, ok := e.st.Get(schema.List("example.com", "z")); ok {
			t.Fatal("the list was created beside an account of its name")
		}
	})
	t.Run("ErrTargetDeletedMeanwhile", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		e.st.beforeNextTxn(func() {
			if err := e.svc.DeleteAccount(e.ctx, "example.com", "bob"); err != nil {
				t.Error(err)
			}
		})
		_, err := e.svc.CreateAlias(e.ctx, "example.com", "sales", "bob")
		wantCode(t, err, mailcluster.ECONFLICT)
		if _, ok := e.st.Get(schema.Alias("example.com", "sales")); ok {
			t.Fatal("an alias points at a deleted account")
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.CreateAlias(e.dctx, "other.com", "sales", "carol")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.CreateAlias(e.dctx, "example.com", "sales", "carol@other.com")) })
		// A global administrator may point across domains.
		if a, err := e.svc.CreateAlias(e.ctx, "example.com", "carol", "carol@other.com"); err != nil || a.Target != "carol@other.com" {
			t.Fatalf("cross-domain alias = %+v, %v", a, err)
		}
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.UpdateAlias(e.dctx, "example.com", "carol", "carol@other.com")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return e.svc.DeleteAlias(e.dctx, "other.com", "x") })
		_, err := e.svc.FindAlias(e.dctx, "other.com", "x")
		wantCode(t, err, mailcluster.EFORBIDDEN)
		_, _, err = e.svc.FindAliases(e.dctx, "other.com", "", 0)
		wantCode(t, err, mailcluster.EFORBIDDEN)
		_, err = e.svc.AccountAliases(e.dctx, "other.com", "carol")
		wantCode(t, err, mailcluster.EFORBIDDEN)
		user := service.NewContextWithCaller(e.ctx, &mailcluster.Account{Domain: "example.com", Mailbox: "alice", AdminRights: mailcluster.AdminNone})
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.CreateAlias(user, "example.com", "sales", "alice")) })
	})
	t.Run("Limit", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		for i := range mailcluster.MaxAliasesPerAccount {
			if _, err := e.svc.CreateAlias(e.ctx, "example.com", fmt.Sprintf("a%d", i), "alice"); err != nil {
				t.Fatal(err)
			}
		}
		e.refused(t, mailcluster.ECONFLICT, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", "one-more", "alice")) })
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "for-bob", "bob"); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ECONFLICT, func() error { return errOf(e.svc.UpdateAlias(e.ctx, "example.com", "for-bob", "alice")) })
	})
	t.Run("ErrDomainDeleting", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		markDeleting(t, e.st, "other.com")
		e.refused(t, mailcluster.ECONFLICT, func() error { return errOf(e.svc.CreateAlias(e.ctx, "example.com", "carol", "carol@other.com")) })
		e.refused(t, mailcluster.ECONFLICT, func() error { return errOf(e.svc.CreateAlias(e.ctx, "other.com", "x", "carol")) })
	})
}

// markDeleting marks domain as being deleted, as a deletion that stopped
// halfway leaves it.
func markDeleting(t *testing.T, st *addrStore, domain string) {
	t.Helper()
	kv, _ := st.Get(schema.Domain(domain))
	v := strings.Replace(string(kv.Value), `"createdAt"`, `"deleting":{"since":"2026-01-01T00:00:00Z","by":"test","accounts":1},"createdAt"`, 1)
	if _, err := st.BoltStore.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: kv.Key, Value: []byte(v), Index: kv.ModifyIndex}}); err != nil {
		t.Fatal(err)
	}
}

// TestAccountAliases: aliases created and removed with the account in the
// same transaction.
func TestAccountAliases(t *testing.T) {
	t.Run("Create", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank", Password: "pass-word-1",
			Aliases: []string{"sales", "Info@Example.com", "frank@other.com"}}); err != nil {
			t.Fatal(err)
		}
		as, err := e.svc.AccountAliases(e.ctx, "example.com", "frank")
		if err != nil || len(as) != 3 {
			t.Fatalf("aliases %v, %v", as, err)
		}
		for _, a := range as {
			if a.Target != "frank@example.com" {
				t.Errorf("alias %+v", a)
			}
		}
	})
	t.Run("ErrCreate", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "sales", "alice"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			ctx     context.Context
			aliases []string
			code    string
		}{
			{e.ctx, []string{"info", "sales"}, mailcluster.ECONFLICT},     // an alias of another account
			{e.ctx, []string{"bob"}, mailcluster.ECONFLICT},               // an account
			{e.ctx, []string{"frank"}, mailcluster.ECONFLICT},             // its own name
			{e.ctx, []string{"x@missing.com"}, mailcluster.ENOTFOUND},     // no such domain
			{e.dctx, []string{"frank@other.com"}, mailcluster.EFORBIDDEN}, // another domain
			{e.ctx, []string{"bad name"}, mailcluster.EINVALID},
		} {
			e.refused(t, tc.code, func() error {
				return errOf(e.svc.CreateAccount(tc.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank", Password: "pass-word-1", Aliases: tc.aliases}))
			})
		}
	})
	t.Run("Update", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "old", "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "bobs", "bob"); err != nil {
			t.Fatal(err)
		}
		name := "Alice"
		e.refused(t, mailcluster.EINVALID, func() error { // "old" both added and removed
			_, err := e.svc.UpdateAccount(e.dctx, "example.com", "alice", mailcluster.AccountUpdate{FullName: &name,
				AddAliases: []string{"new", "old"}, RemoveAliases: []string{"old@example.com", "bobs", "never"}})
			return err
		})
		a, err := e.svc.UpdateAccount(e.dctx, "example.com", "alice", mailcluster.AccountUpdate{FullName: &name,
			AddAliases: []string{"new"}, RemoveAliases: []string{"old@example.com", "bobs", "never"}})
		if err != nil || a.FullName != "Alice" {
			t.Fatalf("update %+v, %v", a, err)
		}
		as, _ := e.svc.AccountAliases(e.ctx, "example.com", "alice")
		if len(as) != 1 || as[0].Name != "new" {
			t.Fatalf("alice's aliases %v", as)
		}
		if _, err := e.svc.FindAlias(e.ctx, "example.com", "bobs"); err != nil {
			t.Fatalf("another account's alias was removed: %v", err)
		}
		e.refused(t, mailcluster.ECONFLICT, func() error {
			return errOf(e.svc.UpdateAccount(e.ctx, "example.com", "alice", mailcluster.AccountUpdate{FullName: &name, AddAliases: []string{"bobs"}}))
		})
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.UpdateAccount(e.dctx, "example.com", "alice", mailcluster.AccountUpdate{AddAliases: []string{"alice@other.com"}}))
		})
		if f, _ := e.svc.FindAccount(e.ctx, "example.com", "alice"); f.FullName != "Alice" {
			t.Fatalf("full name %q", f.FullName)
		}
	})
	t.Run("DeleteRemovesAliases", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		for _, al := range [][3]string{{"example.com", "a1", "alice"}, {"example.com", "a2", "alice"}, {"other.com", "a3", "alice@example.com"}, {"example.com", "b1", "bob"}} {
			if _, err := e.svc.CreateAlias(e.ctx, al[0], al[1], al[2]); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.svc.DeleteAccount(e.ctx, "example.com", "alice"); err != nil {
			t.Fatal(err)
		}
		for _, al := range [][2]string{{"example.com", "a1"}, {"example.com", "a2"}, {"other.com", "a3"}} {
			if _, ok := e.st.Get(schema.Alias(al[0], al[1])); ok {
				t.Errorf("alias %s@%s is left", al[1], al[0])
			}
		}
		if keys := e.keysUnder(schema.PrefixAliasTargets); len(keys) != 1 || keys[0] != schema.AliasTarget("bob@example.com", "b1@example.com") {
			t.Fatalf("index %v", keys)
		}
		// A new account of the same name inherits nothing.
		if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "pass-word-1"}); err != nil {
			t.Fatal(err)
		}
		if as, _ := e.svc.AccountAliases(e.ctx, "example.com", "alice"); len(as) != 0 {
			t.Fatalf("new alice has %v", as)
		}
	})
}
