package mailsvc_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	proxyproto "github.com/pires/go-proxyproto"

	"mailcluster"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// proxiedConn connects to addr from the loopback address src and sends a
// PROXY header (version 1 or 2) naming client. The connection is closed at
// the end of the test.
func proxiedConn(t *testing.T, addr, src, client string, version byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.ParseIP(client), Port: 40000}, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyProtocol: behind a load balancer listed in [Network]
// ProxyProtocolFrom, screening at connect, the per-IP cap and the
// Received header see the client the PROXY header names; from an
// address not listed a PROXY line is a bad command (a 50x syntax error,
// as Postfix's 500) and changes no address.
func TestProxyProtocol(t *testing.T) {
	e := MustOpenEnv(t)
	const balancer, blocked, client = "127.0.0.2", "203.0.113.7", "203.0.113.8"
	ctx := service.SystemContext(context.Background(), "test")
	if err := e.svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionNetwork, mailcluster.KeyProxyProtocolFrom, balancer); err != nil {
		t.Fatal(err)
	}
	admin, err := e.svc.Authenticate(ctx, "admin@localhost", "admin-pass-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.BlockIP(service.NewContextWithCaller(ctx, admin), blocked, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	line := func(r *bufio.Reader) string {
		t.Helper()
		l, _ := r.ReadString('\n')
		return l
	}

	t.Run("BlockedClientRefused", func(t *testing.T) {
		for _, addr := range []string{e.inbound, e.submission} {
			g := line(bufio.NewReader(proxiedConn(t, addr, balancer, blocked, 2)))
			if !strings.HasPrefix(g, "421 ") || !strings.Contains(g, blocked) {
				t.Fatalf("greeting of the blocked client behind the balancer: %q", g)
			}
		}
	})

	t.Run("UnlistedSenderIsOrdinaryClient", func(t *testing.T) {
		c := proxiedConn(t, e.inbound, "127.0.0.3", blocked, 1)
		r := bufio.NewReader(c)
		if g := line(r); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("greeting of a client that is not a listed balancer: %q", g)
		}
		if l := line(r); !strings.HasPrefix(l, "50") {
			t.Fatalf("answer to the PROXY line: %q, want a 50x syntax error", l)
		}
	})

	t.Run("PerIPCapCountsRealClient", func(t *testing.T) {
		setSMTP(t, e, mailsvc.KeyMaxConnectionsPerIP, "1")
		r1 := bufio.NewReader(proxiedConn(t, e.inbound, balancer, client, 2))
		if g := line(r1); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("first connection: %q", g)
		}
		if g := line(bufio.NewReader(proxiedConn(t, e.inbound, balancer, client, 1))); !strings.HasPrefix(g, "421 4.7.0 Too many") {
			t.Fatalf("second connection of the same client: %q, want the 421 of the caps", g)
		}
		if g := line(bufio.NewReader(proxiedConn(t, e.inbound, balancer, "203.0.113.9", 2))); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("another client through the same balancer: %q", g)
		}
	})

	t.Run("ReceivedNamesRealClient", func(t *testing.T) {
		c := smtp.NewClient(proxiedConn(t, e.inbound, balancer, client, 2))
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := send(c, "someone@remote.test", []string{"bob@example.com"}, "Subject: via balancer\r\n\r\nhello\r\n"); err != nil {
			t.Fatal(err)
		}
		msgs := messages(t, e, "bob@example.com")
		if len(msgs) != 1 {
			t.Fatalf("%d messages delivered", len(msgs))
		}
		_, rest, _ := strings.Cut(msgs[0], "Received: ")
		received, _, _ := strings.Cut(rest, "Subject:")
		if !strings.Contains(received, "(["+client+"])") || strings.Contains(msgs[0], balancer) {
			t.Fatalf("Received header does not name %s alone: %q", client, msgs[0])
		}
	})
}
