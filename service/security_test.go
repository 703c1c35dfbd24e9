package service_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mailcluster/service"

	"mailcluster"
)

// login runs Authenticate and returns the error code ("" on success).
func login(svc *service.Service, ip, address, password string) string {
	_, err := svc.Authenticate(from(ip), address, password)
	return mailcluster.ErrorCode(err)
}

// TestLoginParallelGuesses: parallel wrong passwords from one address are
// not all checked: at most IPFailures reach bcrypt, the rest are refused,
// and the address ends up blocked.
func TestLoginParallelGuesses(t *testing.T) {
	svc, _, _ := MustOpenScreening(t) // IPFailures 3, AccountFailures 4
	ip := "192.0.2.40"
	before := service.BcryptRuns(svc)
	codes := make([]string, 40)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() { codes[i] = login(svc, ip, "alice@example.com", fmt.Sprintf("guess-%02d-xyz", i)) })
	}
	wg.Wait()
	checked := 0
	for _, c := range codes {
		switch c {
		case mailcluster.EUNAUTHORIZED:
			checked++
		case mailcluster.EFORBIDDEN:
		default:
			t.Fatalf("unexpected answer %q", c)
		}
	}
	if checked > 3 {
		t.Fatalf("%d of 40 parallel guesses were checked, limit 3", checked)
	}
	if runs := service.BcryptRuns(svc) - before; runs > 3 {
		t.Fatalf("%d password checks ran, limit 3", runs)
	}
	if _, blocked := mustLocal(svc).BlockedIP(ip); !blocked {
		t.Fatal("the guessing address is not blocked")
	}
	if c := login(svc, ip, "alice@example.com", "alice-pass-1"); c != mailcluster.EFORBIDDEN {
		t.Fatalf("right password from the blocked address = %q, want forbidden", c)
	}
}

// TestLoginSamePasswordRepeated: repeating one wrong password spends the
// address's failures like distinct ones (the bcrypt exhaustion attack).
func TestLoginSamePasswordRepeated(t *testing.T) {
	svc, _, _ := MustOpenScreening(t)
	ip := "192.0.2.41"
	before := service.BcryptRuns(svc)
	var codes []string
	for range 20 {
		codes = append(codes, login(svc, ip, "alice@example.com", "the-same-wrong-one"))
	}
	for i, c := range codes {
		want := mailcluster.EUNAUTHORIZED
		if i >= 3 {
			want = mailcluster.EFORBIDDEN
		}
		if c != want {
			t.Fatalf("attempt %d = %q, want %q (all: %v)", i+1, c, want, codes)
		}
	}
	if runs := service.BcryptRuns(svc) - before; runs != 3 {
		t.Fatalf("%d password checks ran for 20 repeats, want 3", runs)
	}
	if _, blocked := mustLocal(svc).BlockedIP(ip); !blocked {
		t.Fatal("the address is not blocked")
	}
	if a, _ := svc.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", "alice"); a.Frozen {
		t.Fatal("one repeated password froze the account (the account counts it once)")
	}
}

// TestBcryptConcurrencyBounded: parallel logins of unknown addresses from
// many client addresses (so that no attempt limit applies) never run more
// password checks at once than the bound.
func TestBcryptConcurrencyBounded(t *testing.T) {
	svc, _ := MustOpenService(t, nil, func(o *service.Options) { o.BcryptCost = 10 }) // checks long enough to overlap
	_, bound := service.BcryptPeak()
	var wg sync.WaitGroup
	for i := range 3 * bound {
		wg.Go(func() {
			if c := login(svc, fmt.Sprintf("198.51.%d.%d", 100+i/200, 10+i%200), fmt.Sprintf("nobody%d@localhost", i), "some-password-1"); c != mailcluster.EUNAUTHORIZED {
				t.Errorf("login %d: %q", i, c)
			}
		})
	}
	wg.Wait()
	if peak, _ := service.BcryptPeak(); peak < 1 || peak > int64(bound) {
		t.Fatalf("%d password checks ran at once, bound %d", peak, bound)
	}
}

// TestLoginSameCost: frozen, disabled and unknown accounts cost a password
// check like a wrong password does.
func TestLoginSameCost(t *testing.T) {
	svc, _, _ := MustOpenScreening(t)
	ctx := service.SystemContext(context.Background(), "test")
	if err := svc.FreezeAccount(ctx, "alice@example.com", ""); err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dis", Password: "dis-pass-12"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.UpdateAccount(ctx, "example.com", "dis", mailcluster.AccountUpdate{Disabled: &yes}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ address, password string }{
		{"alice@example.com", "alice-pass-1"},
		{"alice@example.com", "wrong-pass-1"},
		{"alice@example.com", "alice-pass-1"}, // not served from a cache either
		{"dis@example.com", "dis-pass-12"},
		{"nobody@example.com", "some-pass-1"},
	} {
		before := service.BcryptRuns(svc)
		if c := login(svc, fmt.Sprintf("198.51.100.%d", i+1), tc.address, tc.password); c != mailcluster.EUNAUTHORIZED {
			t.Fatalf("%s: %q", tc.address, c)
		}
		if runs := service.BcryptRuns(svc) - before; runs != 1 {
			t.Fatalf("%s with %s ran %d password checks, want 1", tc.address, tc.password, runs)
		}
	}
}

