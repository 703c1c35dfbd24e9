package service_test

import (
	"sort"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
)

// addresses returns the addresses of a recipient's accounts, sorted.
func addresses(r *mailcluster.Recipient) string {
	var out []string
	for _, a := range r.Accounts {
		out = append(out, a.Address())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// mustResolve resolves address for sender and checks the accounts that
// receive it (sorted, comma-separated).
func mustResolve(t *testing.T, l *service.Local, address, sender, want string) *mailcluster.Recipient {
	t.Helper()
	r, err := l.ResolveRecipient(address, sender)
	if err != nil {
		t.Fatalf("ResolveRecipient(%q, %q): %v", address, sender, err)
	}
	if got := addresses(r); got != want {
		t.Fatalf("ResolveRecipient(%q, %q) = %s, want %s", address, sender, got, want)
	}
	for _, a := range r.Accounts {
		if a.PasswordHash != "" {
			t.Fatalf("ResolveRecipient(%q) returned a password hash", address)
		}
	}
	return r
}

func TestResolveRecipient(t *testing.T) {
	e := mustOpenAddrEnv(t)
	l := mustLocal(e.svc)
	if _, err := e.svc.CreateAlias(e.ctx, "example.com", "sales", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateAlias(e.ctx, "other.com", "alice", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateAlias(e.ctx, "example.com", "carol", "carol@other.com"); err != nil {
		t.Fatal(err)
	}
	t.Run("Account", func(t *testing.T) {
		r := mustResolve(t, l, "Alice@Example.COM", "", "alice@example.com")
		if r.Address != "alice@example.com" || r.List != nil || r.Review {
			t.Fatalf("recipient %+v", r)
		}
	})
	t.Run("DisabledAccount", func(t *testing.T) {
		off := true
		if _, err := e.svc.UpdateAccount(e.ctx, "example.com", "bob", mailcluster.AccountUpdate{Disabled: &off}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			on := false
			_, _ = e.svc.UpdateAccount(e.ctx, "example.com", "bob", mailcluster.AccountUpdate{Disabled: &on})
		}()
		r := mustResolve(t, l, "bob@example.com", "", "bob@example.com")
		if !r.Accounts[0].Disabled {
			t.Fatal("the account is disabled: the caller must see it")
		}
	})
	t.Run("Alias", func(t *testing.T) {
		r := mustResolve(t, l, "SALES@example.com", "", "alice@example.com")
		if r.Address != "sales@example.com" {
			t.Fatalf("address %q", r.Address)
		}
		mustResolve(t, l, "alice@other.com", "", "alice@example.com")
		mustResolve(t, l, "carol@example.com", "", "carol@other.com")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, addr := range []string{"nobody@example.com", "alice@missing.com", "hostmaster@example.com"} {
			_, err := l.ResolveRecipient(addr, "")
			wantCode(t, err, mailcluster.ENOTFOUND)
		}
		for _, addr := range []string{"", "alice", "@example.com", "a b@example.com"} {
			_, err := l.ResolveRecipient(addr, "")
			wantCode(t, err, mailcluster.EINVALID)
		}
	})
	t.Run("PostmasterDefault", func(t *testing.T) {
		for _, addr := range []string{"postmaster@example.com", "Abuse@Example.com", "postmaster@other.com", "postmaster", "PostMaster"} {
			mustResolve(t, l, addr, "", "admin@localhost")
		}
		if r, _ := l.ResolveRecipient("POSTMASTER", ""); r.Address != "postmaster" {
			t.Fatalf("bare postmaster resolved as %q", r.Address)
		}
	})
	t.Run("PostmasterSetting", func(t *testing.T) {
		pm := "bob@example.com"
		d, err := e.svc.UpdateDomain(e.dctx, "example.com", mailcluster.DomainUpdate{Postmaster: &pm})
		if err != nil || d.Postmaster != "bob@example.com" {
			t.Fatalf("UpdateDomain = %+v, %v", d, err)
		}
		mustResolve(t, l, "postmaster@example.com", "", "bob@example.com")
		mustResolve(t, l, "abuse@example.com", "", "bob@example.com")
		mustResolve(t, l, "postmaster@other.com", "", "admin@localhost")
		mustResolve(t, l, "postmaster", "", "admin@localhost")
		// A disabled postmaster does not swallow the mail.
		off := true
		if _, err := e.svc.UpdateAccount(e.ctx, "example.com", "bob", mailcluster.AccountUpdate{Disabled: &off}); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "postmaster@example.com", "", "admin@localhost")
		on := false
		if _, err := e.svc.UpdateAccount(e.ctx, "example.com", "bob", mailcluster.AccountUpdate{Disabled: &on}); err != nil {
			t.Fatal(err)
		}
		// An account of another domain, set by a global administrator.
		pm = "carol@other.com"
		if _, err := e.svc.UpdateDomain(e.ctx, "example.com", mailcluster.DomainUpdate{Postmaster: &pm}); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "postmaster@example.com", "", "carol@other.com")
		pm = ""
		if d, err := e.svc.UpdateDomain(e.dctx, "example.com", mailcluster.DomainUpdate{Postmaster: &pm}); err != nil || d.Postmaster != "" {
			t.Fatalf("reset = %+v, %v", d, err)
		}
		mustResolve(t, l, "postmaster@example.com", "", "admin@localhost")
	})
	t.Run("ErrPostmasterSetting", func(t *testing.T) {
		for _, tc := range []struct {
			pm, code string
		}{{"carol@other.com", mailcluster.EFORBIDDEN}, {"nobody@example.com", mailcluster.EINVALID}, {"not an address", mailcluster.EINVALID}} {
			pm := tc.pm
			e.refused(t, tc.code, func() error {
				return errOf(e.svc.UpdateDomain(e.dctx, "example.com", mailcluster.DomainUpdate{Postmaster: &pm}))
			})
		}
		pm, desc := "bob@example.com", "changed"
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.UpdateDomain(e.dctx, "example.com", mailcluster.DomainUpdate{Postmaster: &pm, Description: &desc}))
		})
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.UpdateDomain(e.dctx, "other.com", mailcluster.DomainUpdate{Postmaster: &pm}))
		})
		e.refused(t, mailcluster.EINVALID, func() error {
			return errOf(e.svc.CreateDomain(e.ctx, &mailcluster.Domain{Name: "new.com", Postmaster: "nobody@example.com"}))
		})
		d, err := e.svc.CreateDomain(e.ctx, &mailcluster.Domain{Name: "new.com", Postmaster: "Bob@Example.com"})
		if err != nil || d.Postmaster != "bob@example.com" {
			t.Fatalf("CreateDomain = %+v, %v", d, err)
		}
		mustResolve(t, l, "abuse@new.com", "", "bob@example.com")
	})
	t.Run("PostmasterAccountWins", func(t *testing.T) {
		if _, err := e.svc.CreateAlias(e.ctx, "other.com", "abuse", "carol"); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "abuse@other.com", "", "carol@other.com")
		if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "other.com", Mailbox: "postmaster", Password: "pass-word-1"}); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "postmaster@other.com", "", "postmaster@other.com")
	})
	t.Run("FirstUsableGlobalAdmin", func(t *testing.T) {
		// aaa@example.com sorts before admin@localhost.
		if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "aaa", Password: "pass-word-1",
			AdminRights: mailcluster.AdminGlobal}); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "postmaster", "", "aaa@example.com")
		frozen := true
		if _, err := e.svc.UpdateAccount(e.ctx, "example.com", "aaa", mailcluster.AccountUpdate{Frozen: &frozen}); err != nil {
			t.Fatal(err)
		}
		mustResolve(t, l, "postmaster", "", "admin@localhost")
		mustResolve(t, l, "abuse@example.com", "", "admin@localhost")
	})
	t.Run("ErrDomainDeleting", func(t *testing.T) {
		markDeleting(t, e.st, "other.com")
		for _, addr := range []string{"carol@other.com", "postmaster@other.com", "alice@other.com"} {
			_, err := l.ResolveRecipient(addr, "")
			wantCode(t, err, mailcluster.ENOTFOUND)
		}
		// An alias pointing into the domain being deleted.
		_, err := l.ResolveRecipient("carol@example.com", "")
		wantCode(t, err, mailcluster.ENOTFOUND)
		mustResolve(t, l, "alice@example.com", "", "alice@example.com")
	})
}
