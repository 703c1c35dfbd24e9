package mailsvc_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// rawConn is an SMTP connection driven by hand, to send what no client
// library would.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	text *textproto.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawConn{t: t, c: c, text: textproto.NewReader(bufio.NewReader(c))}
	r.expect("greeting", 220, "")
	return r
}

// send writes s as it is (several commands at once are pipelined).
func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply.
func (r *rawConn) reply(what string) (int, string) {
	r.t.Helper()
	code, msg, err := r.text.ReadResponse(0)
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	return code, msg
}

// expect reads a reply and checks its code and the start of its enhanced
// status code ("" for any).
func (r *rawConn) expect(what string, code int, enh string) string {
	r.t.Helper()
	got, msg := r.reply(what)
	if got != code || !strings.HasPrefix(msg, enh) {
		r.t.Fatalf("%s: reply %d %q, want %d %s", what, got, msg, code, enh)
	}
	return msg
}

// expectSequenceError reads the refusal of a command sent out of order:
// RFC 5321 says 503 (bad sequence of commands); go-smtp answers its own
// state checks with 502, always with the enhanced code 5.5.1.
func (r *rawConn) expectSequenceError(what string) {
	r.t.Helper()
	code, msg := r.reply(what)
	if (code != 503 && code != 502) || !strings.HasPrefix(msg, "5.5.1") {
		r.t.Fatalf("%s: reply %d %q, want 503 (or go-smtp's 502) 5.5.1", what, code, msg)
	}
}

// expectClosed reads until the server closes the connection.
func (r *rawConn) expectClosed(what string) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := r.text.ReadLine(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("%s: the server did not close the connection", what)
			}
			return
		}
	}
}

// counts returns the number of messages of each account.
func counts(t *testing.T, e *env) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, a := range []string{"alice@example.com", "bob@example.com", "ice@example.com", "small@example.com"} {
		out[a] = len(messages(t, e, a))
	}
	return out
}

