package service_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"mailcluster/service"

	"mailcluster"
)

// syncSink hands failures straight to the primary's service.
type syncSink struct {
	svc  *service.Service
	mu   sync.Mutex
	n    int
	last mailcluster.LoginFailure
}

func (s *syncSink) Report(f mailcluster.LoginFailure) {
	s.mu.Lock()
	s.n++
	s.last = f
	s.mu.Unlock()
	_ = s.svc.ReportFailures(service.SystemContext(context.Background(), "test"), []mailcluster.LoginFailure{f})
}

// tokenNotifier records mailed thaw tokens; failures is the sink the
// same service reports failed logins to.
type tokenNotifier struct {
	mu       sync.Mutex
	tokens   map[string]string
	failures *syncSink
}

func (n *tokenNotifier) NotifyFrozen(_ context.Context, a *mailcluster.Account, token string, _ time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tokens[a.Address()] = token
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func MustOpenScreening(t *testing.T) (*service.Service, *clock, *tokenNotifier) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	sink := &syncSink{}
	nt := &tokenNotifier{tokens: map[string]string{}, failures: sink}
	svc, _ := MustOpenService(t, nil, func(o *service.Options) { o.Now, o.Failures, o.Notify = clk.now, sink, nt })
	sink.svc = svc
	ctx := service.SystemContext(context.Background(), "test")
	for k, v := range map[string]string{"IPFailures": "3", "IPWindow": "600", "BlockDuration": "60", "MaxBlockDuration": "200",
		"AccountFailures": "4", "AccountWindow": "3600"} {
		if err := svc.SetSetting(ctx, "mailcluster", "Screening", k, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1", AdminRights: mailcluster.AdminDomain}); err != nil {
		t.Fatal(err)
	}
	return svc, clk, nt
}

func from(ip string) context.Context {
	return service.Anonymous(mailcluster.NewContextWithClientIP(context.Background(), ip))
}

func TestScreeningIPBlock(t *testing.T) {
	svc, clk, _ := MustOpenScreening(t)
	ip := "192.0.2.7"
	t.Run("SamePasswordCountsOnceForTheAccount", func(t *testing.T) {
		// Five repeats of one wrong password from five addresses: the
		// account counts it once (no freeze), each address once.
		for i := range 5 {
			_, _ = svc.Authenticate(from("192.0.2."+string(rune('1'+i))), "alice@example.com", "same-wrong-1")
		}
		if a, _ := svc.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", "alice"); a.Frozen {
			t.Fatal("one wrong password repeated froze the account")
		}
	})
	t.Run("Block", func(t *testing.T) {
		// Every failure counts toward the address, repeats included.
		_, _ = svc.Authenticate(from(ip), "alice@example.com", "same-wrong-1")
		_, _ = svc.Authenticate(from(ip), "alice@example.com", "same-wrong-1")
		if _, blocked := mustLocal(svc).BlockedIP(ip); blocked {
			t.Fatal("blocked before IPFailures failures")
		}
		_, _ = svc.Authenticate(from(ip), "nobody@example.com", "other-wrong-2")
		b, blocked := mustLocal(svc).BlockedIP(ip)
		if !blocked || b.Offences != 1 || b.Until.Sub(clk.t) != 60*time.Second {
			t.Fatalf("block = %+v %v", b, blocked)
		}
		_, err := svc.Authenticate(from(ip), "alice@example.com", "alice-pass-1")
		wantCode(t, err, mailcluster.EFORBIDDEN)
		if _, err := svc.Authenticate(from("192.0.2.8"), "alice@example.com", "alice-pass-1"); err != nil {
			t.Fatalf("another address is refused: %v", err)
		}
	})
	t.Run("ExpiryByClock", func(t *testing.T) {
		clk.t = clk.t.Add(61 * time.Second)
		if _, blocked := mustLocal(svc).BlockedIP(ip); blocked {
			t.Fatal("an expired block still holds")
		}
	})
	t.Run("RepeatOffenceDoubles", func(t *testing.T) {
		// (alice is frozen by now: her logins no longer count; use unknown names)
		for _, pw := range []string{"w-a-123456", "w-b-123456", "w-c-123456"} {
			_, _ = svc.Authenticate(from(ip), "nobody@example.com", pw)
		}
		b, blocked := mustLocal(svc).BlockedIP(ip)
		if !blocked || b.Offences != 2 || b.Until.Sub(clk.t) != 120*time.Second {
			t.Fatalf("second block = %+v", b)
		}
		clk.t = clk.t.Add(121 * time.Second)
		for _, pw := range []string{"w-d-123456", "w-e-123456", "w-f-123456"} {
			_, _ = svc.Authenticate(from(ip), "nobody@example.com", pw)
		}
		b, _ = mustLocal(svc).BlockedIP(ip)
		if b.Offences != 3 || b.Until.Sub(clk.t) != 200*time.Second {
			t.Fatalf("third block (capped at MaxBlockDuration) = %+v", b)
		}
	})
	t.Run("Window", func(t *testing.T) {
		other := "198.51.100.1"
		_, _ = svc.Authenticate(from(other), "x@example.com", "w1-1234567")
		_, _ = svc.Authenticate(from(other), "x@example.com", "w2-1234567")
		clk.t = clk.t.Add(11 * time.Minute) // the first two fall out of the window
		_, _ = svc.Authenticate(from(other), "x@example.com", "w3-1234567")
		if _, blocked := mustLocal(svc).BlockedIP(other); blocked {
			t.Fatal("failures outside the window counted")
		}
	})
	t.Run("AllowList", func(t *testing.T) {
		if err := svc.SetSetting(service.SystemContext(context.Background(), "test"), "mailcluster", "Screening", "AllowIPs", "203.0.113.0/24, 2001:db8::1"); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"203.0.113.9", "2001:db8::1"} {
			for _, pw := range []string{"a-1234567", "b-1234567", "c-1234567", "d-1234567"} {
				_, _ = svc.Authenticate(from(a), "nobody@example.com", pw)
			}
			if _, blocked := mustLocal(svc).BlockedIP(a); blocked {
				t.Fatalf("allow-listed %s was blocked", a)
			}
		}
	})
}

