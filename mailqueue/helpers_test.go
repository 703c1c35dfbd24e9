package mailqueue_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/dnstest"
	"mailcluster/mailqueue"
	"mailcluster/mailstore"
	"mailcluster/outbound"
)

// received is a message the fake destination accepted.
type received struct {
	from  string
	rcpts []string
	data  []byte
}

// dest is a destination mail server on loopback: go-smtp with replies the
// test chooses.
type dest struct {
	t      *testing.T
	ln     net.Listener
	srv    *smtp.Server
	Port   int
	mu     sync.Mutex
	msgs   []received
	rcptFn func(rcpt string) error // nil accepts
	dataFn func() error            // nil accepts
	active atomic.Int32
	peak   atomic.Int32
	hold   time.Duration // each DATA waits this long (concurrency tests)
}

type destSession struct {
	d     *dest
	from  string
	rcpts []string
}

func (s *destSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *destSession) Logout() error { s.d.active.Add(-1); return nil }
func (s *destSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *destSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.d.mu.Lock()
	fn := s.d.rcptFn
	s.d.mu.Unlock()
	if fn != nil {
		if err := fn(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *destSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	time.Sleep(s.d.hold)
	s.d.mu.Lock()
	fn := s.d.dataFn
	s.d.mu.Unlock()
	if fn != nil {
		if err := fn(); err != nil {
			return err
		}
	}
	s.d.mu.Lock()
	s.d.msgs = append(s.d.msgs, received{from: s.from, rcpts: append([]string(nil), s.rcpts...), data: b})
	s.d.mu.Unlock()
	return nil
}

// startDest starts a destination on 127.0.0.1; port 0 picks one.
func startDest(t *testing.T, port int) *dest {
	t.Helper()
	d := &dest{t: t}
	d.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		n := d.active.Add(1)
		for {
			p := d.peak.Load()
			if n <= p || d.peak.CompareAndSwap(p, n) {
				break
			}
		}
		return &destSession{d: d}, nil
	}))
	d.srv.Domain = "mx.dest.test"
	d.srv.AllowInsecureAuth = true
	d.srv.ReadTimeout, d.srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	d.ln = ln
	d.Port = ln.Addr().(*net.TCPAddr).Port
	go d.srv.Serve(ln)
	t.Cleanup(d.stop)
	return d
}

func (d *dest) stop() { d.srv.Close(); d.ln.Close() }

func (d *dest) messages() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.msgs...)
}

// settings is a [Queue]/[Outbound] settings map for tests.
type settings struct {
	mu sync.Mutex
	m  map[string]string
}

func newSettings(kv ...string) *settings {
	s := &settings{m: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.m[kv[i]] = kv[i+1]
	}
	return s
}

func (s *settings) get(section, key, def string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[section+"/"+key]; ok {
		return v
	}
	return def
}

type testDeliverer struct {
	*outbound.Client
}

func (testDeliverer) ViaSmarthost() bool { return false }

// fixture is a queue with its runner, a DNS server and a destination.
type fixture struct {
	t       *testing.T
	dns     *dnstest.Server
	dest    *dest
	spool   mailqueue.Spool
	q       *mailqueue.Queue
	r       *mailqueue.Runner
	set     *settings
	mu      sync.Mutex
	notices map[string][][]byte // local DSNs by recipient
}

func newFixture(t *testing.T, set *settings) *fixture {
	return newFixtureScan(t, set, 200*time.Millisecond)
}

// newFixtureScan is newFixture with the runner listing its queue every
// scan.
func newFixtureScan(t *testing.T, set *settings, scan time.Duration) *fixture {
	t.Helper()
	f := &fixture{t: t, dns: dnstest.Start(t), dest: startDest(t, 0), set: set, notices: map[string][][]byte{}}
	f.dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	f.dns.SetA("mx.dest.test", "127.0.0.1")
	f.spool = mailqueue.Spool{Dir: t.TempDir(), Syncs: &mailstore.DirSyncs{}}
	f.start("n1", scan)
	return f
}

func (f *fixture) start(node string, scan time.Duration) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.q = &mailqueue.Queue{Spool: f.spool, Node: node}
	f.r = mailqueue.NewRunner(mailqueue.Config{Spool: f.spool, Node: node, Hostname: "relay.local.test", Setting: f.set.get, Log: log,
		Scan: scan,
		Deliver: func() mailqueue.Deliverer {
			return testDeliverer{outbound.New(outbound.Config{HeloName: "relay.local.test", DNSServer: f.dns.Addr, Port: f.dest.Port,
				ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second, Log: log})}
		},
		Local: func(_ context.Context, to string, msg []byte) (bool, error) {
			if !strings.HasSuffix(to, "@local.test") {
				return false, nil
			}
			f.mu.Lock()
			f.notices[to] = append(f.notices[to], msg)
			f.mu.Unlock()
			return true, nil
		}})
	f.q.Runner = f.r
	if err := f.r.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { f.r.Close(5 * time.Second) })
}

func (f *fixture) notice(to string) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notices[to]
}

func (f *fixture) enqueue(from string, rcpts ...string) string {
	f.t.Helper()
	body := "Subject: test " + strings.Join(rcpts, ",") + "\r\nFrom: <" + from + ">\r\n\r\nhello\r\n"
	id, err := f.q.Enqueue(from, rcpts, nil, strings.NewReader(body), 1<<20, false)
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func dnstestMX(host string) dnstest.MX { return dnstest.MX{Host: host, Pref: 10} }

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
