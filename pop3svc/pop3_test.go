package pop3svc_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster/pop3svc"
)

// Messages of the session tests: the second has lines that begin with a
// dot and a bare LF line end.
const (
	msg1 = "From: carol@remote.test\r\nTo: alice@example.com\r\nSubject: one\r\n\r\nfirst body\r\nline 2\r\nline 3\r\n"
	msg2 = "From: carol@remote.test\r\nTo: alice@example.com\r\nSubject: two\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nbare LF\nend\r\n"
	msg3 = "From: carol@remote.test\r\nSubject: three\r\n\r\nthird\r\n"
)

// TestWireMessage: CRLF line ends, dot-stuffing, TOP's line count, and
// the size counted without the stuffing.
func TestWireMessage(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		lines     int
		wire      string
		size      int64
	}{
		{"CRLF", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n", 14},
		{"BareLF", "A: b\n\nbody\n", -1, "A: b\r\n\r\nbody\r\n", 14},
		{"NoFinalLineEnd", "A: b\r\n\r\nbody", -1, "A: b\r\n\r\nbody\r\n", 14},
		{"FinalCR", "A: b\r\n\r\nbody\r", -1, "A: b\r\n\r\nbody\r\n", 14},
		{"Dots", "A: b\r\n\r\n.x\r\n.\r\n..\r\nx.\r\n", -1, "A: b\r\n\r\n..x\r\n..\r\n...\r\nx.\r\n", 23},
		{"Empty", "", -1, "", 0},
		{"Top0", "A: b\r\nC: d\r\n\r\none\r\ntwo\r\n", 0, "A: b\r\nC: d\r\n\r\n", 14},
		{"Top1", "A: b\r\nC: d\r\n\r\none\r\ntwo\r\n", 1, "A: b\r\nC: d\r\n\r\none\r\n", 19},
		{"TopMore", "A: b\n\none\n", 5, "A: b\r\n\r\none\r\n", 13},
		{"TopBlankBodyLine", "A: b\r\n\r\n\r\nthree\r\n", 1, "A: b\r\n\r\n\r\n", 10},
		{"TopNoBody", "A: b\r\nC: d", 0, "A: b\r\nC: d\r\n", 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire, size := pop3svc.WireMessage(tc.msg, tc.lines)
			if wire != tc.wire || size != tc.size {
				t.Fatalf("got %q (%d octets), want %q (%d)", wire, size, tc.wire, tc.size)
			}
		})
	}
}