func TestScreeningFreezeAndThaw(t *testing.T) {
	svc, clk, nt := MustOpenScreening(t)
	ctx := service.SystemContext(context.Background(), "test")
	// Four distinct wrong passwords from four addresses freeze alice
	// (no address reaches its own threshold of 3).
	for i, pw := range []string{"f-1-234567", "f-2-234567", "f-3-234567", "f-4-234567"} {
		_, _ = svc.Authenticate(from("192.0.2."+string(rune('1'+i))), "alice@example.com", pw)
	}
	a, err := svc.FindAccount(ctx, "example.com", "alice")
	if err != nil || !a.Frozen {
		t.Fatalf("alice not frozen: %+v %v", a, err)
	}
	frozen, _ := svc.ListFrozenAccounts(ctx)
	if len(frozen) != 1 || frozen[0].Address != "alice@example.com" || frozen[0].TokenHash != "" {
		t.Fatalf("frozen list = %+v", frozen)
	}
	sink := nt.failures
	before := sink.n
	_, err = svc.Authenticate(from("192.0.2.99"), "alice@example.com", "alice-pass-1")
	wantCode(t, err, mailcluster.EUNAUTHORIZED)
	if sink.n != before {
		t.Fatal("the right password of a frozen account was counted as a failure")
	}
	_, err = svc.Authenticate(from("192.0.2.99"), "alice@example.com", "still-wrong-1")
	wantCode(t, err, mailcluster.EUNAUTHORIZED)
	if sink.n != before+1 || sink.last.Address != "" {
		t.Fatalf("a wrong password of a frozen account must count toward the address only: %d reports, last %+v", sink.n-before, sink.last)
	}
	token := nt.tokens["alice@example.com"]
	if len(token) < 20 {
		t.Fatalf("no thaw token mailed: %q", token)
	}
	wantCode(t, svc.RedeemThawToken(from("192.0.2.50"), "alice@example.com", "WRONGTOKEN"), mailcluster.EUNAUTHORIZED)
	clk.t = clk.t.Add(49 * time.Hour)
	wantCode(t, svc.RedeemThawToken(from("192.0.2.50"), "alice@example.com", token), mailcluster.EUNAUTHORIZED)
	clk.t = clk.t.Add(-49 * time.Hour)
	if err := svc.RedeemThawToken(from("192.0.2.50"), "alice@example.com", token); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if _, err := svc.Authenticate(from("192.0.2.99"), "alice@example.com", "alice-pass-1"); err != nil {
		t.Fatalf("login after thaw: %v", err)
	}
	wantCode(t, svc.RedeemThawToken(from("192.0.2.50"), "alice@example.com", token), mailcluster.EUNAUTHORIZED)

	t.Run("AdminThaw", func(t *testing.T) {
		if err := svc.FreezeAccount(ctx, "alice@example.com", "test"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, svc.FreezeAccount(ctx, "alice@example.com", "again"), mailcluster.ECONFLICT)
		no := false
		if _, err := svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{Frozen: &no}); err != nil {
			t.Fatal(err)
		}
		if fs, _ := svc.ListFrozenAccounts(ctx); len(fs) != 0 {
			t.Fatalf("UpdateAccount Frozen=false left %+v", fs)
		}
		wantCode(t, svc.ThawAccount(ctx, "alice@example.com"), mailcluster.ENOTFOUND)
	})
	t.Run("AllowListedAccount", func(t *testing.T) {
		if err := svc.SetSetting(ctx, "mailcluster", "Screening", "AllowAccounts", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		for i, pw := range []string{"g-1-234567", "g-2-234567", "g-3-234567", "g-4-234567", "g-5-234567"} {
			_, _ = svc.Authenticate(from("198.51.100."+string(rune('1'+i))), "alice@example.com", pw)
		}
		if a, _ := svc.FindAccount(ctx, "example.com", "alice"); a.Frozen {
			t.Fatal("an allow-listed account was frozen")
		}
	})
}

