package pop3svc_test

import (
	"bufio"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/imapsvc"
	"mailcluster/internal/mailtest"
	"mailcluster/mailstore"
	"mailcluster/pop3svc"
	"mailcluster/service"
)

// env is a standalone primary with domain example.com and a few accounts,
// and one node's mail service over it: the mailbox store with its Hub,
// the POP3 listeners (STLS and implicit TLS) and an IMAP listener on the
// same store.
type env struct {
	t        *testing.T
	p        *mailtest.Primary
	svc      *service.Service
	local    *service.Local
	outbox   *cluster.Outbox
	failures *failureLog
	data     string
	log      *slog.Logger
	client   *tls.Config // trusts the node's certificate
	certFile string      // that certificate in PEM, for other clients

	store *mailstore.Store
	pop   *pop3svc.Server
	pop3  string // STLS listener
	pop3s string // implicit-TLS listener
	imap  string // IMAP STARTTLS listener
}

// failureLog records the login failures the service reports.
type failureLog struct{ *mailtest.FailureLog }

func (l failureLog) all() []mailcluster.LoginFailure { return l.All() }

var sysCtx = mailtest.SysCtx

const alicePass = "alice-pass-1"

func mustOpenEnv(t *testing.T) *env {
	t.Helper()
	p := mailtest.OpenPrimary(t, "pop3.test",
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: alicePass},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "off", Password: "off-pass-123", Disabled: true},
		mailcluster.AccountCreate{Domain: "example.com", Mailbox: "ice", Password: "ice-pass-123", Frozen: true})
	hub := mailstore.NewHub()
	store := mailstore.NewStore(p.Local, p.Outbox, p.Log, mailstore.Options{Hub: hub})
	e := &env{t: t, p: p, svc: p.Svc, local: p.Local, outbox: p.Outbox, failures: &failureLog{p.Failures}, data: p.Data, log: p.Log,
		client: p.Client, certFile: p.CertFile, store: store}
	e.pop = pop3svc.NewServer(store, p.Local, pop3svc.Config{TLS: p.ServerTLS(), Log: p.Log})
	t.Cleanup(func() { e.pop.Close() })
	e.pop3 = mailtest.Serve(t, e.pop.ServePOP3)
	e.pop3s = mailtest.Serve(t, e.pop.ServePOP3S)
	imapSrv := imapsvc.NewServer(store, p.Local, imapsvc.Config{TLS: p.ServerTLS(), Log: p.Log, Hub: hub, Rescan: 200 * time.Millisecond})
	t.Cleanup(func() { imapSrv.Close() })
	e.imap = mailtest.Serve(t, imapSrv.ServeIMAP)
	return e
}

// setSetting sets a main ini setting for the rest of the test.
func (e *env) setSetting(section, key, value string) {
	e.t.Helper()
	e.p.SetSetting(section, key, value)
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

// deliver stores a message in alice's INBOX as SMTP delivery does.
func (e *env) deliver(msg string) {
	e.t.Helper()
	if err := e.store.Deliver(sysCtx, []*mailcluster.Account{e.account("alice@example.com")}, nil, strings.NewReader(msg), 1<<20); err != nil {
		e.t.Fatal(err)
	}
}

// inboxFiles counts the message files of alice's INBOX.
func (e *env) inboxFiles() int {
	e.t.Helper()
	dir := e.account("alice@example.com").MailboxPath
	n := 0
	for _, sub := range []string{"new", "cur"} {
		des, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(des)
	}
	return n
}

// waitUsage waits until alice's usage is published as bytes and messages
// with nothing pending (the outbox reports asynchronously).
func (e *env) waitUsage(bytes, messages int64) {
	e.t.Helper()
	waitFor(e.t, "alice's usage", func() bool {
		u := e.local.Usage("example.com", "alice")
		pb, pm := e.outbox.Pending("example.com", "alice")
		return u.Bytes == bytes && u.Messages == messages && pb == 0 && pm == 0
	})
}

// imapLogin logs in to the IMAP listener as alice; h (may be nil) gets
// unilateral data.
func (e *env) imapLogin(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialStartTLS(e.imap, &imapclient.Options{TLSConfig: e.client, UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login("alice@example.com", alicePass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// client is a POP3 client that shows the wire: status lines and the
// lines of multi-line answers as sent (dot-stuffing included).
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects to addr (with TLS when tc is not nil) and reads the
// greeting, which must be positive. The connection is closed at the end
// of the test.
func (e *env) dial(addr string, tc *tls.Config) *client {
	e.t.Helper()
	c, g := e.dialRaw(addr, tc)
	if !strings.HasPrefix(g, "+OK") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

// dialRaw connects and returns the greeting whatever it is.
func (e *env) dialRaw(addr string, tc *tls.Config) (*client, string) {
	e.t.Helper()
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.Dial("tcp", addr, tc)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: e.t, conn: conn, r: bufio.NewReader(conn)}
	return c, c.line()
}

// line reads one line without CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a line: %v (after %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// send writes a command line.
func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command and returns its status line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// ok sends a command that must succeed and returns its status line.
func (c *client) ok(line string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("%s: %q", line, got)
	}
	return got
}

// multi sends a command that must succeed with a multi-line answer and
// returns its lines as sent, without the final ".".
func (c *client) multi(line string) []string {
	c.t.Helper()
	c.ok(line)
	return c.rest()
}

// rest reads the lines of a multi-line answer up to the final ".".
func (c *client) rest() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, l)
	}
}

// startTLS runs STLS and continues over TLS.
func (c *client) startTLS(tc *tls.Config) {
	c.t.Helper()
	c.ok("STLS")
	conn := tls.Client(c.conn, tc)
	if err := conn.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = conn, bufio.NewReader(conn)
}

// closed reports whether the server closed the connection (reading what
// is left first).
func (c *client) closed() bool {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.r.ReadString('\n'); err != nil {
			return !isTimeout(err)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	mailtest.WaitFor(t, what, cond)
}
