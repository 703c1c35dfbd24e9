package mailsvc_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/mailqueue"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// relayEnv is the mail service of MustOpenEnv with an outbound queue (no
// runner: the tests read what was queued).
type relayEnv struct {
	*env
	spool      mailqueue.Spool
	inbound    string
	submission string
}

func openRelayEnv(t *testing.T) *relayEnv {
	t.Helper()
	e := MustOpenEnv(t)
	spool := mailqueue.Spool{Dir: t.TempDir()}
	if err := spool.Init("node1"); err != nil {
		t.Fatal(err)
	}
	q := &mailqueue.Queue{Spool: spool, Node: "node1"}
	cert, err := mailsvc.LoadOrCreateSelfSigned(t.TempDir(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := mailsvc.NewServer(e.store, mustLocal(e.svc), mailsvc.ServerConfig{Hostname: "mx.test",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Queue: q})
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.ServeInbound(l1)
	go srv.ServeSubmission(l2)
	t.Cleanup(func() { srv.Close() })
	return &relayEnv{env: e, spool: spool, inbound: l1.Addr().String(), submission: l2.Addr().String()}
}

func (r *relayEnv) queued(t *testing.T) []*mailqueue.Envelope {
	t.Helper()
	ids, err := r.spool.IDs("node1")
	if err != nil {
		t.Fatal(err)
	}
	var out []*mailqueue.Envelope
	for _, id := range ids {
		env, err := r.spool.Envelope("node1", id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

func (r *relayEnv) setSetting(t *testing.T, section, key, value string) {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	if err := r.svc.SetSetting(ctx, mailcluster.MainSettingsFile, section, key, value); err != nil {
		t.Fatal(err)
	}
}

func authed(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c := dialTLS(t, addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.com", "alice-pass-1")); err != nil {
		t.Fatal(err)
	}
	return c
}

// rawRcpt speaks SMTP by hand (so that addresses go out exactly as
// written, source routes included) and returns the reply to RCPT.
func rawRcpt(t *testing.T, addr, rcpt string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	readReply := func() string {
		var last string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			last = line
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimSpace(last)
			}
		}
	}
	readReply()
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<someone@remote.test>", "RCPT TO:" + rcpt} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if r := readReply(); !strings.HasPrefix(cmd, "RCPT") && !strings.HasPrefix(r, "250") {
			t.Fatalf("%s: %s", cmd, r)
		} else if strings.HasPrefix(cmd, "RCPT") {
			return r
		}
	}
	return ""
}

// The classic open-relay probes, unauthenticated on the inbound port:
// none may be accepted, and nothing may reach the queue.
func TestNoOpenRelay(t *testing.T) {
	r := openRelayEnv(t)
	for _, rcpt := range []string{
		"<victim@elsewhere.test>",
		"<victim%elsewhere.test@example.com>",
		"<victim!elsewhere.test@example.com>",
		"<elsewhere.test!victim@example.com>",
		`<"victim@elsewhere.test">`,
		`<"victim@elsewhere.test"@example.com>`,
		"<@example.com:victim@elsewhere.test>",
		"<@example.com,@mx.test:victim@elsewhere.test>",
		"<victim@elsewhere.test@example.com>",
		"<victim@[127.0.0.1]>",
		"<victim@example.com.>",
		"<victim@EXAMPLE.COM:25>",
		"victim@elsewhere.test",
		"<victim@elsewhere.test> NOTIFY=NEVER",
	} {
		reply := rawRcpt(t, r.inbound, rcpt)
		if strings.HasPrefix(reply, "2") {
			t.Errorf("RCPT TO:%s accepted: %s", rcpt, reply)
		}
	}
	if q := r.queued(t); len(q) != 0 {
		t.Fatalf("open relay: %d messages queued", len(q))
	}
	// The authenticated user still may not route through tricks.
	c := authed(t, r.submission)
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"victim%other.test@elsewhere.test", "victim!other.test@elsewhere.test", `"victim@other.test"@elsewhere.test`, "victim@[127.0.0.1]", "victim@localhost"} {
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		if err == nil || !(errors.As(err, &se) && se.Code >= 500) {
			t.Errorf("authenticated RCPT %q: %v, want a 5xx refusal", rcpt, err)
		}
	}
}

