// Package mailtest holds the fixture the tests of the mail edges share: a
// standalone primary with domain example.com and some accounts, its
// node's outbox, and a self-signed certificate the test clients trust.
package mailtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/kvstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// SysCtx is a system context for the service calls of tests.
var SysCtx = service.SystemContext(context.Background(), "test")

// Primary is a standalone primary ("node1") and its node's outbox,
// closed at the end of the test.
type Primary struct {
	T        *testing.T
	Svc      *service.Service
	Local    *service.Local
	Outbox   *cluster.Outbox
	Failures *FailureLog
	Data     string
	Log      *slog.Logger
	Cert     tls.Certificate // self-signed, for the servers
	Client   *tls.Config     // trusts Cert
	CertFile string          // Cert in PEM, for other clients
}

// OpenPrimary starts a Primary whose certificate is made for host, with
// domain example.com and accounts.
func OpenPrimary(t *testing.T, host string, accounts ...mailcluster.AccountCreate) *Primary {
	t.Helper()
	log := Logger(t)
	data := t.TempDir()
	st, err := kvstore.OpenBoltStore(filepath.Join(data, "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	fl := &FailureLog{}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost, Failures: fl})
	ctx, cancel := context.WithCancel(SysCtx)
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: data}); err != nil {
		t.Fatal(err)
	}
	local, err := svc.Local(SysCtx)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := cluster.OpenOutbox(filepath.Join(data, "outbox.db"), "node1", func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ob.Store = st // as on a node: a delta stops being pending once applied
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		ob.Close()
		st.Close()
	})
	cert, err := mailsvc.LoadOrCreateSelfSigned(filepath.Join(data, "tls"), host)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	certFile := filepath.Join(data, "ca.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range accounts {
		if _, err := svc.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	return &Primary{T: t, Svc: svc, Local: local, Outbox: ob, Failures: fl, Data: data, Log: log, Cert: cert,
		Client: &tls.Config{RootCAs: pool, ServerName: "localhost"}, CertFile: certFile}
}

// ServerTLS is the TLS configuration of servers presenting Cert.
func (p *Primary) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}}
}

// SetSetting sets a main ini setting for the rest of the test.
func (p *Primary) SetSetting(section, key, value string) {
	p.T.Helper()
	if err := p.Svc.SetSetting(SysCtx, "mailcluster", section, key, value); err != nil {
		p.T.Fatal(err)
	}
	p.T.Cleanup(func() { p.Svc.DeleteSetting(SysCtx, "mailcluster", section, key) })
}

// FailureLog records the login failures the service reports.
type FailureLog struct {
	mu sync.Mutex
	fs []mailcluster.LoginFailure
}

// Report records f.
func (l *FailureLog) Report(f mailcluster.LoginFailure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fs = append(l.fs, f)
}

// All returns the failures reported so far.
func (l *FailureLog) All() []mailcluster.LoginFailure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mailcluster.LoginFailure(nil), l.fs...)
}

// Serve runs f on a new listener on 127.0.0.1 with a free port and
// returns its address.
func Serve(t *testing.T, f func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f(ln)
	return ln.Addr().String()
}

// WaitFor polls cond until it holds, for at most 10 seconds.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logger logs at debug level to t.Log.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
