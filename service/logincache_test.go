package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"mailcluster/service"

	"mailcluster"
)

// TestLoginParallelFirstLogins: eight parallel first logins with the same
// right credentials run bcrypt once and all succeed; parallel logins with
// a wrong password share nothing with the right one.
func TestLoginParallelFirstLogins(t *testing.T) {
	// Cost 10 makes one check long enough for the logins to overlap.
	svc, _ := MustOpenService(t, nil, func(o *service.Options) { o.BcryptCost = 10 })
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob", Password: "bob-pass-12", AdminRights: mailcluster.AdminDomain}); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		before := service.BcryptRuns(svc)
		codes := make([]string, 8)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Go(func() { codes[i] = login(svc, fmt.Sprintf("198.51.100.%d", 10+i), "bob@example.com", "bob-pass-12") })
		}
		wg.Wait()
		for i, c := range codes {
			if c != "" {
				t.Fatalf("login %d = %q, want success", i, c)
			}
		}
		if runs := service.BcryptRuns(svc) - before; runs != 1 {
			t.Fatalf("8 parallel first logins ran bcrypt %d times, want 1", runs)
		}
	})
	t.Run("WrongPasswordNotShared", func(t *testing.T) {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "carol", Password: "carol-pass-1", AdminRights: mailcluster.AdminDomain}); err != nil {
			t.Fatal(err)
		}
		before := service.BcryptRuns(svc)
		codes := make([]string, 4)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Go(func() {
				pw := "carol-pass-1"
				if i%2 == 1 {
					pw = "not-carols-pass"
				}
				codes[i] = login(svc, fmt.Sprintf("198.51.100.%d", 30+i), "carol@example.com", pw)
			})
		}
		wg.Wait()
		for i, c := range codes {
			want := ""
			if i%2 == 1 {
				want = mailcluster.EUNAUTHORIZED
			}
			if c != want {
				t.Fatalf("login %d = %q, want %q", i, c, want)
			}
		}
		// One check of the right password; the two wrong ones run their own
		// (shared or not, depending on timing).
		if runs := service.BcryptRuns(svc) - before; runs < 2 || runs > 3 {
			t.Fatalf("%d bcrypt runs, want 2 or 3", runs)
		}
	})
}

// TestLoginCacheBounded: filling the cache of successful logins past its
// size keeps the most recently used entries (no clear-all): the login used
// just before the overflow still needs no bcrypt after it, and the cache
// never holds more than its bound.
func TestLoginCacheBounded(t *testing.T) {
	svc, _ := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Authenticate(ctx, "admin@localhost", "secret-pass-1"); err != nil {
		t.Fatal(err)
	}
	n, bound := service.LoginCacheLen(svc)
	service.FillLoginCache(svc, bound-n) // full now
	before := service.BcryptRuns(svc)
	if _, err := svc.Authenticate(ctx, "admin@localhost", "secret-pass-1"); err != nil {
		t.Fatal(err)
	}
	if runs := service.BcryptRuns(svc) - before; runs != 0 {
		t.Fatalf("login from a full cache ran bcrypt %d times, want 0", runs)
	}
	service.FillLoginCache(svc, bound/2) // overflow
	if n, _ := service.LoginCacheLen(svc); n != bound {
		t.Fatalf("cache holds %d entries after the overflow, want its bound %d", n, bound)
	}
	if _, err := svc.Authenticate(ctx, "admin@localhost", "secret-pass-1"); err != nil {
		t.Fatal(err)
	}
	if runs := service.BcryptRuns(svc) - before; runs != 0 {
		t.Fatalf("the login used just before the overflow ran bcrypt %d times after it, want 0", runs)
	}
	// A changed password is checked again, and the old one no longer works.
	newPassword := "secret-pass-2"
	if _, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{Password: &newPassword}); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Authenticate(ctx, "admin@localhost", "secret-pass-1")
	wantCode(t, err, mailcluster.EUNAUTHORIZED)
	if _, err := svc.Authenticate(ctx, "admin@localhost", "secret-pass-2"); err != nil {
		t.Fatal(err)
	}
	if runs := service.BcryptRuns(svc) - before; runs != 2 {
		t.Fatalf("after a password change, %d bcrypt runs, want 2 (old and new password)", runs)
	}
}
