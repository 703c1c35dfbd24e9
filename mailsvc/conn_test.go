package mailsvc_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/mailsvc"
	"mailcluster/service"
)

// greeting connects to addr from the local address ip and returns the
// open connection and the first line the server sent.
func greeting(t *testing.T, addr, ip string) (net.Conn, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	return c, line
}

// accepted connects until the server greets with 220: connections closed
// just before are released when the server has seen them close.
func accepted(t *testing.T, addr, ip string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, line := greeting(t, addr, ip)
		if strings.HasPrefix(line, "220 ") {
			return c
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("connection to %s not accepted: %q", addr, line)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantTooMany asserts that a new connection is refused over the caps.
func wantTooMany(t *testing.T, addr, ip string) {
	t.Helper()
	c, line := greeting(t, addr, ip)
	if line != "421 4.7.0 Too many connections, try again later\r\n" {
		t.Fatalf("greeting = %q, want the 421 of the connection caps", line)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the 421: %v, want the connection closed", err)
	}
}

func setSMTP(t *testing.T, e *env, key, value string) {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	if err := e.svc.SetSetting(ctx, "mailcluster", mailsvc.SectionSMTP, key, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.svc.DeleteSetting(ctx, "mailcluster", mailsvc.SectionSMTP, key) })
}

// TestConnectionCaps holds connections open up to the caps: the next one
// is refused with 421 at once, and accepted again when one has closed.
// The caps count both listeners together.
func TestConnectionCaps(t *testing.T) {
	t.Run("PerIP", func(t *testing.T) {
		e := MustOpenEnv(t)
		setSMTP(t, e, mailsvc.KeyMaxConnectionsPerIP, "2")
		c1 := accepted(t, e.inbound, "127.0.0.1")
		accepted(t, e.submission, "127.0.0.1")
		wantTooMany(t, e.inbound, "127.0.0.1")
		wantTooMany(t, e.submission, "127.0.0.1")
		// Another address is not affected.
		accepted(t, e.inbound, "127.0.0.2")
		c1.Close()
		accepted(t, e.inbound, "127.0.0.1")
		wantTooMany(t, e.inbound, "127.0.0.1")
	})
	t.Run("Global", func(t *testing.T) {
		e := MustOpenEnv(t)
		setSMTP(t, e, mailsvc.KeyMaxConnections, "1")
		// Sessions that end after STARTTLS (closed through the TLS
		// connection) give back their place.
		for range 3 {
			deadline := time.Now().Add(10 * time.Second)
			c, err := smtp.DialStartTLS(e.submission, &tls.Config{InsecureSkipVerify: true})
			for err != nil && time.Now().Before(deadline) { // the last one not yet released
				time.Sleep(10 * time.Millisecond)
				c, err = smtp.DialStartTLS(e.submission, &tls.Config{InsecureSkipVerify: true})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
		}
		c1 := accepted(t, e.submission, "127.0.0.1")
		wantTooMany(t, e.inbound, "127.0.0.3")
		wantTooMany(t, e.submission, "127.0.0.1")
		c1.Close()
		accepted(t, e.inbound, "127.0.0.3")
		wantTooMany(t, e.submission, "127.0.0.1")
	})
}

// TestIdleTimeout leaves a connection idle: the server closes it.
func TestIdleTimeout(t *testing.T) {
	e := MustOpenEnv(t)
	setSMTP(t, e, mailsvc.KeyIdleTimeout, "1")
	c := dialRaw(t, e.inbound)
	c.send("EHLO client.test\r\n")
	c.expect("EHLO", 250, "")
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	code, _, err := c.text.ReadResponse(0)
	if err == nil && code != 421 {
		t.Fatalf("idle connection: reply %d, want 421 or the connection closed", code)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close an idle connection")
	}
	c.expectClosed("after the idle timeout")
}

// TestConnLimiterReleaseOnce releases a connection's place twice (a
// connection may be closed more than once): it counts once.
func TestConnLimiterReleaseOnce(t *testing.T) {
	var l mailsvc.ConnLimiter
	release, ok := l.Acquire("192.0.2.1", 1, 1)
	if !ok {
		t.Fatal("the first connection was refused")
	}
	release()
	release()
	if _, ok := l.Acquire("192.0.2.1", 1, 1); !ok {
		t.Fatal("refused after the release")
	}
	if _, ok := l.Acquire("192.0.2.2", 1, 1); ok {
		t.Fatal("a second connection over a cap of 1 was accepted: the place was released twice")
	}
	if _, ok := l.Acquire("192.0.2.1", 2, 1); ok {
		t.Fatal("a second connection from one address over a cap of 1 was accepted")
	}
}
