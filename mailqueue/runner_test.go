package mailqueue_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailcluster/internal/dkimsign"
	"mailcluster/mailqueue"

	"mailcluster"
)

func queueEmpty(f *fixture, node string) func() bool {
	return func() bool {
		ids, err := f.spool.IDs(node)
		return err == nil && len(ids) == 0
	}
}

func TestDeliveredOnceAndDequeued(t *testing.T) {
	f := newFixture(t, newSettings())
	f.enqueue("user@local.test", "a@dest.test", "B@Dest.Test")
	eventually(t, 5*time.Second, "message delivered", func() bool { return len(f.dest.messages()) == 1 })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	m := f.dest.messages()[0]
	if m.from != "user@local.test" || len(m.rcpts) != 2 {
		t.Fatalf("envelope at the destination: %q %q", m.from, m.rcpts)
	}
	if !contains(m.data, "hello") {
		t.Fatalf("body not delivered: %q", m.data)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(f.dest.messages()); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}

func TestDestinationDownThenUp(t *testing.T) {
	f := newFixture(t, newSettings("Queue/RetrySchedule", "100ms"))
	port := f.dest.Port
	f.dest.stop()
	id := f.enqueue("user@local.test", "a@dest.test")
	eventually(t, 5*time.Second, "two failed attempts", func() bool {
		env, err := f.spool.Envelope("n1", id)
		return err == nil && env.Attempts >= 2
	})
	env, _ := f.spool.Envelope("n1", id)
	if env.Rcpts[0].State != mailcluster.RcptPending || env.Rcpts[0].Reply == "" {
		t.Fatalf("recipient after connection failures: %+v", env.Rcpts[0])
	}
	if len(f.notice("user@local.test")) != 0 {
		t.Fatal("a notice was sent for a temporary failure")
	}
	up := startDest(t, port)
	eventually(t, 5*time.Second, "delivered once the destination is up", func() bool { return len(up.messages()) == 1 })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
}

func TestTemporaryThenAccepted(t *testing.T) {
	f := newFixture(t, newSettings("Queue/RetrySchedule", "100ms"))
	var calls atomic.Int32
	f.dest.rcptFn = func(string) error {
		if calls.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}
		return nil
	}
	id := f.enqueue("user@local.test", "a@dest.test")
	eventually(t, 5*time.Second, "delivered after two 451s", func() bool { return len(f.dest.messages()) == 1 })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	if _, err := f.spool.Envelope("n1", id); err == nil {
		t.Fatal("delivered message still queued")
	}
	if calls.Load() != 3 {
		t.Fatalf("RCPT calls = %d, want 3", calls.Load())
	}
}

// parseDSN checks a notice is a multipart/report with a delivery-status
// part and returns that part.
func parseDSN(t *testing.T, msg []byte) (status string, header mail.Header) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("notice type %q %v %v", mt, params, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(p)
		if p.Header.Get("Content-Type") == "message/delivery-status" {
			status = string(b)
		}
	}
	if len(types) != 3 || types[2] != "text/rfc822-headers" {
		t.Fatalf("notice parts: %q", types)
	}
	return status, m.Header
}

