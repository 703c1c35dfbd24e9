package imapsvc_test

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

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/imapsvc"
	"mailcluster/kvstore"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// env is a standalone primary with domain example.com, a few accounts,
// and a node's mail service: the mailbox store with its Hub, the IMAP
// listeners (STARTTLS and implicit TLS) and the inbound SMTP listener.
type env struct {
	t        *testing.T
	svc      *service.Service
	local    *service.Local
	outbox   *cluster.Outbox
	failures *failureLog
	data     string
	log      *slog.Logger
	cert     tls.Certificate
	client   *tls.Config // trusts cert
	certFile string      // cert in PEM, for other clients

	node *node // the first node
	smtp string
}

// node is one node's mail service over the env's shared path.
type node struct {
	store *mailstore.Store
	hub   *mailstore.LocalHub
	srv   *imapsvc.Server
	imap  string
	imaps string
}

// failureLog records the login failures the service reports.
type failureLog struct {
	mu sync.Mutex
	fs []mailcluster.LoginFailure
}

func (l *failureLog) Report(f mailcluster.LoginFailure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fs = append(l.fs, f)
}

func (l *failureLog) all() []mailcluster.LoginFailure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mailcluster.LoginFailure(nil), l.fs...)
}

var sysCtx = service.SystemContext(context.Background(), "test")

// Passwords of the accounts of every env.
const (
	alicePass = "alice-pass-1"
	bobPass   = "bob-pass-123"
)

func mustOpenEnv(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	data := t.TempDir()
	st, err := kvstore.OpenBoltStore(filepath.Join(data, "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	fl := &failureLog{}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost, Failures: fl})
	ctx, cancel := context.WithCancel(sysCtx)
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: data}); err != nil {
		t.Fatal(err)
	}
	local, err := svc.Local(sysCtx)
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
	cert, err := mailsvc.LoadOrCreateSelfSigned(filepath.Join(data, "tls"), "imap.test")
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
	e := &env{t: t, svc: svc, local: local, outbox: ob, failures: fl, data: data, log: log, cert: cert,
		client: &tls.Config{RootCAs: pool, ServerName: "localhost"}, certFile: certFile}
	t.Cleanup(func() {
		cancel()
		<-done
		ob.Close()
		st.Close()
	})
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []mailcluster.AccountCreate{
		{Domain: "example.com", Mailbox: "alice", Password: alicePass},
		{Domain: "example.com", Mailbox: "bob", Password: bobPass},
		{Domain: "example.com", Mailbox: "off", Password: "off-pass-123", Disabled: true},
		{Domain: "example.com", Mailbox: "ice", Password: "ice-pass-123", Frozen: true},
		{Domain: "example.com", Mailbox: "small", Password: "small-pass-1", QuotaBytes: 2000},
	} {
		if _, err := svc.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	e.node = e.startNode()
	smtpSrv := mailsvc.NewServer(e.node.store, local, mailsvc.ServerConfig{Hostname: "mx.test", Log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go smtpSrv.ServeInbound(ln)
	t.Cleanup(func() { smtpSrv.Close() })
	e.smtp = ln.Addr().String()
	return e
}

// startNode starts a node's mail service (its own Store, Hub and IMAP
// Server) over the env's shared path; it stops at the end of the test.
func (e *env) startNode() *node {
	t := e.t
	t.Helper()
	hub := mailstore.NewHub()
	store := mailstore.NewStore(e.local, e.outbox, e.log, mailstore.Options{Hub: hub})
	srv := imapsvc.NewServer(store, e.local, imapsvc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{e.cert}},
		Log: e.log, Hub: hub, Rescan: 200 * time.Millisecond})
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeIMAP(l1)
	go srv.ServeIMAPS(l2)
	t.Cleanup(func() { srv.Close() })
	return &node{store: store, hub: hub, srv: srv, imap: l1.Addr().String(), imaps: l2.Addr().String()}
}

// setSetting sets a main ini setting for the rest of the test.
func (e *env) setSetting(section, key, value string) {
	e.t.Helper()
	if err := e.svc.SetSetting(sysCtx, "mailcluster", section, key, value); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.svc.DeleteSetting(sysCtx, "mailcluster", section, key) })
}

// dial connects to addr with STARTTLS; h (may be nil) receives unilateral
// data. The client is closed at the end of the test.
func (e *env) dial(addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: e.client, UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// login dials the first node and logs in as alice.
func (e *env) login(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	return e.loginTo(e.node, "alice@example.com", alicePass, h)
}

func (e *env) loginTo(n *node, user, pass string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c := e.dial(n.imap, h)
	if err := c.Login(user, pass).Wait(); err != nil {
		e.t.Fatalf("login as %s: %v", user, err)
	}
	return c
}

// account returns an account as stored.
func (e *env) account(address string) *mailcluster.Account {
	e.t.Helper()
	a, err := e.local.LookupAccount(address)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// folderFiles lists the message files of one of alice's folders.
func (e *env) folderFiles(address, folder string) []string {
	e.t.Helper()
	dir := e.account(address).MailboxPath
	if folder != "INBOX" {
		dir = filepath.Join(dir, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		des, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, de := range des {
			out = append(out, sub+"/"+de.Name())
		}
	}
	return out
}

// waitUsage waits until an account's usage is published as bytes and
// messages with nothing pending (the outbox reports asynchronously).
func (e *env) waitUsage(mailbox string, bytes, messages int64) {
	e.t.Helper()
	var u mailcluster.Usage
	var pb, pm int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		u = e.local.Usage("example.com", mailbox)
		pb, pm = e.outbox.Pending("example.com", mailbox)
		if u.Bytes == bytes && u.Messages == messages && pb == 0 && pm == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("usage of %s: %d bytes %d messages published, %d bytes %d messages pending; want %d bytes %d messages",
				mailbox, u.Bytes, u.Messages, pb, pm, bytes, messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// appendMsg appends a message to a folder and returns its UID.
func appendMsg(t *testing.T, c *imapclient.Client, folder, msg string, opts *imap.AppendOptions) imap.UID {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), opts)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", folder, err)
	}
	return data.UID
}

func message(subject, body string) string {
	return "From: Carol <carol@remote.test>\r\nTo: alice@example.com\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2023 15:04:05 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@remote.test>\r\n\r\n" + body + "\r\n"
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testWriter sends a log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