// TestSession drives a whole RFC 1939 session over STLS: CAPA before and
// after TLS, USER/PASS, STAT, LIST, UIDL, RETR (dot-stuffed, with the
// size LIST gave), TOP, DELE, RSET, NOOP, and QUIT removing the messages
// marked deleted, with the usage reported.
func TestSession(t *testing.T) {
	e := mustOpenEnv(t)
	for _, m := range []string{msg1, msg2, msg3} {
		e.deliver(m)
	}
	files := int64(len(msg1) + len(msg2) + len(msg3))
	e.waitUsage(files, 3)

	c := e.dial(e.pop3, nil)
	caps := c.multi("CAPA")
	if !slices.Contains(caps, "STLS") || slices.Contains(caps, "USER") || slices.Contains(caps, "SASL PLAIN") {
		t.Fatalf("CAPA before TLS: %q, want STLS and no login mechanism", caps)
	}
	c.startTLS(e.client)
	caps = c.multi("CAPA")
	for _, want := range []string{"USER", "SASL PLAIN", "TOP", "UIDL", "RESP-CODES", "PIPELINING"} {
		if !slices.Contains(caps, want) {
			t.Fatalf("CAPA after TLS: %q, want %s", caps, want)
		}
	}
	if slices.Contains(caps, "STLS") {
		t.Fatalf("CAPA after TLS still offers STLS: %q", caps)
	}
	if got := c.cmd("STAT"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("STAT before login: %q", got)
	}
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)

	sizes := []int{len(msg1), len(msg2) + 1, len(msg3)} // msg2's bare LF gets its CR
	total := sizes[0] + sizes[1] + sizes[2]
	if got := c.ok("STAT"); got != fmt.Sprintf("+OK 3 %d", total) {
		t.Fatalf("STAT: %q, want 3 messages of %d octets", got, total)
	}
	list := c.multi("LIST")
	want := []string{"1 " + strconv.Itoa(sizes[0]), "2 " + strconv.Itoa(sizes[1]), "3 " + strconv.Itoa(sizes[2])}
	if !slices.Equal(list, want) {
		t.Fatalf("LIST: %q, want %q", list, want)
	}
	if got := c.ok("LIST 2"); got != "+OK "+want[1] {
		t.Fatalf("LIST 2: %q", got)
	}
	if got := c.cmd("LIST 4"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("LIST 4: %q", got)
	}
	uidl := c.multi("UIDL")
	if len(uidl) != 3 {
		t.Fatalf("UIDL: %q", uidl)
	}
	ids := map[string]bool{}
	for i, l := range uidl {
		n, id, _ := strings.Cut(l, " ")
		if n != strconv.Itoa(i+1) || !strings.Contains(id, ".") || ids[id] {
			t.Fatalf("UIDL: %q", uidl)
		}
		ids[id] = true
	}
	if got := c.ok("UIDL 3"); got != "+OK "+uidl[2] {
		t.Fatalf("UIDL 3: %q, want %q", got, uidl[2])
	}

	if got := c.ok("RETR 2"); got != fmt.Sprintf("+OK %d octets", sizes[1]) {
		t.Fatalf("RETR 2: %q", got)
	}
	body := c.rest()
	wantBody := []string{"From: carol@remote.test", "To: alice@example.com", "Subject: two", "",
		"..starts with a dot", "...two dots", "..", "bare LF", "end"}
	if !slices.Equal(body, wantBody) {
		t.Fatalf("RETR 2 sent %q, want %q", body, wantBody)
	}
	if got := len(strings.Join(body, "\r\n")) + 2 - 3; got != sizes[1] { // less the 3 stuffed dots
		t.Fatalf("RETR 2 sent %d octets unstuffed, LIST said %d", got, sizes[1])
	}
	if top := c.multi("TOP 1 1"); !slices.Equal(top, []string{"From: carol@remote.test", "To: alice@example.com", "Subject: one", "", "first body"}) {
		t.Fatalf("TOP 1 1: %q", top)
	}
	if top := c.multi("TOP 3 0"); !slices.Equal(top, []string{"From: carol@remote.test", "Subject: three", ""}) {
		t.Fatalf("TOP 3 0: %q", top)
	}

	c.ok("DELE 1")
	for _, cmd := range []string{"DELE 1", "RETR 1", "TOP 1 0", "LIST 1", "UIDL 1"} {
		if got := c.cmd(cmd); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("%s of a deleted message: %q", cmd, got)
		}
	}
	if got := c.ok("STAT"); got != fmt.Sprintf("+OK 2 %d", sizes[1]+sizes[2]) {
		t.Fatalf("STAT after DELE: %q", got)
	}
	if list := c.multi("LIST"); len(list) != 2 || list[0] != want[1] {
		t.Fatalf("LIST after DELE: %q", list)
	}
	c.ok("RSET")
	if got := c.ok("STAT"); got != fmt.Sprintf("+OK 3 %d", total) {
		t.Fatalf("STAT after RSET: %q", got)
	}
	c.ok("DELE 1")
	c.ok("DELE 3")
	c.ok("NOOP")
	if e.inboxFiles() != 3 {
		t.Fatal("DELE removed a message before QUIT")
	}
	if got := c.ok("QUIT"); !strings.Contains(got, "1 messages left") {
		t.Fatalf("QUIT: %q", got)
	}
	if !c.closed() {
		t.Fatal("the connection stays open after QUIT")
	}
	if n := e.inboxFiles(); n != 1 {
		t.Fatalf("INBOX holds %d files after QUIT, want 1", n)
	}
	e.waitUsage(int64(len(msg2)), 1)

	// A new session sees the message left with the same UIDL.
	c = e.dial(e.pop3s, e.client)
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)
	if got := c.multi("UIDL"); !slices.Equal(got, []string{"1 " + strings.SplitN(uidl[1], " ", 2)[1]}) {
		t.Fatalf("UIDL of the next session: %q (first session: %q)", got, uidl)
	}
	c.ok("QUIT")
}

// TestNoUpdateWithoutQuit: a session that ends without QUIT removes
// nothing (RFC 1939 6).
func TestNoUpdateWithoutQuit(t *testing.T) {
	e := mustOpenEnv(t)
	e.deliver(msg1)
	c := e.dial(e.pop3s, e.client)
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)
	c.ok("DELE 1")
	c.conn.Close()
	e.pop.Close() // returns once the session has ended
	if n := e.inboxFiles(); n != 1 {
		t.Fatalf("INBOX holds %d files, want the message kept", n)
	}
}

