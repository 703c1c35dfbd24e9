package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/service"
)

// fakeLagger reports the lag it is set to and counts the questions.
type fakeLagger struct {
	mu    sync.Mutex
	lag   time.Duration
	calls int
}

var _ mailcluster.Lagger = (*fakeLagger)(nil)

func (f *fakeLagger) Lag() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.lag
}

func (f *fakeLagger) set(d time.Duration) {
	f.mu.Lock()
	f.lag = d
	f.mu.Unlock()
}

func (f *fakeLagger) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// mustOpenLaggingSecondary starts a healthy secondary "node2" whose
// Service reads its replication lag from the returned fake.
func mustOpenLaggingSecondary(t *testing.T) (*Env, *fakeLagger) {
	t.Helper()
	lag := &fakeLagger{}
	primary := MustOpenEnv(t)
	sec := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true},
		WithServiceOptions(func(o *service.Options) { o.Lag = lag }))
	return sec, lag
}

// TestHealthSecondaryLag checks that /health/secondary compares the
// replication lag with max_lag (default api.DefaultMaxLag): at most
// max_lag is 200, over it or unknown is 503, for GET and HEAD, and the
// body reports the lag either way. Every answer is checked against the
// spec by the client.
func TestHealthSecondaryLag(t *testing.T) {
	sec, lag := mustOpenLaggingSecondary(t)
	c := sec.Admin.Anonymous()

	type health struct {
		Summary string `json:"summary"`
		Status  string `json:"status"`
		Role    string `json:"role"`
		LagMS   int64  `json:"lagMs"`
	}
	tests := []struct {
		name   string
		lag    time.Duration
		query  string
		status int
	}{
		{"UnderMaxLag", 400 * time.Millisecond, "?max_lag=500ms", http.StatusOK},
		{"AtMaxLag", 500 * time.Millisecond, "?max_lag=500ms", http.StatusOK},
		{"OverMaxLag", 501 * time.Millisecond, "?max_lag=500ms", http.StatusServiceUnavailable},
		{"OverMaxLagSeconds", 2500 * time.Millisecond, "?max_lag=2", http.StatusServiceUnavailable},
		{"UnderMaxLagSeconds", 1500 * time.Millisecond, "?max_lag=2", http.StatusOK},
		{"ZeroMaxLag", time.Millisecond, "?max_lag=0s", http.StatusServiceUnavailable},
		{"InContactZeroMaxLag", 0, "?max_lag=0s", http.StatusOK},
		// The spec promises a default of 5 s.
		{"DefaultUnder", 4999 * time.Millisecond, "", http.StatusOK},
		{"DefaultAt", 5 * time.Second, "", http.StatusOK},
		{"DefaultOver", 5001 * time.Millisecond, "", http.StatusServiceUnavailable},
		{"DefaultConst", api.DefaultMaxLag, "", http.StatusOK},
		{"EmptyMaxLag", 5001 * time.Millisecond, "?max_lag=", http.StatusServiceUnavailable},
		{"DefaultLarge", time.Hour, "", http.StatusServiceUnavailable},
		{"LargeMaxLag", time.Hour, "?max_lag=2h", http.StatusOK},
		{"UnknownDefault", -1, "", http.StatusServiceUnavailable},
		{"UnknownLargeMaxLag", -1, "?max_lag=1000h", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lag.set(tt.lag)
			before := lag.Calls()
			var h health
			c.Get(t, "/health/secondary"+tt.query).Expect(t, tt.status).JSON(t, &h)
			if lag.Calls() == before {
				t.Fatal("the answer did not ask the Lagger")
			}
			wantMS := tt.lag.Milliseconds()
			if tt.lag < 0 {
				wantMS = -1
			}
			// The node is healthy either way: only the lag decides.
			if h.Role != "secondary" || h.Status != "ok" || h.LagMS != wantMS {
				t.Fatalf("health = %+v, want a healthy secondary with lagMs %d", h, wantMS)
			}
			wantLag := "lag unknown"
			if tt.lag >= 0 {
				wantLag = fmt.Sprintf("lag %d ms", wantMS)
			}
			if !strings.Contains(h.Summary, wantLag) {
				t.Errorf("summary %q does not say %q", h.Summary, wantLag)
			}
			c.Do(t, Request{Method: http.MethodHead, Path: "/health/secondary" + tt.query}).Expect(t, tt.status)
			// /health itself does not look at the lag.
			c.Get(t, "/health").Expect(t, http.StatusOK)
		})
	}
}

// TestHealthSecondaryMaxLagInvalid checks that a max_lag that is not a
// duration or is negative is a 400 problem, whatever the lag.
func TestHealthSecondaryMaxLagInvalid(t *testing.T) {
	sec, lag := mustOpenLaggingSecondary(t)
	c := sec.Admin.Anonymous()
	lag.set(0)
	for _, q := range []string{"soon", "-1s", "-2", "5x"} {
		t.Run(q, func(t *testing.T) {
			c.Do(t, Request{Method: http.MethodGet, Path: "/health/secondary?max_lag=" + q}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		})
	}
}
