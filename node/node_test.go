package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/kvstore"
	"mailcluster/node"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

func TestHTTPServerTimeouts(t *testing.T) {
	srv := node.NewHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 30*time.Second || srv.WriteTimeout == 0 ||
		srv.IdleTimeout == 0 || srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("timeouts %v %v %v %v, header limit %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout,
			srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// slowServer serves the node's APIs (REST with the XML-API mounted, over a
// bootstrapped standalone state) with an http.Server made by
// node.NewHTTPServer, its read timeouts shortened so that the test is quick.
func slowServer(t *testing.T, headerTimeout, readTimeout time.Duration) (string, *kvstore.BoltStore) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "n1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost})
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	srv := node.NewHTTPServer(api.NewServer(svc, api.Config{Log: log, XMLAPI: xmlapi.NewHandler(svc, log)}), log)
	srv.ReadHeaderTimeout, srv.ReadTimeout = headerTimeout, readTimeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(service.SystemContext(context.Background(), "test"), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), st
}

// dribble writes head at once, then rest one byte every step, until the
// server closes the connection or 5 s pass. It returns what the server
// sent and how long the connection lasted.
func dribble(t *testing.T, addr, head, rest string, step time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now() // before the server accepts and starts its timer
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	for i := 0; time.Since(start) < 5*time.Second; i++ {
		select {
		case out := <-got:
			return out, time.Since(start)
		case <-time.After(step):
		}
		if _, err := c.Write([]byte{rest[i%len(rest)]}); err != nil {
			return <-got, time.Since(start)
		}
	}
	t.Fatalf("the server kept a slow client for %s", time.Since(start))
	return "", 0
}

// TestSlowClients checks that the API server cuts off clients that send
// their request too slowly, and keeps serving others meanwhile.
func TestSlowClients(t *testing.T) {
	const headerTimeout, readTimeout = 300 * time.Millisecond, 800 * time.Millisecond
	addr, st := slowServer(t, headerTimeout, readTimeout)
	base := "http://" + addr

	t.Run("HeaderByteByByte", func(t *testing.T) {
		out, d := dribble(t, addr, "", "GET /api/v1/node HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 200), 20*time.Millisecond)
		if d < headerTimeout || d > headerTimeout+2*time.Second {
			t.Errorf("connection lasted %s, want about %s", d, headerTimeout)
		}
		if strings.HasPrefix(out, "HTTP/1.1 2") {
			t.Errorf("a request that never ended was answered: %q", out)
		}
	})
	t.Run("BodyByteByByte", func(t *testing.T) {
		body := `{"name":"slow.example","description":"` + strings.Repeat("x", 200) + `"}`
		head := fmt.Sprintf("POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW5AbG9jYWxob3N0OmFkbWluLXBhc3MtMQ==\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		before := st.Index()
		out, d := dribble(t, addr, head, body, 20*time.Millisecond)
		if d < readTimeout || d > readTimeout+2*time.Second {
			t.Errorf("connection lasted %s, want about %s", d, readTimeout)
		}
		if strings.HasPrefix(out, "HTTP/1.1 2") {
			t.Errorf("a request whose body never arrived was answered: %q", out)
		}
		if st.Index() != before {
			t.Error("the state changed")
		}
	})
	t.Run("XMLBodyByteByByte", func(t *testing.T) {
		body := `<MDaemon><API><Request><Operation>CreateDomain</Operation><Parameters><Domain>slowxml.example</Domain>` +
			strings.Repeat(" ", 200) + `</Parameters></Request></API></MDaemon>`
		head := fmt.Sprintf("POST /MdMgmtWS HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW5AbG9jYWxob3N0OmFkbWluLXBhc3MtMQ==\r\n"+
			"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n", len(body))
		before := st.Index()
		out, d := dribble(t, addr, head, body, 20*time.Millisecond)
		if d > readTimeout+2*time.Second {
			t.Errorf("connection lasted %s", d)
		}
		if strings.Contains(out, `id="0"`) {
			t.Errorf("a request whose body never arrived succeeded: %q", out)
		}
		if st.Index() != before {
			t.Error("the state changed")
		}
	})
	t.Run("ManySlowClientsOthersServed", func(t *testing.T) {
		var wg sync.WaitGroup
		conns := make([]net.Conn, 50)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
			_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n")
		}
		start := time.Now()
		client := &http.Client{Timeout: 2 * time.Second}
		for range 5 {
			res, err := client.Get(base + "/health")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("/health: %d", res.StatusCode)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("other clients waited %s", d)
		}
		// Every slow connection is closed after the header timeout.
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(headerTimeout + 2*time.Second))
				_, err := io.ReadAll(c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Error("a slow connection stayed open")
				}
			}()
		}
		wg.Wait()
	})
	t.Run("HugeHeader", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 200<<10)+"\r\n\r\n")
		}()
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 431") {
			t.Errorf("answer to a 200 KiB header: %.60q", b)
		}
	})
}

// heapSink keeps the compiler from dropping TestHeapFloor's garbage.
var heapSink []byte

// collections allocates 256 MiB of garbage and returns how many
// collections ran meanwhile.
func collections() uint32 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 4096 {
		heapSink = make([]byte, 64<<10)
	}
	heapSink = nil
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// TestHeapFloor: a node with --heap-floor 64 keeps the garbage collector
// from running before the heap reaches about 64 MiB, and gives the GC
// percentage back when it stops.
func TestHeapFloor(t *testing.T) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	n := node.New(&node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", SMTPHostname: "mx.test", HeapFloorMiB: 64}, slog.New(slog.DiscardHandler), nil)
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Operators see the floor on /metrics: the GC percentage in effect
	// and the next collection's heap goal.
	res, err := http.Get("http://" + n.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	metric := func(name string) float64 {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("/metrics: no single %s", name)
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	if p := metric("go_gc_gogc_percent"); p <= float64(base) {
		t.Errorf("go_gc_gogc_percent %v with a floor of 64 MiB, want above %d", p, base)
	}
	if g := metric("go_memstats_next_gc_bytes"); g < 60<<20 || g > 96<<20 {
		t.Errorf("go_memstats_next_gc_bytes %v with a floor of 64 MiB, want 60-96 MiB", g)
	}
	with := collections()
	n.Close()
	without := collections()
	t.Logf("collections while 256 MiB were allocated: %d with the node's floor of 64 MiB, %d after it stopped", with, without)
	if with > 12 {
		t.Fatalf("%d collections with a floor of 64 MiB, want at most 12", with)
	}
	if without < 2*with {
		t.Fatalf("%d collections after the node stopped, not fewer than twice the %d with its floor", without, with)
	}
	if p := debug.SetGCPercent(base); p != base {
		t.Fatalf("GC percentage %d after the node stopped, want %d", p, base)
	}
}