// TestAuthPlain: AUTH PLAIN with an initial response and after the "+"
// challenge, cancelled with "*", and refused for another authorization
// identity; the implicit-TLS listener needs no STLS.
func TestAuthPlain(t *testing.T) {
	e := mustOpenEnv(t)
	e.deliver(msg1)
	plain := func(authz, user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
	}
	t.Run("InitialResponse", func(t *testing.T) {
		c := e.dial(e.pop3s, e.client)
		if caps := c.multi("CAPA"); !slices.Contains(caps, "SASL PLAIN") || slices.Contains(caps, "STLS") {
			t.Fatalf("CAPA on the implicit-TLS listener: %q", caps)
		}
		if got := c.multi("AUTH"); !slices.Equal(got, []string{"PLAIN"}) {
			t.Fatalf("AUTH without a mechanism: %q", got)
		}
		c.ok("AUTH PLAIN " + plain("", "alice@example.com", alicePass))
		if got := c.ok("STAT"); got != fmt.Sprintf("+OK 1 %d", len(msg1)) {
			t.Fatalf("STAT: %q", got)
		}
	})
	t.Run("Challenge", func(t *testing.T) {
		c := e.dial(e.pop3, nil)
		c.startTLS(e.client)
		if got := c.cmd("AUTH PLAIN"); got != "+ " {
			t.Fatalf("AUTH PLAIN without a response: %q, want an empty challenge", got)
		}
		if got := c.cmd("*"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("cancelled AUTH: %q", got)
		}
		c.cmd("AUTH PLAIN")
		c.ok(plain("alice@example.com", "alice@example.com", alicePass))
		c.ok("QUIT")
	})
	t.Run("Refused", func(t *testing.T) {
		c := e.dial(e.pop3s, e.client)
		if got := c.cmd("AUTH PLAIN " + plain("admin@localhost", "alice@example.com", alicePass)); got != "-ERR [AUTH] Authentication failed" {
			t.Fatalf("AUTH PLAIN for another identity: %q", got)
		}
		if got := c.cmd("AUTH CRAM-MD5"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("AUTH CRAM-MD5: %q", got)
		}
		if got := c.cmd("AUTH PLAIN not-base64!"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("AUTH PLAIN with bad base64: %q", got)
		}
	})
}

// TestLoginNeedsTLS: without TLS, USER and AUTH are refused and nothing
// reaches screening; the loopback setting allows plain text from
// 127.0.0.1.
func TestLoginNeedsTLS(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.dial(e.pop3, nil)
	if got := c.cmd("USER alice@example.com"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("USER before TLS: %q", got)
	}
	if got := c.cmd("PASS " + alicePass); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("PASS before TLS: %q", got)
	}
	if got := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00"+alicePass))); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("AUTH PLAIN before TLS: %q", got)
	}
	if fs := e.failures.all(); len(fs) != 0 {
		t.Fatalf("refused plain-text logins reached screening: %+v", fs)
	}

	e.setSetting(pop3svc.SectionPOP3, pop3svc.KeyAllowPlaintextLoopback, "Yes")
	c = e.dial(e.pop3, nil)
	if caps := c.multi("CAPA"); !slices.Contains(caps, "USER") || !slices.Contains(caps, "STLS") {
		t.Fatalf("CAPA on loopback with the setting: %q", caps)
	}
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)
	c.ok("QUIT")
}

// TestLoginScreening: failed logins are counted by screening as "pop3"
// with the client address, frozen and disabled accounts cannot log in, a
// connection ends after three failures, and once screening blocks the
// address new connections are refused at connect.
func TestLoginScreening(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.dial(e.pop3s, e.client)
	for _, up := range [][2]string{{"ice@example.com", "ice-pass-123"}, {"off@example.com", "off-pass-123"}} {
		c.ok("USER " + up[0])
		if got := c.cmd("PASS " + up[1]); got != "-ERR [AUTH] Authentication failed" {
			t.Fatalf("login of %s: %q", up[0], got)
		}
	}
	c.ok("USER alice@example.com")
	if got := c.cmd("PASS wrong-0"); got != "-ERR [AUTH] Authentication failed" {
		t.Fatalf("wrong password: %q", got)
	}
	if !c.closed() {
		t.Fatal("the connection stays open after three failed logins")
	}
	for i := 1; i < 5; i++ {
		c := e.dial(e.pop3s, e.client)
		c.ok("USER alice@example.com")
		if got := c.cmd(fmt.Sprintf("PASS wrong-%d", i)); !strings.HasPrefix(got, "-ERR [AUTH]") {
			t.Fatalf("wrong password: %q", got)
		}
	}
	fs := e.failures.all()
	var mine int
	for _, f := range fs {
		if f.IP != "127.0.0.1" || f.Proto != "pop3" {
			t.Fatalf("failure recorded without the client address or as another protocol: %+v", f)
		}
		if f.Address == "alice@example.com" {
			mine++
		}
	}
	if mine != 5 {
		t.Fatalf("screening counted %d failures for alice, want 5: %+v", mine, fs)
	}
	if err := e.svc.ReportFailures(sysCtx, fs); err != nil {
		t.Fatal(err)
	}
	if _, blocked := e.local.BlockedIP("127.0.0.1"); !blocked {
		t.Fatal("127.0.0.1 is not blocked after the failures were reported")
	}
	c, g := e.dialRaw(e.pop3, nil)
	if !strings.HasPrefix(g, "-ERR ") || !strings.Contains(g, "blocked") {
		t.Fatalf("greeting of a blocked address: %q", g)
	}
	if !c.closed() {
		t.Fatal("a blocked address stays connected")
	}
}

