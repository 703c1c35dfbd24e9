package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/kvstore"
	"mailcluster/service"
)

// MustOpenMetricsServer serves the API of a bootstrapped standalone
// primary with its request metrics in reg and returns the base URL.
func MustOpenMetricsServer(tb testing.TB, reg prometheus.Registerer) string {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	store, err := kvstore.OpenBoltStore(filepath.Join(tb.TempDir(), "state.db"), log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	svc := service.New(store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}}, log,
		service.Options{BcryptCost: bcrypt.MinCost})
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: adminAddress, AdminPassword: adminPassword, DataDir: tb.TempDir()}); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(svc, api.Config{Log: log, Registerer: reg}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

// metricsRequest sends one request (as the admin when admin is set) and
// returns the status code.
func metricsRequest(tb testing.TB, method, url string, admin bool) int {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if admin {
		req.SetBasicAuth(adminAddress, adminPassword)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestRequestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	base := MustOpenMetricsServer(t, reg)
	for _, r := range []struct {
		method, path string
		admin        bool
		want         int
	}{
		{"GET", "/api/v1/domains", true, 200},
		{"GET", "/api/v1/domains", true, 200},
		{"GET", "/api/v1/domains", false, 401},
		{"GET", "/api/v1/domains/nope.example", true, 404},
		{"GET", "/api/v1/domains/other.example", true, 404},
		{"PUT", "/api/v1/domains", true, 405},
		{"GET", "/no/such/page", false, 404},
		{"GET", "/api/v1/no-such-resource/x", true, 404},
		{"BREW", "/api/v1/domains", true, 405},
	} {
		if got := metricsRequest(t, r.method, base+r.path, r.admin); got != r.want {
			t.Fatalf("%s %s: status %d, want %d", r.method, r.path, got, r.want)
		}
	}

	t.Run("Requests", func(t *testing.T) {
		// Route patterns, never the requested URLs; unknown methods folded.
		want := `
# HELP mailcluster_http_requests_total HTTP requests answered, by route pattern, method and status code.
# TYPE mailcluster_http_requests_total counter
mailcluster_http_requests_total{method="GET",route="/api/v1/domains",status="200"} 2
mailcluster_http_requests_total{method="GET",route="/api/v1/domains",status="401"} 1
mailcluster_http_requests_total{method="GET",route="/api/v1/domains/:domain",status="404"} 2
mailcluster_http_requests_total{method="PUT",route="/api/v1/domains",status="405"} 1
mailcluster_http_requests_total{method="GET",route="unmatched",status="404"} 2
mailcluster_http_requests_total{method="other",route="/api/v1/domains",status="405"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mailcluster_http_requests_total"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Durations", func(t *testing.T) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, mf := range mfs {
			if mf.GetName() != "mailcluster_http_request_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if len(labels) != 2 {
					t.Errorf("labels = %v, want route and method", labels)
				}
				got[labels["method"]+" "+labels["route"]] = m.GetHistogram().GetSampleCount()
			}
		}
		want := map[string]uint64{"GET /api/v1/domains": 3, "GET /api/v1/domains/:domain": 2, "PUT /api/v1/domains": 1,
			"GET unmatched": 2, "other /api/v1/domains": 1}
		if len(got) != len(want) {
			t.Errorf("histograms = %v, want %v", got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("histogram %q: %d observations, want %d", k, got[k], n)
			}
		}
	})
}

// TestRequestMetricsSharedRegistry: two servers may share a registry (as
// a node's HTTP and HTTPS listeners share one server); they then share
// the counters.
func TestRequestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := MustOpenMetricsServer(t, reg)
	b := MustOpenMetricsServer(t, reg)
	metricsRequest(t, "GET", a+"/api/v1/domains", true)
	metricsRequest(t, "GET", b+"/api/v1/domains", true)
	want := `
# HELP mailcluster_http_requests_total HTTP requests answered, by route pattern, method and status code.
# TYPE mailcluster_http_requests_total counter
mailcluster_http_requests_total{method="GET",route="/api/v1/domains",status="200"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mailcluster_http_requests_total"); err != nil {
		t.Fatal(err)
	}
}

// TestRequestMetricsOff: without a Registerer the server records nothing
// and still answers.
func TestRequestMetricsOff(t *testing.T) {
	base := MustOpenMetricsServer(t, nil)
	if code := metricsRequest(t, "GET", base+"/api/v1/domains", true); code != 200 {
		t.Fatalf("status %d", code)
	}
}
