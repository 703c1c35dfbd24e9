package api_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailcluster"
)

// fakeCheck is a mailcluster.HealthCheck whose problems the test sets.
type fakeCheck struct {
	mu       sync.Mutex
	problems []string
	asked    int
}

var _ mailcluster.HealthCheck = (*fakeCheck)(nil)

func (f *fakeCheck) Problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return slices.Clone(f.problems)
}

func (f *fakeCheck) set(ps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = ps
}

// health is the JSON form of a /health answer.
type health struct {
	Status   string
	Role     string
	Name     string
	Problems []string
}

func TestHealth(t *testing.T) {
	check := &fakeCheck{}
	env := MustOpenEnv(t, WithChecks(check))
	anon := env.Admin.Anonymous()

	t.Run("OK", func(t *testing.T) {
		res := anon.Get(t, "/health").Expect(t, http.StatusOK)
		var h health
		res.JSON(t, &h)
		if h.Status != "ok" || h.Role != "primary" || h.Name != "node1" || h.Problems == nil || len(h.Problems) != 0 {
			t.Errorf("health = %+v", h)
		}
		if !strings.Contains(string(res.Body), `"problems":[]`) {
			t.Errorf("problems is not an empty array: %s", res.Body)
		}
	})
	t.Run("HeadOK", func(t *testing.T) {
		res := anon.Do(t, Request{Method: http.MethodHead, Path: "/health"}).Expect(t, http.StatusOK)
		if len(res.Body) != 0 {
			t.Errorf("HEAD body %q", res.Body)
		}
	})
	t.Run("Unhealthy", func(t *testing.T) {
		check.set("No valid TLS certificate: mail expired.", "Replication is 9 s behind.")
		res := anon.Get(t, "/health").Expect(t, http.StatusServiceUnavailable)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		var h health
		res.JSON(t, &h)
		if h.Status != "unhealthy" || h.Role != "primary" || h.Name != "node1" ||
			!slices.Equal(h.Problems, []string{"No valid TLS certificate: mail expired.", "Replication is 9 s behind."}) {
			t.Errorf("health = %+v", h)
		}
	})
	t.Run("HeadUnhealthy", func(t *testing.T) {
		res := anon.Do(t, Request{Method: http.MethodHead, Path: "/health"}).Expect(t, http.StatusServiceUnavailable)
		if len(res.Body) != 0 {
			t.Errorf("HEAD body %q", res.Body)
		}
	})
	t.Run("NodeCarriesProblems", func(t *testing.T) {
		var n struct{ Problems []string }
		env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK).JSON(t, &n)
		if len(n.Problems) != 2 {
			t.Errorf("node problems %v", n.Problems)
		}
	})
	t.Run("Recovered", func(t *testing.T) {
		check.set()
		var h health
		anon.Get(t, "/health").Expect(t, http.StatusOK).JSON(t, &h)
		if h.Status != "ok" || len(h.Problems) != 0 {
			t.Errorf("health = %+v", h)
		}
		anon.Do(t, Request{Method: http.MethodHead, Path: "/health"}).Expect(t, http.StatusOK)
		var n struct{ Problems []string }
		res := env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		res.JSON(t, &n)
		if n.Problems == nil || len(n.Problems) != 0 {
			t.Errorf("node problems %v: %s", n.Problems, res.Body)
		}
	})
	t.Run("ErrMethod", func(t *testing.T) {
		anon.Do(t, Request{Method: http.MethodPost, Path: "/health", Body: []byte(`{}`)}).
			ExpectProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
	})
}

func TestMetrics(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		env := MustOpenEnv(t, WithMetrics(promhttp.Handler()))
		res := env.Admin.Anonymous().Get(t, "/metrics").Expect(t, http.StatusOK)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q", ct)
		}
		if !strings.Contains(string(res.Body), "go_goroutines") {
			t.Errorf("no go_goroutines in\n%.500s", res.Body)
		}
		if !strings.Contains(env.Log.String(), "path=/metrics") {
			t.Error("the request was not in the access log")
		}
	})
	t.Run("TrivialHandler", func(t *testing.T) {
		env := MustOpenEnv(t, WithMetrics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write([]byte("# TYPE mailcluster_up gauge\nmailcluster_up 1\n"))
		})))
		res := env.Admin.Anonymous().Get(t, "/metrics").Expect(t, http.StatusOK)
		if string(res.Body) != "# TYPE mailcluster_up gauge\nmailcluster_up 1\n" {
			t.Errorf("body %q", res.Body)
		}
	})
	t.Run("ErrNotServed", func(t *testing.T) {
		env := MustOpenEnv(t)
		p := env.Admin.Anonymous().Get(t, "/metrics").ExpectProblem(t, http.StatusNotFound, "not-found")
		if !strings.Contains(p.Detail, "metrics") {
			t.Errorf("detail %q", p.Detail)
		}
	})
}

// TestHealthRoles covers /health/primary and /health/secondary.
func TestHealthRoles(t *testing.T) {
	t.Run("Primary", func(t *testing.T) {
		env := MustOpenEnv(t)
		c := env.Admin.Anonymous()
		var h struct{ Summary, Role string }
		c.Get(t, "/health/primary").Expect(t, http.StatusOK).JSON(t, &h)
		if h.Role != "primary" || !strings.HasPrefix(h.Summary, "primary; lag 0 ms; ok") {
			t.Fatalf("health = %+v", h)
		}
		c.Get(t, "/health/secondary").Expect(t, http.StatusServiceUnavailable)
		c.Do(t, Request{Method: http.MethodHead, Path: "/health/primary"}).Expect(t, http.StatusOK)
		c.Do(t, Request{Method: http.MethodHead, Path: "/health/secondary"}).Expect(t, http.StatusServiceUnavailable)
	})
	t.Run("Secondary", func(t *testing.T) {
		primary := MustOpenEnv(t)
		sec := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary,
			primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true})
		c := sec.Admin.Anonymous()
		c.Get(t, "/health/secondary").Expect(t, http.StatusOK)
		c.Get(t, "/health/secondary?max_lag=500ms").Expect(t, http.StatusOK)
		c.Get(t, "/health/secondary?max_lag=2").Expect(t, http.StatusOK)
		c.Get(t, "/health/primary").Expect(t, http.StatusServiceUnavailable)
		c.Do(t, Request{Method: http.MethodGet, Path: "/health/secondary?max_lag=soon"}).ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("Pending", func(t *testing.T) {
		primary := MustOpenEnv(t)
		p := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RolePending,
			primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true})
		c := p.Admin.Anonymous()
		var h struct {
			Status   string
			Problems []string
		}
		c.Get(t, "/health").Expect(t, http.StatusServiceUnavailable).JSON(t, &h)
		if h.Status != "unhealthy" || len(h.Problems) == 0 || !strings.Contains(h.Problems[0], "not registered") {
			t.Fatalf("pending health = %+v", h)
		}
		c.Get(t, "/health/secondary").Expect(t, http.StatusServiceUnavailable)
	})
}
