package node_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster/node"
	"mailcluster/service"
)

// TestPOP3 starts a standalone node with both POP3 listeners: a message
// delivered by the node's SMTP listener is read over STLS and deleted
// over implicit TLS, with the node's certificate.
func TestPOP3(t *testing.T) {
	n, pool := startMailNode(t, func(c *node.Config) { c.POP3Addr, c.POP3SAddr = "127.0.0.1:0", "127.0.0.1:0" })
	tc := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	msg := "From: x@remote.test\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
	if err := sendPlain(n.SMTPAddr, "x@remote.test", "alice@example.com", msg); err != nil {
		t.Fatal(err)
	}

	raw, err := net.Dial("tcp", n.POP3Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(raw)
	step := func(c *textproto.Conn, cmd string) string {
		t.Helper()
		if cmd != "" {
			if err := c.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		l, err := c.ReadLine()
		if err != nil || !strings.HasPrefix(l, "+OK") {
			t.Fatalf("%q: %q, %v", cmd, l, err)
		}
		return l
	}
	step(c, "")
	step(c, "STLS")
	tconn := tls.Client(raw, tc)
	if err := tconn.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = textproto.NewConn(tconn)
	step(c, "USER alice@example.com")
	step(c, "PASS alice-pass-1")
	step(c, "RETR 1")
	body, err := c.ReadDotLines()
	if err != nil || !strings.Contains(strings.Join(body, "\n"), "Subject: hi") {
		t.Fatalf("RETR: %q, %v", body, err)
	}
	step(c, "QUIT")

	sconn, err := tls.Dial("tcp", n.POP3SAddr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close()
	_ = sconn.SetDeadline(time.Now().Add(30 * time.Second))
	c = textproto.NewConn(sconn)
	step(c, "")
	step(c, "USER alice@example.com")
	step(c, "PASS alice-pass-1")
	step(c, "DELE 1")
	if l := step(c, "QUIT"); !strings.Contains(l, "0 messages left") {
		t.Fatalf("QUIT: %q", l)
	}
	a, err := n.Service.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", "alice")
	if err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(filepath.Join(a.MailboxPath, "cur"))
	if len(des) != 0 {
		t.Fatalf("INBOX holds %d messages after DELE and QUIT", len(des))
	}
}