// TestLastAdminNeverLockedOut: failed logins from many addresses never
// freeze (nor gate) the last usable global administrator; once a second
// one exists, screening freezes as usual.
func TestLastAdminNeverLockedOut(t *testing.T) {
	svc, clk, _ := MustOpenScreening(t) // AccountFailures 4; admin@localhost is the only global admin
	ctx := service.SystemContext(context.Background(), "test")
	for i := range 12 {
		_ = login(svc, fmt.Sprintf("192.0.2.%d", 100+i), "admin@localhost", fmt.Sprintf("attack-%02d-pw", i))
	}
	a, err := svc.FindAccount(ctx, "localhost", "admin")
	if err != nil || a.Frozen {
		t.Fatalf("the only global administrator was frozen: %+v %v", a, err)
	}
	if c := login(svc, "203.0.113.200", "admin@localhost", "secret-pass-1"); c != "" {
		t.Fatalf("the only global administrator cannot log in: %q", c)
	}

	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "ops", Password: "ops-pass-123",
		AdminRights: mailcluster.AdminGlobal}); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(2 * time.Minute) // past the node's own attempt window
	for i := range 4 {
		_ = login(svc, fmt.Sprintf("192.0.2.%d", 150+i), "admin@localhost", fmt.Sprintf("second-%02d-pw", i))
	}
	if a, _ := svc.FindAccount(ctx, "localhost", "admin"); !a.Frozen {
		t.Fatal("with another usable global administrator, screening did not freeze")
	}
	for i := range 12 {
		_ = login(svc, fmt.Sprintf("192.0.2.%d", 200+i), "ops@example.com", fmt.Sprintf("third-%02d-pw", i))
	}
	if a, _ := svc.FindAccount(ctx, "example.com", "ops"); a.Frozen {
		t.Fatal("the now last usable global administrator was frozen")
	}
	if c := login(svc, "203.0.113.201", "ops@example.com", "ops-pass-123"); c != "" {
		t.Fatalf("the last global administrator cannot log in: %q", c)
	}
	// Nor can an administrator freeze it by hand.
	wantCode(t, svc.FreezeAccount(ctx, "ops@example.com", ""), mailcluster.ECONFLICT)
}

// TestFreezeGlobalAdminRights: only a global administrator may freeze a
// global administrator, also one in the domain administrator's own domain.
func TestFreezeGlobalAdminRights(t *testing.T) {
	svc, _, _ := MustOpenScreening(t)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "boss", Password: "boss-pass-12",
		AdminRights: mailcluster.AdminGlobal}); err != nil {
		t.Fatal(err)
	}
	alice, err := svc.FindAccount(ctx, "example.com", "alice") // a domain administrator of example.com
	if err != nil {
		t.Fatal(err)
	}
	dctx := service.NewContextWithCaller(ctx, alice)
	for _, victim := range []string{"boss@example.com", "admin@localhost"} {
		wantCode(t, svc.FreezeAccount(dctx, victim, "tenant"), mailcluster.EFORBIDDEN)
	}
	for _, a := range []string{"boss@example.com", "admin@localhost"} {
		mailbox, domain, _ := mailcluster.SplitAddress(a)
		if acc, _ := svc.FindAccount(ctx, domain, mailbox); acc.Frozen {
			t.Fatalf("%s was frozen by a domain administrator", a)
		}
	}
	admin, _ := svc.FindAccount(ctx, "localhost", "admin")
	if err := svc.FreezeAccount(service.NewContextWithCaller(ctx, admin), "boss@example.com", "global admin may"); err != nil {
		t.Fatalf("a global administrator freezing another: %v", err)
	}
}

