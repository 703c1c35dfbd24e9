package outbound_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/dnstest"
	"mailcluster/outbound"
)

// destDNS answers dest.test with one MX host at 127.0.0.3.
func destDNS(t *testing.T) *dnstest.Server {
	dns := dnstest.Start(t)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	dns.SetA("mx.dest.test", "127.0.0.3")
	return dns
}

// sendWith delivers n messages one after the other, each through a new
// Client (as the queue makes one per attempt) sharing pool, and fails
// unless each was delivered.
func sendWith(t *testing.T, dns *dnstest.Server, port int, pool *outbound.Pool, n int) {
	t.Helper()
	for i := range n {
		r := one(t, client(dns, port, func(c *outbound.Config) { c.Pool = pool }).Deliver(context.Background(), "dest.test", message("b@dest.test")))
		if !r.Delivered {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
}

func (f *fakeMX) Sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func TestPoolReusesSessionsAndDNSAnswers(t *testing.T) {
	dns := destDNS(t)
	mx := startMX(t, "127.0.0.3", 0, nil, false)
	pool := outbound.NewPool()
	defer pool.Close()

	sendWith(t, dns, mx.Port(), pool, 1)
	asked := dns.Queries() // MX, A and AAAA of the first delivery
	sendWith(t, dns, mx.Port(), pool, 4)
	if got := len(mx.Got()); got != 5 {
		t.Fatalf("the MX got %d messages, want 5", got)
	}
	if s := mx.Sessions(); s != 1 {
		t.Fatalf("5 messages took %d sessions, want 1 (the session is kept between messages)", s)
	}
	if q := dns.Queries(); q != asked {
		t.Fatalf("DNS was asked %d more times after the first delivery; the answers (TTL %d s) are kept", q-asked, dnstest.TTL)
	}
	if n := pool.Idle(); n != 1 {
		t.Fatalf("%d idle sessions, want 1", n)
	}

	// Without a pool every message has its own session and lookups.
	before := dns.Queries()
	sendWith(t, dns, mx.Port(), nil, 3)
	if s := mx.Sessions(); s != 1+3 {
		t.Fatalf("without a pool: %d sessions in all, want 4", s)
	}
	if q := dns.Queries() - before; q < 3*3 {
		t.Fatalf("without a pool DNS was asked %d times for 3 messages", q)
	}

	// Close ends the idle session.
	pool.Close()
	if n := pool.Idle(); n != 0 {
		t.Fatalf("%d idle sessions after Close", n)
	}
	sendWith(t, dns, mx.Port(), pool, 1)
	if n := pool.Idle(); n != 0 {
		t.Fatalf("a closed pool kept %d sessions", n)
	}
}

func TestPoolIdleSessionsEnd(t *testing.T) {
	dns := destDNS(t)
	mx := startMX(t, "127.0.0.3", 0, nil, false)
	pool := outbound.NewPool()
	defer pool.Close()
	sendWith(t, dns, mx.Port(), pool, 1)
	deadline := time.Now().Add(10 * time.Second)
	for pool.Idle() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle session was still kept after 10 s (its limit is 2 s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sendWith(t, dns, mx.Port(), pool, 1)
	if s := mx.Sessions(); s != 2 {
		t.Fatalf("%d sessions, want 2 (the first ended when idle)", s)
	}
}

func TestPoolSessionServesAtMost100Messages(t *testing.T) {
	dns := destDNS(t)
	mx := startMX(t, "127.0.0.3", 0, nil, false)
	pool := outbound.NewPool()
	defer pool.Close()
	sendWith(t, dns, mx.Port(), pool, 101)
	if s := mx.Sessions(); s != 2 {
		t.Fatalf("101 messages took %d sessions, want 2 (100 per session)", s)
	}
}

// A kept session that the server closed meanwhile is replaced by a new
// one: the message is delivered once, now, not deferred.
func TestPoolSessionClosedByServer(t *testing.T) {
	dns := destDNS(t)
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: ln}
	mx := serveMX(t, rl, nil, false)
	pool := outbound.NewPool()
	defer pool.Close()
	sendWith(t, dns, mx.Port(), pool, 1)
	conns := rl.Conns()
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	conns[0].Close() // the server side goes away while the session is kept
	time.Sleep(50 * time.Millisecond)
	sendWith(t, dns, mx.Port(), pool, 1)
	if got := len(mx.Got()); got != 2 {
		t.Fatalf("the MX got %d messages, want 2", got)
	}
	if s := mx.Sessions(); s != 2 {
		t.Fatalf("%d sessions, want 2", s)
	}
}

// A session to one MX host is never used for another, nor across TLS
// modes.
func TestPoolSessionsPerHost(t *testing.T) {
	dns := destDNS(t)
	dns.SetMX("other.test", dnstest.MX{Host: "mx.other.test", Pref: 10})
	dns.SetA("mx.other.test", "127.0.0.4")
	mx := startMX(t, "127.0.0.3", 0, nil, false)
	other := startMX(t, "127.0.0.4", mx.Port(), nil, false)
	pool := outbound.NewPool()
	defer pool.Close()
	sendWith(t, dns, mx.Port(), pool, 1)
	r := one(t, client(dns, mx.Port(), func(c *outbound.Config) { c.Pool = pool }).Deliver(context.Background(), "other.test", message("c@other.test")))
	if !r.Delivered || r.Host != "mx.other.test" {
		t.Fatalf("other.test: %+v", r)
	}
	required := func(c *outbound.Config) {
		c.Pool = pool
		c.RequireTLS = func(string) bool { return true }
	}
	r = one(t, client(dns, mx.Port(), required).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Enhanced != "4.7.4" {
		t.Fatalf("TLS required, the MX offers none: %+v (a kept clear session must not serve it)", r)
	}
	if len(mx.Got()) != 1 || len(other.Got()) != 1 {
		t.Fatalf("dest got %d, other got %d", len(mx.Got()), len(other.Got()))
	}
}

// recordingListener keeps the server side of every connection.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *recordingListener) Conns() []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]net.Conn(nil), l.conns...)
}
