package outbound_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailcluster/internal/dnstest"
	"mailcluster/internal/testcert"
	"mailcluster/outbound"
)

// received is one message a fake server accepted.
type received struct {
	From  string
	Rcpts []string
	Data  string
	TLS   bool   // the message came over TLS
	User  string // the AUTH PLAIN identity, "" without AUTH
}

// fakeMX is a go-smtp server on a loopback address that records what it
// got and answers as its fields say.
type fakeMX struct {
	Addr string // "127.0.0.x:port"

	// Set before the first connection.
	RcptReply func(to string) error // nil: accept
	MailReply error
	DataReply error
	DataBlock chan struct{} // Data waits for it to close
	User      string        // AUTH PLAIN credentials checked when set
	Pass      string

	mu       sync.Mutex
	got      []received
	mails    int // MAIL commands
	auths    int // AUTH attempts
	sessions int
}

// startMX starts a fake MX on ip:port (port 0: a random one); tlsCfg
// enables STARTTLS; insecureAuth offers AUTH without TLS.
func startMX(t *testing.T, ip string, port int, tlsCfg *tls.Config, insecureAuth bool) *fakeMX {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen %s:%d: %v", ip, port, err)
	}
	return serveMX(t, ln, tlsCfg, insecureAuth)
}

// startMXImplicitTLS starts a fake server that speaks TLS from the start.
func startMXImplicitTLS(t *testing.T, ip string, tlsCfg *tls.Config) *fakeMX {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen %s: %v", ip, err)
	}
	return serveMX(t, tls.NewListener(ln, tlsCfg), nil, false)
}

// serveMX serves a fake on ln.
func serveMX(t *testing.T, ln net.Listener, tlsCfg *tls.Config, insecureAuth bool) *fakeMX {
	f := &fakeMX{}
	f.Addr = ln.Addr().String()
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		f.mu.Lock()
		f.sessions++
		f.mu.Unlock()
		return &fakeSession{f: f, c: c}, nil
	}))
	s.Domain = "mx.test"
	s.TLSConfig = tlsCfg
	s.AllowInsecureAuth = insecureAuth
	s.MaxMessageBytes = 1 << 20
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		if f.DataBlock != nil {
			select {
			case <-f.DataBlock:
			default:
				close(f.DataBlock)
			}
		}
		_ = s.Close()
	})
	return f
}

// Port returns the port of the fake.
func (f *fakeMX) Port() int {
	_, p, _ := net.SplitHostPort(f.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Got returns the messages received so far.
func (f *fakeMX) Got() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

// Counts returns the MAIL commands and AUTH attempts seen.
func (f *fakeMX) Counts() (mails, auths int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mails, f.auths
}

type fakeSession struct {
	f     *fakeMX
	c     *smtp.Conn
	from  string
	rcpts []string
	user  string
}

var _ smtp.AuthSession = (*fakeSession)(nil)

func (s *fakeSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.f.mu.Lock()
		s.f.auths++
		s.f.mu.Unlock()
		if s.f.User == "" || username != s.f.User || password != s.f.Pass {
			return errors.New("invalid credentials")
		}
		s.user = username
		return nil
	}), nil
}

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	s.f.mu.Lock()
	s.f.mails++
	s.f.mu.Unlock()
	if s.f.User != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	if s.f.MailReply != nil {
		return s.f.MailReply
	}
	s.from = from
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.f.RcptReply != nil {
		if err := s.f.RcptReply(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.f.DataBlock != nil {
		<-s.f.DataBlock
	}
	if s.f.DataReply != nil {
		return s.f.DataReply
	}
	_, isTLS := s.c.TLSConnectionState()
	s.f.mu.Lock()
	s.f.got = append(s.f.got, received{From: s.from, Rcpts: s.rcpts, Data: string(b), TLS: isTLS, User: s.user})
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *fakeSession) Logout() error { return nil }

// serverTLS returns a server TLS config with a certificate for names and
// a client config trusting its CA.
func serverTLS(t *testing.T, names ...string) (*tls.Config, *tls.Config) {
	t.Helper()
	c := testcert.New(testcert.Options{Names: names})
	pair, err := tls.X509KeyPair([]byte(c.Chain), []byte(c.Key))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.CA))
	return &tls.Config{Certificates: []tls.Certificate{pair}}, &tls.Config{RootCAs: pool}
}

// freePort returns a port that nothing listens on at 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

const body = "From: a@sender.test\r\nTo: b@dest.test\r\nSubject: hi\r\n\r\nHello.\r\n"

// message returns a message from a@sender.test to rcpts.
func message(rcpts ...string) outbound.Message {
	return outbound.Message{
		From:   "a@sender.test",
		Rcpts:  rcpts,
		Prefix: []byte("X-Prefix: yes\r\n"),
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
		Size:   int64(len(body) + 15),
	}
}

// client returns a client asking dns and sending to MX port port.
func client(dns *dnstest.Server, port int, mod func(*outbound.Config)) *outbound.Client {
	cfg := outbound.Config{HeloName: "client.test", DNSServer: dns.Addr, Port: port,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	return outbound.New(cfg)
}

// one checks that results hold one result and returns it.
func one(t *testing.T, rs []outbound.Result) outbound.Result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("results %+v, want one", rs)
	}
	return rs[0]
}