// TestLimits: an overlong line and too many bad commands end the
// connection; the idle timeout ends it with a last "-ERR".
func TestLimits(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.dial(e.pop3, nil)
	if got := c.cmd("NOOP " + strings.Repeat("x", 5000)); got != "-ERR Line too long" {
		t.Fatalf("overlong line: %q", got)
	}
	if !c.closed() {
		t.Fatal("the connection stays open after an overlong line")
	}
	c = e.dial(e.pop3, nil)
	for i := range 10 {
		if got := c.cmd("XYZZY"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("unknown command %d: %q", i, got)
		}
	}
	if !c.closed() {
		t.Fatal("the connection stays open after ten bad commands")
	}

	e.setSetting(pop3svc.SectionPOP3, pop3svc.KeyIdleTimeout, "1")
	c = e.dial(e.pop3, nil)
	if got := c.line(); !strings.HasPrefix(got, "-ERR") || !strings.Contains(got, "idle") {
		t.Fatalf("after the idle timeout: %q", got)
	}
	if !c.closed() {
		t.Fatal("the connection stays open after the idle timeout")
	}
}

// TestIMAP: a message's UIDL is its IMAP UID with the folder's
// UIDVALIDITY, and a POP3 DELE and QUIT reaches an IMAP session idling
// in INBOX as an EXPUNGE, with the usage freed.
func TestIMAP(t *testing.T) {
	e := mustOpenEnv(t)
	for _, m := range []string{msg1, msg2, msg3} {
		e.deliver(m)
	}
	var mu sync.Mutex
	var expunged []uint32
	ic := e.imapLogin(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) {
		mu.Lock()
		expunged = append(expunged, seq)
		mu.Unlock()
	}})
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ic.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("FETCH: %v, %v", msgs, err)
	}
	e.waitUsage(int64(len(msg1)+len(msg2)+len(msg3)), 3)

	c := e.dial(e.pop3s, e.client)
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)
	uidl := c.multi("UIDL")
	for i, m := range msgs {
		if want := fmt.Sprintf("%d %d.%d", i+1, sel.UIDValidity, m.UID); uidl[i] != want {
			t.Fatalf("UIDL %q, want %q (IMAP UID %d)", uidl[i], want, m.UID)
		}
	}
	if got := c.ok("LIST 1"); got != fmt.Sprintf("+OK 1 %d", msgs[0].RFC822Size) {
		t.Fatalf("LIST 1: %q, IMAP RFC822.SIZE %d", got, msgs[0].RFC822Size)
	}

	idle, err := ic.Idle()
	if err != nil {
		t.Fatal(err)
	}
	c.ok("DELE 2")
	c.ok("QUIT")
	waitFor(t, "the EXPUNGE of the idling IMAP session", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(expunged, []uint32{2})
	})
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	e.waitUsage(int64(len(msg1)+len(msg3)), 2)
	after, err := ic.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(after) != 2 || after[0].UID != msgs[0].UID || after[1].UID != msgs[2].UID {
		t.Fatalf("IMAP after the POP3 deletion: %v, %v", after, err)
	}
}

// TestRemovedMeanwhile: a message expunged over IMAP during a POP3
// session is answered with -ERR by RETR, and QUIT still succeeds.
func TestRemovedMeanwhile(t *testing.T) {
	e := mustOpenEnv(t)
	e.deliver(msg1)
	e.deliver(msg3)
	c := e.dial(e.pop3s, e.client)
	c.ok("USER alice@example.com")
	c.ok("PASS " + alicePass)
	ic := e.imapLogin(nil)
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ic.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if got := c.cmd("RETR 1"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("RETR of a message expunged meanwhile: %q", got)
	}
	c.ok("DELE 1")
	c.ok("DELE 2")
	if got := c.ok("QUIT"); !strings.Contains(got, "0 messages left") {
		t.Fatalf("QUIT: %q", got)
	}
	if n := e.inboxFiles(); n != 0 {
		t.Fatalf("INBOX holds %d files", n)
	}
}
