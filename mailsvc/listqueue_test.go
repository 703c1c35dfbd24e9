package mailsvc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/internal/dnstest"
	"mailcluster/mailqueue"
	"mailcluster/mailsvc"
	"mailcluster/outbound"
	"mailcluster/service"
)

// fakeQueue is an outbound queue in memory that records what it is given.
type fakeQueue struct {
	mu        sync.Mutex
	msgs      map[string]*queuedMsg
	order     []string
	released  []string
	discarded []string
	failAfter int // > 0: the Enqueue after this many fails
}

type queuedMsg struct {
	from  string
	rcpts []string
	data  []byte // header and body
	hold  bool
}

var _ mailsvc.Queue = (*fakeQueue)(nil)

func (q *fakeQueue) Enqueue(from string, rcpts []string, header []byte, body io.Reader, maxBody int64, hold bool) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failAfter > 0 && len(q.order) >= q.failAfter {
		return "", errors.New("fake queue: disk full")
	}
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > maxBody {
		return "", smtp.ErrDataTooLarge
	}
	id := fmt.Sprintf("q%d", len(q.order)+1)
	if q.msgs == nil {
		q.msgs = map[string]*queuedMsg{}
	}
	q.msgs[id] = &queuedMsg{from: from, rcpts: append([]string(nil), rcpts...), data: append(append([]byte(nil), header...), b...), hold: hold}
	q.order = append(q.order, id)
	return id, nil
}

func (q *fakeQueue) Release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = append(q.released, id)
}

func (q *fakeQueue) Discard(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.discarded = append(q.discarded, id)
	delete(q.msgs, id)
	return nil
}

type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }

func (q *fakeQueue) Open(id string) (io.ReadSeekCloser, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.msgs[id]
	if !ok {
		return nil, errors.New("fake queue: no such message")
	}
	return readSeekNopCloser{bytes.NewReader(m.data)}, nil
}

// live returns the messages not discarded, in queue order.
func (q *fakeQueue) live() []*queuedMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*queuedMsg
	for _, id := range q.order {
		if m, ok := q.msgs[id]; ok {
			out = append(out, m)
		}
	}
	return out
}

func (q *fakeQueue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs, q.order, q.released, q.discarded, q.failAfter = nil, nil, nil, nil, 0
}