func TestScreeningLocalDecisions(t *testing.T) {
	svc, clk, _ := MustOpenScreening(t)
	ip := "192.0.2.200"
	var fs []mailcluster.LoginFailure
	for _, h := range []string{"h1", "h2", "h3"} {
		fs = append(fs, mailcluster.LoginFailure{Time: clk.now(), IP: ip, Hash: h, Node: "n2"})
	}
	mustLocal(svc).DecideLocally(fs)
	b, blocked := mustLocal(svc).BlockedIP(ip)
	if !blocked || b.Source != "local" {
		t.Fatalf("local block = %+v %v", b, blocked)
	}
	if n := mustLocal(svc).ClearLocalDecisions(); n != 1 {
		t.Fatalf("cleared %d", n)
	}
	if _, blocked := mustLocal(svc).BlockedIP(ip); blocked {
		t.Fatal("a local decision survived the primary's return")
	}
}

func TestScreeningAdminViews(t *testing.T) {
	svc, clk, _ := MustOpenScreening(t)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.BlockIP(ctx, "2001:DB8::5", time.Time{}, "manual"); err != nil {
		t.Fatal(err)
	}
	if b, ok := mustLocal(svc).BlockedIP("2001:db8::5"); !ok || !b.Until.IsZero() || b.Source != "admin" {
		t.Fatalf("never-expiring block = %+v", b)
	}
	_, err := svc.BlockIP(ctx, "not-an-ip", time.Time{}, "")
	wantCode(t, err, mailcluster.EINVALID)
	_, err = svc.BlockIP(ctx, "192.0.2.1", clk.t.Add(-time.Minute), "")
	wantCode(t, err, mailcluster.EINVALID)
	if _, err := svc.BlockIP(ctx, "192.0.2.1", clk.t.Add(time.Minute), "short"); err != nil {
		t.Fatal(err)
	}
	list, _ := svc.ListBlockedIPs(ctx)
	if len(list) != 2 {
		t.Fatalf("list = %+v", list)
	}
	if err := svc.UnblockIP(ctx, "2001:db8::5"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, svc.UnblockIP(ctx, "2001:db8::5"), mailcluster.ENOTFOUND)
	if _, ok := mustLocal(svc).BlockedIP("2001:db8::5"); ok {
		t.Fatal("still blocked after unblock")
	}
}
