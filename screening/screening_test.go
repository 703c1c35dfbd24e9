package screening_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/screening"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func config() mailcluster.ScreeningConfig {
	return mailcluster.ScreeningConfig{Enabled: true, IPFailures: 3, IPWindow: 10 * time.Minute, AccountFailures: 2,
		AccountWindow: time.Hour, BlockDuration: time.Minute, MaxBlockDuration: 5 * time.Minute, AllowAccounts: map[string]bool{}}
}

func failure(at time.Time, ip, address, hash string) mailcluster.LoginFailure {
	return mailcluster.LoginFailure{Time: at, IP: ip, Address: address, Hash: hash}
}

func TestDetector(t *testing.T) {
	t.Run("AddressCountsRepeats", func(t *testing.T) {
		d := screening.NewDetector()
		var ips, accs []string
		for range 3 {
			ips, accs = d.Observe(config(), t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.1", "a@x.test", "same")})
		}
		if len(ips) != 1 || ips[0] != "192.0.2.1" {
			t.Fatalf("ips %v: three failures with one password must block the address", ips)
		}
		if len(accs) != 0 {
			t.Fatalf("accounts %v: one password repeated must count once for the account", accs)
		}
	})
	t.Run("AccountDistinct", func(t *testing.T) {
		d := screening.NewDetector()
		_, accs := d.Observe(config(), t0, []mailcluster.LoginFailure{
			failure(t0, "192.0.2.1", "A@x.test", "h1"), failure(t0, "192.0.2.2", "a@x.test", "h2")})
		if len(accs) != 1 || accs[0] != "a@x.test" {
			t.Fatalf("accounts %v", accs)
		}
	})
	t.Run("Window", func(t *testing.T) {
		d := screening.NewDetector()
		d.Observe(config(), t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.3", "", "1"), failure(t0, "192.0.2.3", "", "2")})
		later := t0.Add(11 * time.Minute)
		if ips, _ := d.Observe(config(), later, []mailcluster.LoginFailure{failure(later, "192.0.2.3", "", "3")}); len(ips) != 0 {
			t.Fatalf("failures outside the window counted: %v", ips)
		}
	})
	t.Run("AllowList", func(t *testing.T) {
		cfg := config()
		cfg.AllowIPs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		cfg.AllowAccounts["vip@x.test"] = true
		d := screening.NewDetector()
		var ips, accs []string
		for i := range 5 {
			ips, accs = d.Observe(cfg, t0, []mailcluster.LoginFailure{failure(t0, "203.0.113.9", "vip@x.test", string(rune('a'+i)))})
		}
		if len(ips)+len(accs) != 0 {
			t.Fatalf("exempt address or account decided: %v %v", ips, accs)
		}
	})
	t.Run("ForgetAndReset", func(t *testing.T) {
		d := screening.NewDetector()
		d.Observe(config(), t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.4", "b@x.test", "1")})
		d.ForgetAccount("b@x.test")
		if _, accs := d.Observe(config(), t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.5", "b@x.test", "2")}); len(accs) != 0 {
			t.Fatal("a forgotten account's failures still counted")
		}
		d.Reset()
		if ips, _ := d.Observe(config(), t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.4", "", "3"), failure(t0, "192.0.2.4", "", "4")}); len(ips) != 0 {
			t.Fatal("failures before Reset still counted")
		}
	})
}

func TestBlockDuration(t *testing.T) {
	for offences, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		if got := screening.BlockDuration(config(), offences); got != want {
			t.Errorf("offences %d: %v, want %v", offences, got, want)
		}
	}
	if got := screening.BlockDuration(config(), 1000); got != 5*time.Minute {
		t.Errorf("many offences: %v", got)
	}
}

func TestHasher(t *testing.T) {
	h := screening.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	if h.Hash("A@x.test", "pw") != h.Hash("a@x.test", "pw") {
		t.Error("addresses must compare case-insensitively")
	}
	if h.Hash("a@x.test", "pw") == h.Hash("a@x.test", "pw2") {
		t.Error("two passwords, one hash")
	}
	if other := screening.NewHasher([]byte("another key, another key, 32 by")); other.Hash("a@x.test", "pw") == h.Hash("a@x.test", "pw") {
		t.Error("the key does not change the hash")
	}
}

func TestGate(t *testing.T) {
	cfg := config() // IPFailures 3, AccountFailures 2
	now := func() time.Time { return t0 }
	never := func() bool { return false }
	ctx := context.Background()
	t.Run("FailuresFillTheAddress", func(t *testing.T) {
		g := screening.NewGate()
		for i := range 3 {
			at, r := g.Reserve(ctx, cfg, now, "192.0.2.1", "", never)
			if r != screening.Open {
				t.Fatalf("attempt %d refused", i)
			}
			at.Finish(t0, true, string(rune('a'+i)))
		}
		if _, r := g.Reserve(ctx, cfg, now, "192.0.2.1", "", never); r != screening.RefusedAddress {
			t.Fatalf("fourth attempt: %v", r)
		}
		g.ForgetAddress("192.0.2.1")
		if _, r := g.Reserve(ctx, cfg, now, "192.0.2.1", "", never); r != screening.Open {
			t.Fatal("an unblocked address stays refused")
		}
	})
	t.Run("AccountCountsDistinct", func(t *testing.T) {
		g := screening.NewGate()
		for i := range 3 {
			at, r := g.Reserve(ctx, cfg, now, "192.0.2.10", "c@x.test", never)
			if r != screening.Open {
				t.Fatalf("attempt %d refused: one password repeated must count once", i)
			}
			at.Finish(t0, true, "same")
		}
	})
	t.Run("ExemptAccount", func(t *testing.T) {
		g := screening.NewGate()
		for i := range 2 {
			at, _ := g.Reserve(ctx, cfg, now, "192.0.2."+string(rune('1'+i)), "d@x.test", never)
			at.Finish(t0, true, string(rune('a'+i)))
		}
		if _, r := g.Reserve(ctx, cfg, now, "192.0.2.9", "d@x.test", never); r != screening.RefusedAccount {
			t.Fatalf("account limit: %v", r)
		}
		if _, r := g.Reserve(ctx, cfg, now, "192.0.2.9", "d@x.test", func() bool { return true }); r != screening.Open {
			t.Fatal("an exempt account is limited")
		}
	})
	t.Run("InFlightWait", func(t *testing.T) {
		// Three attempts in flight fill the address; a fourth waits until
		// one finishes with success, then gets its slot.
		g := screening.NewGate()
		var ats []*screening.Attempt
		for range 3 {
			at, _ := g.Reserve(ctx, cfg, now, "192.0.2.20", "", never)
			ats = append(ats, at)
		}
		var wg sync.WaitGroup
		var r screening.Refusal = -1
		wg.Go(func() { _, r = g.Reserve(ctx, cfg, now, "192.0.2.20", "", never) })
		ats[0].Finish(t0, false, "")
		wg.Wait()
		if r != screening.Open {
			t.Fatalf("waiting attempt: %v", r)
		}
	})
	t.Run("WaitEndsWithContext", func(t *testing.T) {
		g := screening.NewGate()
		for range 3 {
			g.Reserve(ctx, cfg, now, "192.0.2.30", "", never)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, r := g.Reserve(cctx, cfg, now, "192.0.2.30", "", never); r != screening.RefusedAddress {
			t.Fatalf("attempt with an ended context: %v", r)
		}
	})
}

// TestWindowEdges: a failure exactly a window old no longer counts, one
// just younger still does (for the address and for the account).
func TestWindowEdges(t *testing.T) {
	cfg := config() // IPFailures 3 in 10 min, AccountFailures 2 in 1 h
	d := screening.NewDetector()
	d.Observe(cfg, t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.50", "e@x.test", "1"), failure(t0, "192.0.2.50", "", "2")})
	at := t0.Add(cfg.IPWindow) // the first two are exactly a window old
	if ips, _ := d.Observe(cfg, at, []mailcluster.LoginFailure{failure(at, "192.0.2.50", "", "3")}); len(ips) != 0 {
		t.Fatalf("failures exactly a window old still counted: %v", ips)
	}
	d = screening.NewDetector()
	d.Observe(cfg, t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.51", "", "1"), failure(t0, "192.0.2.51", "", "2")})
	just := t0.Add(cfg.IPWindow - time.Nanosecond)
	if ips, _ := d.Observe(cfg, just, []mailcluster.LoginFailure{failure(just, "192.0.2.51", "", "3")}); len(ips) != 1 {
		t.Fatalf("failures just inside the window not counted: %v", ips)
	}
	// A failure reported with a time a window old is not counted at all.
	d = screening.NewDetector()
	old := t0.Add(-cfg.AccountWindow)
	d.Observe(cfg, t0, []mailcluster.LoginFailure{failure(old, "192.0.2.52", "f@x.test", "1")})
	if _, accs := d.Observe(cfg, t0, []mailcluster.LoginFailure{failure(t0, "192.0.2.53", "f@x.test", "2")}); len(accs) != 0 {
		t.Fatalf("a failure reported a window late counted: %v", accs)
	}
}

// TestHasherSameKey: nodes that share the key hash alike, so a repeated
// password is recognised cluster-wide.
func TestHasherSameKey(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	one, other := screening.NewHasher(key), screening.NewHasher(append([]byte(nil), key...))
	if one.Hash("a@x.test", "pw") != other.Hash("a@x.test", "pw") {
		t.Fatal("two hashers with one key disagree")
	}
}

// TestGateCountsFailuresAndInFlight: failures and attempts in flight fill
// the address's slots together.
func TestGateCountsFailuresAndInFlight(t *testing.T) {
	cfg := config() // IPFailures 3
	now := func() time.Time { return t0 }
	never := func() bool { return false }
	g := screening.NewGate()
	for i := range 2 {
		at, _ := g.Reserve(context.Background(), cfg, now, "192.0.2.60", "", never)
		at.Finish(t0, true, string(rune('a'+i)))
	}
	if _, r := g.Reserve(context.Background(), cfg, now, "192.0.2.60", "", never); r != screening.Open {
		t.Fatal("two failures and nothing in flight: the third attempt must get a slot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, r := g.Reserve(ctx, cfg, now, "192.0.2.60", "", never); r != screening.RefusedAddress {
		t.Fatalf("two failures and one in flight fill three slots: %v", r)
	}
}

// TestGateAsksExemptOnceOutsideItsLock: whether an account is exempt may
// be a costly question; the gate asks it at most once per attempt, and
// not while it holds its lock (the question may use the gate itself).
func TestGateAsksExemptOnceOutsideItsLock(t *testing.T) {
	cfg := config() // AccountFailures 2
	now := func() time.Time { return t0 }
	g := screening.NewGate()
	for i := range 2 {
		at, _ := g.Reserve(context.Background(), cfg, now, "192.0.2."+string(rune('1'+i)), "g@x.test", func() bool { return false })
		at.Finish(t0, true, string(rune('a'+i)))
	}
	asked := 0
	exempt := func() bool {
		asked++
		g.ForgetAddress("198.51.100.1") // takes the gate's lock
		return true
	}
	done := make(chan screening.Refusal, 1)
	go func() {
		_, r := g.Reserve(context.Background(), cfg, now, "192.0.2.9", "g@x.test", exempt)
		done <- r
	}()
	select {
	case r := <-done:
		if r != screening.Open || asked != 1 {
			t.Fatalf("refusal %v after %d questions, want Open after 1", r, asked)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gate asked while holding its lock (deadlock)")
	}
}