// startServer starts the SMTP listeners of e's store and service with
// queue q (nil: none) and returns the inbound and submission addresses.
func startServer(t *testing.T, e *env, q mailsvc.Queue) (inbound, submission string) {
	t.Helper()
	cert, err := mailsvc.LoadOrCreateSelfSigned(t.TempDir(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mailsvc.ServerConfig{Hostname: "mx.test", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	if q != nil {
		cfg.Queue = q
	}
	srv := mailsvc.NewServer(e.store, mustLocal(e.svc), cfg)
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeInbound(l1)
	go srv.ServeSubmission(l2)
	t.Cleanup(func() { srv.Close() })
	return l1.Addr().String(), l2.Addr().String()
}

// createList creates a list of example.com through the service.
func createList(t *testing.T, e *env, in mailcluster.ListCreate) {
	t.Helper()
	in.Domain = "example.com"
	if _, err := e.svc.CreateList(service.SystemContext(context.Background(), "test"), in); err != nil {
		t.Fatal(err)
	}
}

func members(addrs ...string) []mailcluster.ListMember {
	var out []mailcluster.ListMember
	for _, a := range addrs {
		out = append(out, mailcluster.ListMember{Address: a})
	}
	return out
}

func TestListOutsideMembersQueued(t *testing.T) {
	e := MustOpenEnv(t)
	q := &fakeQueue{}
	inbound, submission := startServer(t, e, q)
	createList(t, e, mailcluster.ListCreate{Name: "team", Description: "The team", Policy: mailcluster.ListPostAnyone,
		ReplyTo: mailcluster.ListReplyToList, Owner: "alice@example.com", Members: members("bob", "Zed@Gmail.test", "yan@example.net")})
	createList(t, e, mailcluster.ListCreate{Name: "club", Policy: mailcluster.ListPostMembers, Members: members("bob", "zed@gmail.test")})

	t.Run("OK", func(t *testing.T) {
		q.reset()
		before := len(messages(t, e, "bob@example.com"))
		if err := send(dial(t, inbound), "stranger@remote.test", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		got := messages(t, e, "bob@example.com")
		if len(got) != before+1 || !strings.Contains(got[len(got)-1], "List-Id: \"The team\" <team.example.com>") {
			t.Fatalf("bob's copy: %d messages, last %q", len(got), got[len(got)-1])
		}
		live := q.live()
		if len(live) != 1 {
			t.Fatalf("queued %d messages, want one for the outside members", len(live))
		}
		m := live[0]
		if m.from != "alice@example.com" || fmt.Sprint(m.rcpts) != "[yan@example.net zed@gmail.test]" || !m.hold {
			t.Fatalf("queued from %q to %v hold %v", m.from, m.rcpts, m.hold)
		}
		if fmt.Sprint(q.released) != "[q1]" || len(q.discarded) != 0 {
			t.Fatalf("released %v discarded %v", q.released, q.discarded)
		}
		h := parsed(t, string(m.data))
		for field, want := range map[string]string{"List-Id": `"The team" <team.example.com>`, "List-Post": "<mailto:team@example.com>",
			"Reply-To": "<team@example.com>", "Precedence": "list", "Subject": "news"} {
			if v := h.Header[field]; len(v) != 1 || v[0] != want {
				t.Errorf("queued %s = %q, want %q", field, v, want)
			}
		}
		if _, ok := h.Header["Return-Path"]; ok {
			t.Error("the queued copy carries a Return-Path")
		}
		if !strings.HasSuffix(string(m.data), "\r\n\r\nHello, team.\r\n") {
			t.Errorf("queued message %q", m.data)
		}
	})
	t.Run("DirectRecipientGetsOneCopy", func(t *testing.T) {
		q.reset()
		c := authed(t, submission)
		if err := send(c, "alice@example.com", []string{"zed@gmail.test", "team@example.com"}, aliceMsg); err != nil {
			t.Fatal(err)
		}
		live := q.live()
		if len(live) != 2 || live[0].from != "alice@example.com" || fmt.Sprint(live[0].rcpts) != "[zed@gmail.test]" ||
			fmt.Sprint(live[1].rcpts) != "[yan@example.net]" || !live[0].hold || !live[1].hold {
			t.Fatalf("queued %+v", live)
		}
		if !bytes.Contains(live[1].data, []byte("List-Id:")) || bytes.Contains(live[0].data, []byte("List-Id:")) ||
			!bytes.HasSuffix(live[1].data, []byte("\r\n\r\nHi Bob.\r\n")) {
			t.Fatalf("queued %q and %q", live[0].data, live[1].data)
		}
		if len(q.released) != 2 {
			t.Fatalf("released %v", q.released)
		}
	})
	t.Run("MembersOnly", func(t *testing.T) {
		q.reset()
		if err := send(dial(t, inbound), "ZED@gmail.test", []string{"club@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		// The poster is the only outside member: nothing more to queue
		// than its own copy.
		if live := q.live(); len(live) != 1 || fmt.Sprint(live[0].rcpts) != "[zed@gmail.test]" || live[0].from != "postmaster@example.com" {
			t.Fatalf("queued %+v", live)
		}
		wantReply(t, send(dial(t, inbound), "stranger@gmail.test", []string{"club@example.com"}, listMsg), 550, smtp.EnhancedCode{5, 7, 1})
	})
	t.Run("BounceNotPassedOn", func(t *testing.T) {
		q.reset()
		before := len(messages(t, e, "bob@example.com"))
		if err := send(dial(t, inbound), "", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		if got := len(messages(t, e, "bob@example.com")); got != before+1 {
			t.Fatalf("bob has %d messages, want %d", got, before+1)
		}
		if live := q.live(); len(live) != 0 {
			t.Fatalf("a bounce was queued for outside members: %+v", live)
		}
	})
	t.Run("ErrLoop", func(t *testing.T) {
		q.reset()
		looped := "List-Id: <team.example.com>\r\n" + listMsg
		wantReply(t, send(dial(t, inbound), "stranger@remote.test", []string{"team@example.com"}, looped), 554, smtp.EnhancedCode{5, 4, 6})
		if len(q.order) != 0 {
			t.Fatalf("a looping message was queued")
		}
	})
	t.Run("DiscardWhenLocalFails", func(t *testing.T) {
		q.reset()
		before := len(messages(t, e, "bob@example.com"))
		big := "From: <stranger@remote.test>\r\nSubject: big\r\n\r\n" + lines(5000) // over small's 2000 bytes
		err := send(dial(t, inbound), "stranger@remote.test", []string{"small@example.com", "team@example.com"}, big)
		wantReply(t, err, 552, smtp.EnhancedCode{5, 2, 2})
		if len(q.order) != 1 || fmt.Sprint(q.discarded) != "[q1]" || len(q.released) != 0 {
			t.Fatalf("queued %v released %v discarded %v", q.order, q.released, q.discarded)
		}
		if got := len(messages(t, e, "bob@example.com")); got != before {
			t.Fatalf("bob got a copy of a refused message")
		}
	})
	t.Run("DiscardWhenQueueFails", func(t *testing.T) {
		q.reset()
		q.failAfter = 1
		before := len(messages(t, e, "bob@example.com"))
		c := authed(t, submission)
		err := send(c, "alice@example.com", []string{"x@far.test", "team@example.com"}, aliceMsg)
		wantReply(t, err, 451, smtp.EnhancedCode{4, 3, 0})
		if fmt.Sprint(q.discarded) != "[q1]" || len(q.released) != 0 || len(q.live()) != 0 {
			t.Fatalf("queued %v released %v discarded %v", q.order, q.released, q.discarded)
		}
		if got := len(messages(t, e, "bob@example.com")); got != before {
			t.Fatalf("bob got a copy of a refused message")
		}
	})
	t.Run("NoQueue", func(t *testing.T) {
		before := len(messages(t, e, "bob@example.com"))
		if err := send(dial(t, e.inbound), "stranger@remote.test", []string{"team@example.com"}, listMsg); err != nil {
			t.Fatal(err)
		}
		if got := len(messages(t, e, "bob@example.com")); got != before+1 {
			t.Fatalf("bob has %d messages, want %d", got, before+1)
		}
	})
}

// A post to a list with outside members reaches them through the real
// queue and outbound client, at a destination found by MX in the test
// DNS server: one message for both, from the list's bounce address, with
// the list's fields.
func TestListOutsideMembersThroughTheQueue(t *testing.T) {
	e := MustOpenEnv(t)
	dns := dnstest.Start(t)
	dest := startSink(t)
	for _, d := range []string{"far.test", "other.test"} {
		dns.SetMX(d, dnstest.MX{Host: "mx.far.test", Pref: 10})
	}
	dns.SetA("mx.far.test", "127.0.0.1")
	spool := mailqueue.Spool{Dir: t.TempDir()}
	if err := spool.Init("node1"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	r := mailqueue.NewRunner(mailqueue.Config{Spool: spool, Node: "node1", Hostname: "mx.test", Log: log, Scan: 200 * time.Millisecond,
		Setting: func(_, _, def string) string { return def },
		Deliver: func() mailqueue.Deliverer {
			return loopbackDeliverer{outbound.New(outbound.Config{HeloName: "mx.test", DNSServer: dns.Addr, Port: dest.port,
				ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second, Log: log})}
		},
		Local: func(context.Context, string, []byte) (bool, error) { return false, nil }})
	q := &mailqueue.Queue{Spool: spool, Node: "node1", Runner: r}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(5 * time.Second) })
	inbound, _ := startServer(t, e, q)
	createList(t, e, mailcluster.ListCreate{Name: "team", Policy: mailcluster.ListPostAnyone, Owner: "alice@example.com",
		Members: members("bob", "zed@far.test", "yan@other.test")})

	if err := send(dial(t, inbound), "stranger@remote.test", []string{"team@example.com"}, listMsg); err != nil {
		t.Fatal(err)
	}
	var got []sunk
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = dest.received(); len(got) > 0 {
			break
		}
	}
	if len(got) == 0 {
		t.Fatal("nothing arrived at the destination")
	}
	var rcpts []string
	for _, m := range got {
		rcpts = append(rcpts, m.rcpts...)
		if m.from != "alice@example.com" {
			t.Errorf("envelope sender %q, want the list's owner", m.from)
		}
		h := parsed(t, string(m.data))
		if v := h.Header.Get("List-Id"); v != "<team.example.com>" {
			t.Errorf("List-Id %q", v)
		}
		if !strings.HasSuffix(string(m.data), "Hello, team.\r\n") {
			t.Errorf("message %q", m.data)
		}
	}
	slices.Sort(rcpts)
	if fmt.Sprint(rcpts) != "[yan@other.test zed@far.test]" {
		t.Fatalf("destination got %v", rcpts)
	}
	if len(messages(t, e, "bob@example.com")) != 1 {
		t.Fatal("bob did not get his copy")
	}
	// Delivered: the queue is empty again.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ids, err := spool.IDs("node1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still queued: %v", ids)
		}
	}
}

type loopbackDeliverer struct{ *outbound.Client }

func (loopbackDeliverer) ViaSmarthost() bool { return false }

// sink is a destination mail server on 127.0.0.1 that accepts everything.
type sink struct {
	port int
	mu   sync.Mutex
	msgs []sunk
}

type sunk struct {
	from  string
	rcpts []string
	data  []byte
}

type sinkSession struct {
	s     *sink
	from  string
	rcpts []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.msgs = append(ss.s.msgs, sunk{from: ss.from, rcpts: append([]string(nil), ss.rcpts...), data: b})
	return nil
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "mx.far.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); ln.Close() })
	return s
}

func (s *sink) received() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}