// TestMailboxPathRules: only global administrators set mailbox paths, and
// only below the mailbox root (symbolic links resolved).
func TestMailboxPathRules(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	root := t.TempDir()
	outside := t.TempDir()
	if err := svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, root); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.com", "other.com"} {
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "dadmin-pass-1",
		AdminRights: mailcluster.AdminDomain}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "other.com", Mailbox: "victim", Password: "victim-pass-1"}); err != nil {
		t.Fatal(err)
	}
	da, _ := svc.FindAccount(ctx, "example.com", "dadmin")
	dctx := service.NewContextWithCaller(ctx, da)
	victimPath := filepath.Join(root, "other.com", "victim") + "/"
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}

	t.Run("ErrForbidden", func(t *testing.T) {
		// The attack: a tenant points an account at another tenant's mailbox.
		for _, p := range []string{victimPath, filepath.Join(root, "admin"), "/etc/"} {
			before := st.Index()
			_, err := svc.CreateAccount(dctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "thief", Password: "thief-pass-1", MailboxPath: p})
			wantCode(t, err, mailcluster.EFORBIDDEN)
			_, err = svc.UpdateAccount(dctx, "example.com", "dadmin", mailcluster.AccountUpdate{MailboxPath: &p})
			wantCode(t, err, mailcluster.EFORBIDDEN)
			if st.Index() != before {
				t.Fatal("a refused change changed the state")
			}
		}
	})
	t.Run("OKDomainAdminDefaultPath", func(t *testing.T) {
		a, err := svc.CreateAccount(dctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "plain", Password: "plain-pass-1"})
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(root, "example.com", "plain") + "/"; a.MailboxPath != want {
			t.Fatalf("path = %q, want %q", a.MailboxPath, want)
		}
		// Sending the path the account has already is no change.
		p := a.MailboxPath
		name := "Plain"
		if _, err := svc.UpdateAccount(dctx, "example.com", "plain", mailcluster.AccountUpdate{MailboxPath: &p, FullName: &name}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrInvalidOutsideRoot", func(t *testing.T) {
		for _, p := range []string{"/etc/", outside + "/x/", filepath.Join(root, "link", "x") + "/", root, root + "/"} {
			_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "g1", Password: "g1-pass-123", MailboxPath: p})
			wantCode(t, err, mailcluster.EINVALID)
		}
	})
	t.Run("OKGlobalAdminBelowRoot", func(t *testing.T) {
		p := filepath.Join(root, "custom", "g2") + "/"
		a, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "g2", Password: "g2-pass-123", MailboxPath: p})
		if err != nil || a.MailboxPath != p {
			t.Fatalf("%+v %v", a, err)
		}
	})
	t.Run("ErrTemplateOutsideRoot", func(t *testing.T) {
		if err := svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionNewAccounts, mailcluster.KeyMailboxPath, outside+"/$DOMAIN$/$MAILBOX$/"); err != nil {
			t.Fatal(err)
		}
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "g3", Password: "g3-pass-123"})
		wantCode(t, err, mailcluster.EINVALID)
	})
}

// TestSendAsRules: SendAs entries are checked and normalized; a domain
// administrator may only allow addresses of its own domain.
func TestSendAsRules(t *testing.T) {
	svc, _ := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	for _, d := range []string{"example.com", "other.com"} {
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "dadmin-pass-1",
		AdminRights: mailcluster.AdminDomain}); err != nil {
		t.Fatal(err)
	}
	da, _ := svc.FindAccount(ctx, "example.com", "dadmin")
	dctx := service.NewContextWithCaller(ctx, da)

	a, err := svc.CreateAccount(dctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob", Password: "bob-pass-123",
		SendAs: []string{"Sales@Example.com", "@EXAMPLE.com", "sales@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.SendAs) != "[sales@example.com @example.com]" {
		t.Fatalf("SendAs = %v", a.SendAs)
	}
	if !a.MaySendAs("bob@example.com") || !a.MaySendAs("anyone@EXAMPLE.com") || a.MaySendAs("ceo@other.com") {
		t.Fatal("MaySendAs does not follow the list")
	}
	for _, list := range [][]string{{"ceo@other.com"}, {"@other.com"}} {
		_, err := svc.UpdateAccount(dctx, "example.com", "bob", mailcluster.AccountUpdate{SendAs: &list})
		wantCode(t, err, mailcluster.EFORBIDDEN)
	}
	for _, list := range [][]string{{"not an address"}, {"@"}, {"a@b@c"}} {
		_, err := svc.UpdateAccount(ctx, "example.com", "bob", mailcluster.AccountUpdate{SendAs: &list})
		wantCode(t, err, mailcluster.EINVALID)
	}
	list := []string{"ceo@other.com"}
	if _, err := svc.UpdateAccount(ctx, "example.com", "bob", mailcluster.AccountUpdate{SendAs: &list}); err != nil {
		t.Fatalf("a global administrator may allow any address: %v", err)
	}
	// The domain administrator may still edit other fields of that account.
	name := "Bob"
	if _, err := svc.UpdateAccount(dctx, "example.com", "bob", mailcluster.AccountUpdate{FullName: &name}); err != nil {
		t.Fatal(err)
	}
}