// TestHostileSMTP sends over-long lines, too many recipients, commands out
// of order, pipelined garbage and a smuggling attempt. The server answers
// each with an error reply, delivers nothing, and keeps serving.
func TestHostileSMTP(t *testing.T) {
	e := MustOpenEnv(t)
	before := counts(t, e)
	valid := "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"

	t.Run("LongCommandLine", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send("EHLO client.test\r\n")
		c.expect("EHLO", 250, "")
		c.send("MAIL FROM:<" + strings.Repeat("a", 5000) + "@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\n")
		c.expect("long MAIL", 500, "5.")
		c.expectClosed("after a too long line")
	})
	t.Run("LongCommandLineNoEnd", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send(strings.Repeat("A", 64<<10)) // never a line end
		c.expect("endless line", 500, "5.")
		c.expectClosed("after an endless line")
	})
	t.Run("LongDataLine", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send("EHLO client.test\r\n" + valid)
		c.expect("EHLO", 250, "")
		c.expect("MAIL", 250, "")
		c.expect("RCPT", 250, "")
		c.expect("DATA", 354, "")
		c.send("Subject: long\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n.\r\n")
		c.expect("long data line", 500, "5.5.2")
	})
	t.Run("TooManyRecipients", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n" + strings.Repeat("RCPT TO:<alice@example.com>\r\n", 101) + "RSET\r\n")
		c.expect("EHLO", 250, "")
		c.expect("MAIL", 250, "")
		for i := range 100 {
			c.expect(fmt.Sprintf("RCPT %d", i+1), 250, "")
		}
		c.expect("RCPT 101", 452, "4.5.3")
		c.expect("RSET", 250, "")
		c.send("DATA\r\n")
		c.expectSequenceError("DATA after RSET")
	})
	t.Run("OutOfOrder", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send("MAIL FROM:<s@remote.test>\r\n")
		c.expectSequenceError("MAIL before EHLO")
		c.send("EHLO client.test\r\n")
		c.expect("EHLO", 250, "")
		// A refused BDAT's chunk is read and dropped (RFC 3030).
		for _, cmd := range []string{"RCPT TO:<alice@example.com>\r\n", "DATA\r\n", "BDAT 10 LAST\r\nMAIL FROM:"} {
			c.send(cmd)
			c.expectSequenceError(strings.Fields(cmd)[0] + " before MAIL")
		}
		c.send("MAIL FROM:<s@remote.test>\r\n")
		c.expect("MAIL", 250, "")
		for _, cmd := range []string{"DATA\r\n", "BDAT 5\r\nRSET\n"} {
			c.send(cmd)
			c.expectSequenceError(strings.Fields(cmd)[0] + " before RCPT")
		}
		c.send("RCPT TO:<nobody@example.com>\r\nDATA\r\n")
		c.expect("RCPT unknown", 550, "5.1.1")
		c.expectSequenceError("DATA after a refused RCPT")
		c.send("RSET\r\nQUIT\r\n")
		c.expect("RSET", 250, "")
		c.expect("QUIT", 221, "")
	})
	t.Run("PipelinedGarbage", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		garbage := []string{
			"\x00\x01\x02\xff\xfe binary\r\n",
			"HELO\r\n",
			"EHLO client.test\r\n",
			"MAIL FROM:<<<>>>\r\n",
			"MAIL FROM:<s@remote.test> SIZE=abc\r\n",
			"RCPT TO:alice@example.com\r\n",
			"RCPT TO:<alice@example.com> NOTIFY=WHATEVER\r\n",
			"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXBhc3MtMQ==\r\n",
			"BDAT -1 LAST\r\n",
			"BDAT x\r\n",
			"DATA extra\r\n",
			"\r\n",
			"bare line feed\n",
			"\x1b[2J\r\n",
			strings.Repeat("NOOP ", 300) + "\r\n",
			"VRFY root\r\n",
			"EXPN all\r\n",
			"TURN\r\n",
		}
		c.send(strings.Join(garbage, "") + strings.Repeat("XYZZY\r\n", 20))
		// Every answer is a well-formed reply; after too many errors
		// go-smtp says so and closes.
		for i := 0; ; i++ {
			code, msg, err := c.text.ReadResponse(0)
			if err != nil {
				var pe textproto.ProtocolError
				if errors.As(err, &pe) {
					t.Fatalf("malformed reply after %d replies: %v", i, err)
				}
				break // closed
			}
			if code == 421 || code == 451 || code == 354 {
				t.Fatalf("reply %d to garbage: %d %q", i, code, msg) // a panic, an unclassified error, or data accepted
			}
			if i > 100 {
				t.Fatal("the server keeps answering garbage")
			}
		}
	})
	t.Run("Smuggling", func(t *testing.T) {
		c := dialRaw(t, e.inbound)
		c.send("EHLO client.test\r\n" + valid)
		c.expect("EHLO", 250, "")
		c.expect("MAIL", 250, "")
		c.expect("RCPT", 250, "")
		c.expect("DATA", 354, "")
		// Bare-LF and bare-CR "end of data" lines are message text, not
		// the end of the message (RFC 5321 4.1.1.4; SMTP smuggling).
		c.send("Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<x@remote.test>\nRCPT TO:<bob@example.com>\nDATA\nsmuggled\n.\r\n" +
			"\r.\r\nRCPT TO:<bob@example.com>\r\n\r\n..\r\n.\r\nQUIT\r\n")
		c.expect("end of data", 250, "2.0.0")
		c.expect("QUIT", 221, "")
		got := messages(t, e, "alice@example.com")
		if len(got) != before["alice@example.com"]+1 {
			t.Fatalf("alice has %d messages, want %d", len(got), before["alice@example.com"]+1)
		}
		before["alice@example.com"]++
	})

	t.Run("NothingDelivered", func(t *testing.T) {
		after := counts(t, e)
		for a, n := range before {
			if after[a] != n {
				t.Errorf("%s has %d messages, want %d", a, after[a], n)
			}
		}
	})
	t.Run("StillServing", func(t *testing.T) {
		c := dial(t, e.inbound)
		if err := send(c, "s@remote.test", []string{"bob@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if n := len(messages(t, e, "bob@example.com")); n != before["bob@example.com"]+1 {
			t.Fatalf("bob has %d messages", n)
		}
	})
}