func TestPermanentFailureBouncesWithDSN(t *testing.T) {
	f := newFixture(t, newSettings())
	f.dest.rcptFn = func(to string) error {
		if strings.HasPrefix(to, "bad@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	f.enqueue("user@local.test", "good@dest.test", "bad@dest.test")
	eventually(t, 5*time.Second, "notice to the sender", func() bool { return len(f.notice("user@local.test")) == 1 })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	if msgs := f.dest.messages(); len(msgs) != 1 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != "good@dest.test" {
		t.Fatalf("destination got %+v", msgs)
	}
	status, h := parseDSN(t, f.notice("user@local.test")[0])
	for _, want := range []string{"Final-Recipient: rfc822; bad@dest.test", "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1", "Remote-MTA: dns; mx.dest.test"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "good@dest.test") {
		t.Errorf("delivered recipient reported as failed:\n%s", status)
	}
	if h.Get("Auto-Submitted") != "auto-replied" || !strings.Contains(h.Get("To"), "user@local.test") {
		t.Errorf("notice header: %v", h)
	}
}

func TestRemoteSenderGetsNullSenderDSN(t *testing.T) {
	f := newFixture(t, newSettings())
	f.dns.SetMX("remote.test", dnstestMX("mx.dest.test"))
	f.dest.rcptFn = func(to string) error {
		if strings.HasPrefix(to, "bad@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	f.enqueue("someone@remote.test", "bad@dest.test")
	eventually(t, 5*time.Second, "notice delivered to the remote sender", func() bool { return len(f.dest.messages()) == 1 })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	m := f.dest.messages()[0]
	if m.from != "" || len(m.rcpts) != 1 || m.rcpts[0] != "someone@remote.test" {
		t.Fatalf("notice envelope %q -> %q, want the null sender", m.from, m.rcpts)
	}
	parseDSN(t, m.data)
}

func TestNoticeOfANoticeIsNeverSent(t *testing.T) {
	f := newFixture(t, newSettings())
	f.dest.rcptFn = func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	if _, err := f.q.Enqueue("", []string{"bad@dest.test"}, nil, strings.NewReader("Subject: x\r\n\r\nx\r\n"), 1<<20, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	time.Sleep(300 * time.Millisecond)
	if ids, _ := f.spool.IDs("n1"); len(ids) != 0 || len(f.dest.messages()) != 0 {
		t.Fatalf("a notice about a null-sender message was made: %v", ids)
	}
}

func TestDelayWarningThenExpiry(t *testing.T) {
	f := newFixture(t, newSettings("Queue/RetrySchedule", "100ms", "Queue/DelayWarning", "300ms", "Queue/MaxAge", "1500ms"))
	f.dest.rcptFn = func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	f.enqueue("user@local.test", "a@dest.test")
	eventually(t, 5*time.Second, "delay warning", func() bool { return len(f.notice("user@local.test")) >= 1 })
	status, _ := parseDSN(t, f.notice("user@local.test")[0])
	if !strings.Contains(status, "Action: delayed") {
		t.Fatalf("first notice is not a delay warning:\n%s", status)
	}
	eventually(t, 5*time.Second, "bounce after the maximum age", func() bool { return len(f.notice("user@local.test")) == 2 })
	status, _ = parseDSN(t, f.notice("user@local.test")[1])
	if !strings.Contains(status, "Action: failed") || !strings.Contains(status, "expired") {
		t.Fatalf("second notice:\n%s", status)
	}
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	if len(f.notice("user@local.test")) != 2 {
		t.Fatalf("notices: %d, want one warning and one bounce", len(f.notice("user@local.test")))
	}
}

func TestConcurrencyPerDestinationBounded(t *testing.T) {
	f := newFixture(t, newSettings("Queue/MaxPerDestination", "2"))
	f.dest.hold = 200 * time.Millisecond
	for i := 0; i < 8; i++ {
		f.enqueue("user@local.test", "a@dest.test")
	}
	eventually(t, 10*time.Second, "all delivered", func() bool { return len(f.dest.messages()) == 8 })
	if p := f.dest.peak.Load(); p != 2 {
		t.Fatalf("peak concurrent sessions at the destination = %d, want 2", p)
	}
}

func TestRetryNowAndDelete(t *testing.T) {
	f := newFixture(t, newSettings("Queue/RetrySchedule", "1h"))
	var refuse atomic.Bool
	refuse.Store(true)
	f.dest.rcptFn = func(string) error {
		if refuse.Load() {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}
	keep := f.enqueue("user@local.test", "a@dest.test")
	drop := f.enqueue("user@local.test", "b@dest.test")
	eventually(t, 5*time.Second, "first attempts", func() bool {
		a, err1 := f.spool.Envelope("n1", keep)
		b, err2 := f.spool.Envelope("n1", drop)
		return err1 == nil && err2 == nil && a.Attempts == 1 && b.Attempts == 1
	})
	msgs, next, err := f.q.List("", 10, "")
	if err != nil || len(msgs) != 2 || next != "" || msgs[0].ID != keep || msgs[0].Node != "n1" || msgs[0].Attempts != 1 {
		t.Fatalf("List: %+v %q %v", msgs, next, err)
	}
	if page, next, _ := f.q.List("", 1, ""); len(page) != 1 || next != keep {
		t.Fatalf("first page of one: %+v next %q", page, next)
	}
	if page, next, _ := f.q.List("", 1, keep); len(page) != 1 || page[0].ID != drop || next != "" {
		t.Fatalf("second page: %+v next %q", page, next)
	}
	if st, err := f.q.Stats(); err != nil || st["n1"].Messages != 2 || st["n1"].Deferred != 2 {
		t.Fatalf("Stats: %+v %v", st, err)
	}
	if err := f.q.Delete(drop); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.Message(drop); err == nil {
		t.Fatal("deleted message still shown")
	}
	refuse.Store(false)
	if err := f.q.Retry(keep); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "retried at once", func() bool { return len(f.dest.messages()) == 1 })
	if got := f.dest.messages()[0].rcpts[0]; got != "a@dest.test" {
		t.Fatalf("delivered %q; the deleted message was sent", got)
	}
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	for _, bad := range []string{"../n1", "", "0000000000000000-00000000000g"} {
		if err := f.q.Retry(bad); err == nil {
			t.Errorf("Retry(%q) accepted", bad)
		}
	}
}

func TestDKIMSignatureVerifies(t *testing.T) {
	f := newFixture(t, newSettings())
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.dns.SetTXT("sel1._domainkey.local.test", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	f.q.Signer = func(domain string) (*dkim.SignOptions, bool) {
		if domain != "local.test" {
			return nil, false
		}
		return dkimsign.Options("local.test", "sel1", priv), true
	}
	f.enqueue("user@local.test", "a@dest.test")
	eventually(t, 5*time.Second, "delivered", func() bool { return len(f.dest.messages()) == 1 })
	data := f.dest.messages()[0].data
	if !bytes.HasPrefix(data, []byte("DKIM-Signature:")) {
		t.Fatalf("message not signed: %q", data[:min(len(data), 200)])
	}
	lookup := func(name string) ([]string, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		r, err := dns.Exchange(m, f.dns.Addr)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		return out, nil
	}
	verify := func(msg []byte) error {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil {
			return err
		}
		if len(vs) != 1 {
			t.Fatalf("%d signatures", len(vs))
		}
		return vs[0].Err
	}
	if err := verify(data); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if err := verify(bytes.Replace(data, []byte("hello"), []byte("HELLO"), 1)); err == nil {
		t.Fatal("a changed body still verifies")
	}
}

func TestTakeoverMovesAGoneNodesQueue(t *testing.T) {
	f := newFixture(t, newSettings("Queue/TakeoverAfter", "0s"))
	// n0 is a node that died with two messages queued and no runner.
	dead := &mailqueue.Queue{Spool: f.spool, Node: "n0"}
	if err := f.spool.Init("n0"); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"a@dest.test", "b@dest.test"} {
		if _, err := dead.Enqueue("user@local.test", []string{to}, nil, strings.NewReader("Subject: x\r\n\r\nx\r\n"), 1<<20, false); err != nil {
			t.Fatal(err)
		}
	}
	live := []string{"n1"}
	tk := &mailqueue.Takeover{Spool: f.spool, Self: "n1", Setting: f.set.get, Log: discardLog(),
		Live: func(context.Context) ([]string, error) { return live, nil }}
	// While n0 is live nothing moves.
	live = []string{"n0", "n1"}
	if n, err := tk.Step(context.Background(), time.Now()); err != nil || n != 0 {
		t.Fatalf("Step with n0 live moved %d (%v)", n, err)
	}
	live = []string{"n1"}
	if n, _ := tk.Step(context.Background(), time.Now()); n != 0 {
		t.Fatalf("moved %d at the first sight of n0 gone", n)
	}
	if n, err := tk.Step(context.Background(), time.Now()); err != nil || n != 2 {
		t.Fatalf("moved %d (%v), want 2", n, err)
	}
	eventually(t, 5*time.Second, "taken-over messages delivered by n1", func() bool { return len(f.dest.messages()) == 2 })
	if ids, _ := f.spool.IDs("n0"); len(ids) != 0 {
		t.Fatalf("n0 still holds %v", ids)
	}
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
}

func TestWriteTooLargeLeavesNothing(t *testing.T) {
	sp := mailqueue.Spool{Dir: t.TempDir()}
	if err := sp.Init("n1"); err != nil {
		t.Fatal(err)
	}
	q := &mailqueue.Queue{Spool: sp, Node: "n1"}
	_, err := q.Enqueue("a@local.test", []string{"x@dest.test"}, []byte("Received: x\r\n"), strings.NewReader(strings.Repeat("x", 101)), 100, false)
	if err == nil {
		t.Fatal("a message over the limit was queued")
	}
	if ids, _ := sp.IDs("n1"); len(ids) != 0 {
		t.Fatalf("queued: %v", ids)
	}
	if _, err := q.Enqueue("a@local.test", []string{"x@dest.test"}, nil, strings.NewReader(strings.Repeat("x", 100)), 100, false); err != nil {
		t.Fatalf("a message exactly at the limit: %v", err)
	}
}

func TestNodeNamesAreNeverPaths(t *testing.T) {
	dir := t.TempDir()
	sp := mailqueue.Spool{Dir: dir + "/q"}
	if err := sp.Init("n1"); err != nil {
		t.Fatal(err)
	}
	q := &mailqueue.Queue{Spool: sp, Node: "n1"}
	if _, err := q.Enqueue("a@local.test", []string{"x@dest.test"}, nil, strings.NewReader("x\r\n"), 100, false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"..", ".", "../..", "n1/../n1", "/n1", ".hidden"} {
		if msgs, _, err := q.List(bad, 10, ""); err != nil || len(msgs) != 0 {
			t.Errorf("List(%q) = %d messages, %v; want none", bad, len(msgs), err)
		}
	}
	if msgs, _, _ := q.List("n1", 10, ""); len(msgs) != 1 {
		t.Fatalf("List(n1) = %d", len(msgs))
	}
}

// A runner that lists its queue all the time while messages are queued
// concurrently sends each exactly once (a listing that caught a message
// between its rename into the queue and its registration with the runner
// used to dispatch it a second time).
func TestEachMessageSentOnceUnderConcurrentScans(t *testing.T) {
	f := newFixtureScan(t, newSettings(), time.Millisecond)
	const clients, each = 8, 25
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("Subject: m-%d-%d\r\n\r\nx\r\n", c, i)
				if _, err := f.q.Enqueue("user@local.test", []string{"a@dest.test"}, nil, strings.NewReader(body), 1<<20, false); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "all delivered", func() bool { return len(f.dest.messages()) >= clients*each })
	eventually(t, 5*time.Second, "queue empty", queueEmpty(f, "n1"))
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	for _, m := range f.dest.messages() {
		h, _ := mail.ReadMessage(bytes.NewReader(m.data))
		seen[h.Header.Get("Subject")]++
	}
	if len(seen) != clients*each {
		t.Fatalf("%d distinct messages arrived, want %d", len(seen), clients*each)
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", s, n)
		}
	}
}

// A remote server's reply is kept flattened and bounded in the envelope:
// a hostile server cannot grow the queue's files or break a DSN's fields.
func TestRemoteReplyIsBounded(t *testing.T) {
	f := newFixture(t, newSettings("Queue/RetrySchedule", "1h"))
	f.dest.rcptFn = func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: strings.Repeat("x", 900) + "\n" + strings.Repeat("y", 900) + "\nInjected: yes"}
	}
	id := f.enqueue("user@local.test", "a@dest.test")
	eventually(t, 5*time.Second, "first attempt", func() bool {
		env, err := f.spool.Envelope("n1", id)
		return err == nil && env.Attempts == 1
	})
	env, _ := f.spool.Envelope("n1", id)
	r := env.Rcpts[0].Reply
	if len(r) > 500 || strings.ContainsAny(r, "\r\n") || !strings.HasPrefix(r, "451") {
		t.Fatalf("reply kept as %d bytes: %.80q", len(r), r)
	}
}
