package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
)

// readConns is the number of keep-alive connections of the read
// benchmarks, as in the reads section of the bench package.
const readConns = 16

// readPath is the account the read benchmarks fetch.
const readPath = "/api/v1/domains/read.example/accounts/alice"

// mustOpenReadSecondary starts a primary with the account of readPath and
// a secondary over the same state, as a node runs it (request metrics,
// access log at level info), and returns the secondary.
func mustOpenReadSecondary(tb testing.TB) *Env {
	tb.Helper()
	_, sec := mustOpenRead(tb, WithQuietLog())
	return sec
}

// mustOpenRead is mustOpenReadSecondary with the primary too, both
// opened with opts.
func mustOpenRead(tb testing.TB, opts ...EnvOption) (primary, secondary *Env) {
	tb.Helper()
	primary = MustOpenEnv(tb, opts...)
	mustStatus(tb, primary.Admin.Send(tb, http.MethodPost, "/api/v1/domains", map[string]any{"name": "read.example"}), http.StatusCreated)
	mustStatus(tb, primary.Admin.Send(tb, http.MethodPost, "/api/v1/domains/read.example/accounts", map[string]any{
		"mailbox": "alice", "password": "alice-pass-123", "fullName": "Alice Example", "firstName": "Alice", "lastName": "Example"}),
		http.StatusCreated)
	return primary, MustOpenPeer(tb, primary, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true},
		append(opts, WithRegisterer(prometheus.NewRegistry()))...)
}

func mustStatus(tb testing.TB, r *Response, want int) {
	tb.Helper()
	if r.Status != want {
		tb.Fatalf("status %d, want %d: %s", r.Status, want, r.Body)
	}
}

// benchGet runs GET url with the admin's Basic credentials from
// readConns goroutines over as many keep-alive connections.
func benchGet(b *testing.B, url string) {
	tr := &http.Transport{MaxIdleConnsPerHost: readConns, MaxConnsPerHost: readConns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetParallelism(max(1, readConns/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			req.SetBasicAuth(adminAddress, adminPassword)
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the CPU time the process used so far (user and
// system, every thread), in nanoseconds: the server's and the client's,
// less noisy than wall time on a shared machine.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// serveGet answers GET url with the admin's Basic credentials through h
// directly, without a connection: the handler's own cost.
func serveGet(b *testing.B, h http.Handler) {
	req := httptest.NewRequest(http.MethodGet, readPath, nil)
	req.SetBasicAuth(adminAddress, adminPassword)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkGetAccount measures GET of one account on a secondary over
// real HTTP (compare with BenchmarkBareEcho).
func BenchmarkGetAccount(b *testing.B) {
	sec := mustOpenReadSecondary(b)
	benchGet(b, sec.HTTP.URL+readPath)
}

// BenchmarkGetAccountHandler measures the same GET through the Server's
// handler alone, without HTTP: the node's own part.
func BenchmarkGetAccountHandler(b *testing.B) {
	sec := mustOpenReadSecondary(b)
	serveGet(b, sec.Server)
}

// BenchmarkBareEchoHandler is the bare Echo handler's own part, the peer
// of BenchmarkGetAccountHandler.
func BenchmarkBareEchoHandler(b *testing.B) {
	serveGet(b, bareEcho(b, mustOpenReadSecondary(b)))
}

// bareEcho returns a bare Echo answering the JSON the secondary answers
// for readPath from memory.
func bareEcho(b *testing.B, sec *Env) *echo.Echo {
	body := sec.Admin.Get(b, readPath)
	mustStatus(b, body, http.StatusOK)
	e := echo.New()
	e.GET("/api/v1/domains/:domain/accounts/:mailbox", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, body.Body)
	})
	return e
}

// BenchmarkBareEcho measures a bare Echo handler that answers the same
// JSON from memory, without middleware or authentication: the peer of
// BenchmarkGetAccount.
func BenchmarkBareEcho(b *testing.B) {
	srv := httptest.NewServer(bareEcho(b, mustOpenReadSecondary(b)))
	defer srv.Close()
	benchGet(b, srv.URL+readPath)
}
