package pop3svc_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"mailcluster"
)

// proxiedConn connects to addr from the loopback address src and sends a
// PROXY v2 header naming client. The connection is closed at the end of
// the test.
func proxiedConn(t *testing.T, addr, src, client string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(client), Port: 40000}, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyProtocol: behind a load balancer listed in [Network]
// ProxyProtocolFrom, screening sees the client the PROXY header names (on
// the STLS and the implicit-TLS listener, where the header comes before
// TLS), and so does the login failure detector; a header from an address
// not listed changes nothing.
func TestProxyProtocol(t *testing.T) {
	e := mustOpenEnv(t)
	const balancer, blocked, other = "127.0.0.2", "203.0.113.7", "203.0.113.8"
	e.setSetting(mailcluster.SectionNetwork, mailcluster.KeyProxyProtocolFrom, balancer)
	if _, err := e.svc.BlockIP(sysCtx, blocked, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	greeting := func(c net.Conn) string {
		t.Helper()
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	if g := greeting(proxiedConn(t, e.pop3, balancer, blocked)); !strings.HasPrefix(g, "-ERR ") || !strings.Contains(g, blocked) {
		t.Fatalf("greeting of the blocked client behind the balancer: %q", g)
	}
	if err := tls.Client(proxiedConn(t, e.pop3s, balancer, blocked), e.client).Handshake(); err == nil {
		t.Fatal("TLS handshake of a blocked client behind the balancer succeeded")
	}
	// From an address not listed the header is not read: the client is
	// 127.0.0.3, not blocked, and its header is a bad command.
	if g := greeting(proxiedConn(t, e.pop3, "127.0.0.3", blocked)); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting of a client that is not a listed balancer: %q", g)
	}

	tc := tls.Client(proxiedConn(t, e.pop3s, balancer, other), e.client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after the PROXY header: %v", err)
	}
	r := bufio.NewReader(tc)
	if g, _ := r.ReadString('\n'); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting over TLS behind the balancer: %q", g)
	}
	for _, cmd := range []string{"USER alice@example.com", "PASS wrong-password"} {
		if _, err := tc.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		if l, err := r.ReadString('\n'); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		} else if cmd[0] == 'P' && !strings.HasPrefix(l, "-ERR") {
			t.Fatalf("wrong password: %q", l)
		}
	}
	fs := e.failures.all()
	if len(fs) != 1 || fs[0].IP != other {
		t.Fatalf("login failures %+v, want one from %s", fs, other)
	}
}
