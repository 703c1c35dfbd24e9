package mailsvc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/kvstore"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// env is a node's mail service over a real bbolt store, a real outbox
// applying usage through the service, and real SMTP listeners.
type env struct {
	svc        *service.Service
	store      *mailstore.Store
	fs         *faultFS // the store's file system: faults on demand
	outbox     *cluster.Outbox
	inbound    string
	submission string
	data       string
}

// MustOpenEnv starts the mail service of a standalone primary with
// domain example.com and a few accounts; its log goes to t.Log.
func MustOpenEnv(t *testing.T) *env {
	t.Helper()
	return mustOpenEnvLog(t, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
}

// mustOpenEnvLog is MustOpenEnv with the service's logger (fuzz targets
// must not log through testing.F once fuzzing).
func mustOpenEnvLog(t testing.TB, log *slog.Logger) *env {
	t.Helper()
	return mustOpenEnvDir(t, log, nil)
}

// mustOpenEnvDir is mustOpenEnvLog with the mail service reading the
// service through wrap(svc) when wrap is not nil.
func mustOpenEnvDir(t testing.TB, log *slog.Logger, wrap func(*service.Service) mailsvc.Directory) *env {
	t.Helper()
	ffs := newFaultFS(mailstore.OSFS)
	ffs.set()
	e := mustOpenEnvFS(t, log, wrap, ffs)
	e.fs = ffs
	return e
}

// mustOpenEnvFS is mustOpenEnvDir with the store writing through fsys.
func mustOpenEnvFS(t testing.TB, log *slog.Logger, wrap func(*service.Service) mailsvc.Directory, fsys mailstore.FS) *env {
	t.Helper()
	data := t.TempDir()
	st, err := kvstore.OpenBoltStore(filepath.Join(data, "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost})
	ctx, cancel := context.WithCancel(service.SystemContext(context.Background(), "test"))
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: data}); err != nil {
		t.Fatal(err)
	}
	ob, err := cluster.OpenOutbox(filepath.Join(data, "outbox.db"), "node1", outboxSender(svc), log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	var dir mailsvc.Directory = mustLocal(svc)
	if wrap != nil {
		dir = wrap(svc)
	}
	store := mailstore.NewStore(dir, ob, log, mailstore.Options{FS: fsys})
	cert, err := mailsvc.LoadOrCreateSelfSigned(filepath.Join(data, "tls"), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := mailsvc.NewServer(store, dir, mailsvc.ServerConfig{Hostname: "mx.test",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Log: log})
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.ServeInbound(l1)
	go srv.ServeSubmission(l2)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		ob.Close()
		st.Close()
	})
	e := &env{svc: svc, store: store, outbox: ob, inbound: l1.Addr().String(), submission: l2.Addr().String(), data: data}
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []mailcluster.AccountCreate{
		{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"},
		{Domain: "example.com", Mailbox: "bob", Password: "bob-pass-123"},
		{Domain: "example.com", Mailbox: "off", Password: "off-pass-123", Disabled: true},
		{Domain: "example.com", Mailbox: "ice", Password: "ice-pass-123", Frozen: true},
		{Domain: "example.com", Mailbox: "small", Password: "small-pass-1", QuotaBytes: 2000},
	} {
		if _, err := svc.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// testWriter sends the service's log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func dial(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func dialTLS(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantReply asserts an *smtp.SMTPError with the code and enhanced code.
func wantReply(t *testing.T, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("reply = %v, want %d %v", err, code, enh)
	}
}

func send(c *smtp.Client, from string, to []string, body string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	return w.Close()
}

func messages(t *testing.T, e *env, addr string) []string {
	t.Helper()
	a, err := mustLocal(e.svc).LookupAccount(addr)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(a.MailboxPath, "new"))
	var out []string
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join(a.MailboxPath, "new", d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func waitUsage(t *testing.T, e *env, mailbox string, msgs int64) mailcluster.Usage {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		u := mustLocal(e.svc).Usage("example.com", mailbox)
		if u.Messages == msgs {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of %s = %+v, want %d messages", mailbox, u, msgs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const msg = "From: sender@remote.test\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nHi there.\r\n"

// aliceMsg is a message alice may submit.
const aliceMsg = "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: hello\r\n\r\nHi Bob.\r\n"

// lines returns about n bytes of 76-character lines.
func lines(n int) string {
	return strings.Repeat(strings.Repeat("x", 76)+"\r\n", n/78+1)
}

func TestExtensions(t *testing.T) {
	e := MustOpenEnv(t)
	c := dial(t, e.inbound)
	for _, ext := range []string{"SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("inbound EHLO lacks %s", ext)
		}
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("inbound offers AUTH")
	}
	s := dial(t, e.submission)
	if ok, _ := s.Extension("AUTH"); ok {
		t.Error("submission offers AUTH before STARTTLS")
	}
	ok, mechs := dialTLS(t, e.submission).Extension("AUTH")
	if !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH after STARTTLS = %v %q", ok, mechs)
	}
}

func TestDelivery(t *testing.T) {
	e := MustOpenEnv(t)
	t.Run("OK", func(t *testing.T) {
		c := dial(t, e.inbound)
		if err := send(c, "sender@remote.test", []string{"alice@example.com", "ALICE@example.com", "ice@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		got := messages(t, e, "alice@example.com")
		if len(got) != 1 {
			t.Fatalf("alice has %d messages, want 1 (duplicate recipient gets one copy)", len(got))
		}
		if !strings.HasPrefix(got[0], "Return-Path: <sender@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test (mailcluster) with ESMTP;") ||
			!strings.HasSuffix(got[0], msg) {
			t.Fatalf("stored message:\n%s", got[0])
		}
		if len(messages(t, e, "ice@example.com")) != 1 {
			t.Fatal("a frozen account must still receive mail")
		}
		u := waitUsage(t, e, "alice", 1)
		if u.Bytes != int64(len(got[0])) {
			t.Fatalf("usage bytes %d, want %d", u.Bytes, len(got[0]))
		}
	})
	t.Run("ErrUnknownUser", func(t *testing.T) {
		c := dial(t, e.inbound)
		wantReply(t, send(c, "s@remote.test", []string{"nobody@example.com"}, msg), 550, smtp.EnhancedCode{5, 1, 1})
	})
	t.Run("ErrDisabled", func(t *testing.T) {
		c := dial(t, e.inbound)
		err := send(c, "s@remote.test", []string{"off@example.com"}, msg)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 {
			t.Fatalf("disabled: %v", err)
		}
	})
	t.Run("ErrRelay", func(t *testing.T) {
		c := dial(t, e.inbound)
		wantReply(t, send(c, "s@remote.test", []string{"someone@elsewhere.test"}, msg), 554, smtp.EnhancedCode{5, 7, 1})
	})
	t.Run("ErrTooLargeDeclared", func(t *testing.T) {
		if err := e.svc.SetSetting(service.SystemContext(context.Background(), "test"), "mailcluster", "SMTP", "MaxMessageSize", "1000"); err != nil {
			t.Fatal(err)
		}
		defer e.svc.DeleteSetting(service.SystemContext(context.Background(), "test"), "mailcluster", "SMTP", "MaxMessageSize")
		c := dial(t, e.inbound)
		wantReply(t, c.Mail("s@remote.test", &smtp.MailOptions{Size: 5000}), 552, smtp.EnhancedCode{5, 3, 4})
		// The limit itself is allowed; one byte more is not.
		edge := dial(t, e.inbound)
		if err := edge.Mail("s@remote.test", &smtp.MailOptions{Size: 1000}); err != nil {
			t.Fatalf("SIZE=1000 at a limit of 1000: %v", err)
		}
		wantReply(t, dial(t, e.inbound).Mail("s@remote.test", &smtp.MailOptions{Size: 1001}), 552, smtp.EnhancedCode{5, 3, 4})
		c2 := dial(t, e.inbound)
		before := len(messages(t, e, "bob@example.com"))
		wantReply(t, send(c2, "s@remote.test", []string{"bob@example.com"}, msg+lines(2000)), 552, smtp.EnhancedCode{5, 3, 4})
		if len(messages(t, e, "bob@example.com")) != before {
			t.Fatal("a too large message was stored")
		}
	})
	t.Run("ErrOverQuota", func(t *testing.T) {
		c := dial(t, e.inbound)
		// small has a 2000-byte quota; alice has none. The message is larger
		// than the quota: refused at DATA, and alice gets nothing either.
		before := len(messages(t, e, "alice@example.com"))
		big := msg + lines(2500)
		wantReply(t, send(c, "s@remote.test", []string{"alice@example.com", "small@example.com"}, big), 552, smtp.EnhancedCode{5, 2, 2})
		if len(messages(t, e, "alice@example.com")) != before || len(messages(t, e, "small@example.com")) != 0 {
			t.Fatal("a refused message was delivered to some recipients")
		}
		// Fill small, then the next RCPT is refused at once.
		c2 := dial(t, e.inbound)
		if err := send(c2, "s@remote.test", []string{"small@example.com"}, msg+lines(1600)); err != nil {
			t.Fatal(err)
		}
		waitUsage(t, e, "small", 1)
		c3 := dial(t, e.inbound)
		wantReply(t, send(c3, "s@remote.test", []string{"small@example.com"}, msg), 552, smtp.EnhancedCode{5, 2, 2})
	})
	t.Run("ErrLineTooLong", func(t *testing.T) {
		c := dial(t, e.inbound)
		wantReply(t, send(c, "s@remote.test", []string{"bob@example.com"}, msg+strings.Repeat("x", 3000)+"\r\n"), 500, smtp.EnhancedCode{5, 5, 2})
	})
	t.Run("ErrTooManyRecipients", func(t *testing.T) {
		if err := e.svc.SetSetting(service.SystemContext(context.Background(), "test"), "mailcluster", "SMTP", "MaxRecipients", "1"); err != nil {
			t.Fatal(err)
		}
		defer e.svc.DeleteSetting(service.SystemContext(context.Background(), "test"), "mailcluster", "SMTP", "MaxRecipients")
		c := dial(t, e.inbound)
		wantReply(t, send(c, "s@remote.test", []string{"alice@example.com", "bob@example.com"}, msg), 452, smtp.EnhancedCode{4, 5, 3})
	})
}

func TestSubmission(t *testing.T) {
	e := MustOpenEnv(t)
	t.Run("ErrAuthRequired", func(t *testing.T) {
		c := dial(t, e.submission)
		wantReply(t, c.Mail("alice@example.com", nil), 530, smtp.EnhancedCode{5, 7, 0})
	})
	t.Run("ErrAuthFailed", func(t *testing.T) {
		c := dialTLS(t, e.submission)
		wantReply(t, c.Auth(sasl.NewPlainClient("", "alice@example.com", "wrong-pass")), 535, smtp.EnhancedCode{5, 7, 8})
	})
	t.Run("FrozenCannotLogIn", func(t *testing.T) {
		c := dialTLS(t, e.submission)
		wantReply(t, c.Auth(sasl.NewPlainClient("", "ice@example.com", "ice-pass-123")), 535, smtp.EnhancedCode{5, 7, 8})
	})
	for name, client := range map[string]sasl.Client{
		"PLAIN": sasl.NewPlainClient("", "alice@example.com", "alice-pass-1"),
		"LOGIN": sasl.NewLoginClient("alice@example.com", "alice-pass-1"),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialTLS(t, e.submission)
			if err := c.Auth(client); err != nil {
				t.Fatal(err)
			}
			before := len(messages(t, e, "bob@example.com"))
			if err := send(c, "alice@example.com", []string{"bob@example.com"}, aliceMsg); err != nil {
				t.Fatal(err)
			}
			got := messages(t, e, "bob@example.com")
			if len(got) != before+1 {
				t.Fatalf("bob has %d messages, want %d", len(got), before+1)
			}
			// Without an outbound queue, mail for other domains is refused even when authenticated.
			wantReply(t, send(c, "alice@example.com", []string{"x@elsewhere.test"}, aliceMsg), 554, smtp.EnhancedCode{5, 7, 1})
		})
	}
}

// outboxSender sends usage reports straight to svc, as the primary's own
// outbox does.
func outboxSender(svc *service.Service) cluster.SendFunc {
	return func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
	}
}
