package imapsvc_test

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/imapsvc"
	"mailcluster/internal/mailtest"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// env is a standalone primary with domain example.com, a few accounts,
// and a node's mail service: the mailbox store with its Hub, the IMAP
// listeners (STARTTLS and implicit TLS) and the inbound SMTP listener.
type env struct {
	t        *testing.T
	p        *mailtest.Primary
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
type failureLog struct{ *mailtest.FailureLog }

func (l failureLog) all() []mailcluster.LoginFailure { return l.All() }

var sysCtx = mailtest.SysCtx

// Passwords of the accounts of every env.
const (
	alicePass = "alice-pass-1"
	bobPass   = "bob-pass-123"
)

func mustOpenEnv(t *testing.T) *env {
	t.Helper()
	p := mailtest.OpenPrimary(t, "imap.test",
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: alicePass},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob", Password: bobPass},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "off", Password: "off-pass-123", Disabled: true},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "ice", Password: "ice-pass-123", Frozen: true},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "small", Password: "small-pass-1", QuotaBytes: 2000})
	e := &env{t: t, p: p, svc: p.Svc, local: p.Local, outbox: p.Outbox, failures: &failureLog{p.Failures}, data: p.Data, log: p.Log,
		cert: p.Cert, client: p.Client, certFile: p.CertFile}
	e.node = e.startNode()
	smtpSrv := mailsvc.NewServer(e.node.store, p.Local, mailsvc.ServerConfig{Hostname: "mx.test", Log: p.Log})
	t.Cleanup(func() { smtpSrv.Close() })
	e.smtp = mailtest.Serve(t, smtpSrv.ServeInbound)
	return e
}

// startNode starts a node's mail service (its own Store, Hub and IMAP
// Server) over the env's shared path; it stops at the end of the test.
func (e *env) startNode() *node {
	t := e.t
	t.Helper()
	hub := mailstore.NewHub()
	store := mailstore.NewStore(e.local, e.outbox, e.log, mailstore.Options{Hub: hub})
	srv := imapsvc.NewServer(store, e.local, imapsvc.Config{TLS: e.p.ServerTLS(),
		Log: e.log, Hub: hub, Rescan: 200 * time.Millisecond})
	t.Cleanup(func() { srv.Close() })
	return &node{store: store, hub: hub, srv: srv, imap: mailtest.Serve(t, srv.ServeIMAP), imaps: mailtest.Serve(t, srv.ServeIMAPS)}
}

// setSetting sets a main ini setting for the rest of the test.
func (e *env) setSetting(section, key, value string) {
	e.t.Helper()
	e.p.SetSetting(section, key, value)
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
	mailtest.WaitFor(t, what, cond)
}
