package service_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster/schema"
	"mailcluster/service"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
)

// mustHash returns a bcrypt hash of password at cost.
func mustHash(tb testing.TB, password string, cost int) string {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

// TestCreateAccountWithPasswordHash: an account created or updated with a
// bcrypt hash of cost 10 or more logs in with the password behind it; bad
// hashes, and a password given with a hash, are refused with nothing
// written.
func TestCreateAccountWithPasswordHash(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	good := mustHash(t, "imported-pass-1", 10)
	t.Run("OK", func(t *testing.T) {
		for _, c := range []struct{ mailbox, hash string }{
			{"a2a", good},
			{"a2b", "$2b$" + good[4:]},
			{"a2y", "$2y$" + good[4:]},
		} {
			a, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: c.mailbox, PasswordHash: c.hash, AdminRights: mailcluster.AdminDomain})
			if err != nil {
				t.Fatalf("%s: %v", c.mailbox, err)
			}
			if a.PasswordHash != "" {
				t.Fatalf("%s: the answer carries the hash", c.mailbox)
			}
			if _, err := svc.Authenticate(ctx, c.mailbox+"@example.com", "imported-pass-1"); err != nil {
				t.Fatalf("%s: login with the password behind the hash: %v", c.mailbox, err)
			}
			_, err = svc.Authenticate(ctx, c.mailbox+"@example.com", "another-pass-1")
			wantCode(t, err, mailcluster.EUNAUTHORIZED)
		}
	})
	bad := []struct {
		name, hash, want string
	}{
		{"CostTooLow", mustHash(t, "imported-pass-1", 9), "cost 9;"},
		{"MinCost", mustHash(t, "imported-pass-1", bcrypt.MinCost), "cost 4;"},
		{"NotBcrypt", "imported-pass-1", "not a bcrypt hash"},
		{"OtherVersion", "$2x$" + good[4:], "not a bcrypt hash"},
		{"Truncated", good[:59], "not a bcrypt hash"},
		{"TooLong", good + "A", "not a bcrypt hash"},
		{"BadCharacter", good[:40] + "!" + good[41:], "not a bcrypt hash"},
		{"BadCost", good[:4] + "1x" + good[6:], "not a bcrypt hash"},
		{"CostOutOfRange", good[:4] + "32" + good[6:], "not a bcrypt hash"},
	}
	for _, c := range bad {
		t.Run("ErrInvalid/"+c.name, func(t *testing.T) {
			before := st.Index()
			_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bad", PasswordHash: c.hash})
			wantCode(t, err, mailcluster.EINVALID)
			msg := mailcluster.ErrorMessage(err)
			if !strings.Contains(msg, "password hash") || !strings.Contains(msg, c.want) {
				t.Fatalf("message %q does not name the password hash and %q", msg, c.want)
			}
			if strings.Contains(msg, c.hash) {
				t.Fatalf("message %q repeats the hash", msg)
			}
			if _, ok := st.Get(schema.Account("example.com", "bad")); ok || st.Index() != before {
				t.Fatal("a refused create wrote something")
			}
		})
	}
	t.Run("ErrInvalid/Both", func(t *testing.T) {
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bad", Password: "imported-pass-1", PasswordHash: good})
		wantCode(t, err, mailcluster.EINVALID)
		if _, ok := st.Get(schema.Account("example.com", "bad")); ok {
			t.Fatal("a refused create wrote the account")
		}
	})
	t.Run("Update", func(t *testing.T) {
		other := mustHash(t, "second-pass-1", 10)
		if _, err := svc.UpdateAccount(ctx, "example.com", "a2a", mailcluster.AccountUpdate{PasswordHash: &other}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, "a2a@example.com", "second-pass-1"); err != nil {
			t.Fatal(err)
		}
		_, err := svc.Authenticate(ctx, "a2a@example.com", "imported-pass-1") // cached before the change
		wantCode(t, err, mailcluster.EUNAUTHORIZED)
		kv, _ := st.Get(schema.Account("example.com", "a2a"))
		low, pw := mustHash(t, "x-pass-1234", 4), "third-pass-1"
		for _, upd := range []mailcluster.AccountUpdate{{PasswordHash: &low}, {PasswordHash: &pw}, {PasswordHash: &other, Password: &pw}} {
			_, err := svc.UpdateAccount(ctx, "example.com", "a2a", upd)
			wantCode(t, err, mailcluster.EINVALID)
		}
		if after, _ := st.Get(schema.Account("example.com", "a2a")); after.ModifyIndex != kv.ModifyIndex {
			t.Fatal("a refused update wrote the account")
		}
	})
	t.Run("DomainAdmin", func(t *testing.T) {
		// A domain administrator may set a hash for accounts of its own
		// domain, as it may set a password, and not elsewhere.
		da := service.NewContextWithCaller(context.Background(), &mailcluster.Account{Domain: "example.com", Mailbox: "a2b", AdminRights: mailcluster.AdminDomain})
		if _, err := svc.CreateAccount(da, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "byadmin", PasswordHash: good}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, "byadmin@example.com", "imported-pass-1"); err == nil || mailcluster.ErrorCode(err) != mailcluster.EUNAUTHORIZED {
			t.Fatalf("a mail user logged in to the API: %v", err) // no admin rights: refused after the check
		}
		_, err := svc.CreateAccount(da, mailcluster.AccountCreate{Domain: "localhost", Mailbox: "byadmin", PasswordHash: good})
		wantCode(t, err, mailcluster.EFORBIDDEN)
	})
}