func TestSubmissionRelaysThroughTheQueue(t *testing.T) {
	r := openRelayEnv(t)
	c := authed(t, r.submission)
	if err := send(c, "alice@example.com", []string{"Friend@Elsewhere.Test", "other@far.example"}, aliceMsg); err != nil {
		t.Fatal(err)
	}
	q := r.queued(t)
	if len(q) != 1 {
		t.Fatalf("queued %d messages, want 1", len(q))
	}
	env := q[0]
	if env.From != "alice@example.com" || len(env.Rcpts) != 2 || env.Rcpts[0].Address != "Friend@elsewhere.test" ||
		env.Rcpts[1].Address != "other@far.example" || env.Rcpts[0].State != mailcluster.RcptPending {
		t.Fatalf("envelope %+v", env)
	}
	f, err := r.spool.Open("node1", env.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	msg := string(b)
	for _, want := range []string{"Received: from ", "with ESMTPSA", "Date: ", "Message-ID: <", "Subject: hello", "Hi Bob."} {
		if !strings.Contains(msg, want) {
			t.Errorf("queued message lacks %q:\n%s", want, msg)
		}
	}
	if env.Size != int64(len(b)) {
		t.Errorf("envelope size %d, file %d", env.Size, len(b))
	}
	// The submitted From must still be the user's own.
	err = send(c, "alice@example.com", []string{"friend@elsewhere.test"}, "From: <bob@example.com>\r\nSubject: x\r\n\r\nx\r\n")
	wantReply(t, err, 550, smtp.EnhancedCode{5, 7, 1})
	if n := len(r.queued(t)); n != 1 {
		t.Fatalf("a refused message was queued (%d)", n)
	}
}

func TestRelayNetworks(t *testing.T) {
	r := openRelayEnv(t)
	c := dial(t, r.inbound)
	wantReply(t, send(c, "app@example.com", []string{"x@elsewhere.test"}, "Subject: a\r\n\r\na\r\n"), 554, smtp.EnhancedCode{5, 7, 1})
	r.setSetting(t, "SMTP", mailcluster.KeyRelayNetworks, "10.0.0.0/8, 192.0.2.1")
	c = dial(t, r.inbound)
	wantReply(t, send(c, "app@example.com", []string{"x@elsewhere.test"}, "Subject: a\r\n\r\na\r\n"), 554, smtp.EnhancedCode{5, 7, 1})
	r.setSetting(t, "SMTP", mailcluster.KeyRelayNetworks, "10.0.0.0/8 127.0.0.0/8")
	c = dial(t, r.inbound)
	if err := send(c, "app@example.com", []string{"x@elsewhere.test"}, "Subject: a\r\n\r\na\r\n"); err != nil {
		t.Fatalf("relay from a listed network: %v", err)
	}
	if q := r.queued(t); len(q) != 1 || q[0].Rcpts[0].Address != "x@elsewhere.test" {
		t.Fatalf("queued %+v", q)
	}
	if err := r.svc.SetSetting(service.SystemContext(context.Background(), "test"), mailcluster.MainSettingsFile, "SMTP", mailcluster.KeyRelayNetworks, "10.0.0.0/33"); err == nil {
		t.Fatal("a bad network was accepted as a setting")
	}
}

func TestLocalAndRemoteRecipientsAllOrNothing(t *testing.T) {
	r := openRelayEnv(t)
	c := authed(t, r.submission)
	before := len(messages(t, r.env, "bob@example.com"))
	if err := send(c, "alice@example.com", []string{"bob@example.com", "x@elsewhere.test"}, aliceMsg); err != nil {
		t.Fatal(err)
	}
	if got := len(messages(t, r.env, "bob@example.com")); got != before+1 {
		t.Fatalf("bob has %d messages, want %d", got, before+1)
	}
	q := r.queued(t)
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	// The local copy was made from the queued file: its body is intact.
	got := messages(t, r.env, "bob@example.com")
	if !strings.Contains(got[len(got)-1], "Hi Bob.") {
		t.Fatalf("local copy: %q", got[len(got)-1])
	}
	// A local copy that cannot be delivered (the mailbox "small" holds 2000
	// bytes) takes the queued message back: nothing is half sent.
	big := "From: <alice@example.com>\r\nSubject: big\r\n\r\n" + lines(5000)
	err := send(c, "alice@example.com", []string{"small@example.com", "y@elsewhere.test"}, big)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("reply %v, want 552", err)
	}
	if q := r.queued(t); len(q) != 1 {
		t.Fatalf("after a failed local copy, %d messages queued, want the first only", len(q))
	}
}
