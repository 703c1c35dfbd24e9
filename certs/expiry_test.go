package certs_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/certs"
	"mailcluster/internal/testcert"
	"mailcluster/service"
)

// expiryEvents returns the certificate-expiry events recorded so far.
func (l *recordingLog) expiryEvents() []mailcluster.ClusterEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []mailcluster.ClusterEvent
	for _, e := range l.evs {
		if e.Event == mailcluster.EventCertificateExpiry {
			out = append(out, e)
		}
	}
	return out
}

// testClock is a settable clock for Manager.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// expiryEnv is a manager over imported certificates with a test clock;
// checked counts the expiry checks per certificate name (OnExpiry), the
// signal that a Sync looked at a certificate.
type expiryEnv struct {
	m       *certs.Manager
	events  *recordingLog
	clock   *testClock
	mu      sync.Mutex
	checked map[string]int
}

func mustOpenExpiryEnv(t *testing.T, certificates map[string]time.Time) *expiryEnv {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenPrimary(t, func(o *service.Options) { o.SealKey = mailcluster.SealKey("cluster-secret-0123456789") })
	for name, notAfter := range certificates {
		c := testcert.New(testcert.Options{Names: []string{name + ".example.test"}, NotAfter: notAfter})
		if _, err := svc.ImportCertificate(ctx, name, c.Chain, c.Key, false); err != nil {
			t.Fatal(err)
		}
	}
	self := testcert.New(testcert.Options{Names: []string{"self.test"}})
	fallback, err := tls.X509KeyPair([]byte(self.Chain), []byte(self.Key))
	if err != nil {
		t.Fatal(err)
	}
	e := &expiryEnv{events: &recordingLog{}, clock: &testClock{now: time.Now()}, checked: map[string]int{}}
	e.m = certs.NewManager(mustLocal(svc), mailcluster.SealKey("cluster-secret-0123456789"), &fallback, e.events, discard())
	e.m.Now = e.clock.Now
	e.m.OnExpiry = func(name string, _ time.Duration) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.checked[name]++
	}
	return e
}

// sync runs one Sync at now and fails unless it checked every name.
func (e *expiryEnv) sync(t *testing.T, now time.Time, names ...string) {
	t.Helper()
	e.clock.Set(now)
	e.mu.Lock()
	before := map[string]int{}
	for _, n := range names {
		before[n] = e.checked[n]
	}
	e.mu.Unlock()
	e.m.Sync()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		if e.checked[n] != before[n]+1 {
			t.Fatalf("Sync did not check the expiry of %s", n)
		}
	}
}

// wantWarnings fails unless the expiry events are exactly want, as
// "name days" in order.
func (e *expiryEnv) wantWarnings(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for _, ev := range e.events.expiryEvents() {
		days := "?"
		for _, d := range []string{"30", "7", "1"} {
			if strings.Contains(ev.Message, "less than "+d+" day") {
				days = d
			}
		}
		if ev.Level != "warn" {
			t.Errorf("expiry event at level %q", ev.Level)
		}
		got = append(got, ev.Fields["name"]+" "+days)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("expiry warnings %v, want %v", got, want)
	}
}

// TestCertificateExpiryWarnings moves the manager's clock towards a
// certificate's end: one warning at 29 days left (the 30-day one), one at
// 6 days (7-day), one at 20 hours (1-day), none repeated by later syncs,
// and none for a certificate with 60 days left.
func TestCertificateExpiryWarnings(t *testing.T) {
	end := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	day := 24 * time.Hour
	e := mustOpenExpiryEnv(t, map[string]time.Time{"soon": end, "later": end.Add(31 * day)})

	e.sync(t, end.Add(-60*day), "soon", "later")
	e.wantWarnings(t)
	// Not yet under 30 days: an hour over.
	e.sync(t, end.Add(-30*day-time.Hour), "soon", "later")
	e.wantWarnings(t)

	// soon has 29 days left, later 60.
	e.sync(t, end.Add(-29*day), "soon", "later")
	e.wantWarnings(t, "soon 30")
	e.sync(t, end.Add(-29*day+time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30")

	e.sync(t, end.Add(-7*day-time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30")
	e.sync(t, end.Add(-6*day), "soon", "later")
	e.wantWarnings(t, "soon 30", "soon 7")
	e.sync(t, end.Add(-6*day+time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30", "soon 7")

	e.sync(t, end.Add(-day-time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30", "soon 7")
	e.sync(t, end.Add(-20*time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30", "soon 7", "soon 1")
	e.sync(t, end.Add(-19*time.Hour), "soon", "later")
	e.wantWarnings(t, "soon 30", "soon 7", "soon 1")
}

// TestCertificateExpiryFirstSeenLate: a certificate first seen with 6 days
// left gets the 7-day warning only, not the 30-day one as well.
func TestCertificateExpiryFirstSeenLate(t *testing.T) {
	end := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	e := mustOpenExpiryEnv(t, map[string]time.Time{"late": end})
	e.sync(t, end.Add(-6*24*time.Hour), "late")
	e.wantWarnings(t, "late 7")
	e.sync(t, end.Add(-6*24*time.Hour+time.Minute), "late")
	e.wantWarnings(t, "late 7")
}
