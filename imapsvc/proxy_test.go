package imapsvc_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	proxyproto "github.com/pires/go-proxyproto"

	"mailcluster"
)

// proxiedConn connects to addr from the loopback address src and sends a
// PROXY v1 header naming client. The connection is closed at the end of
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
	h := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP(client), Port: 40000}, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyProtocol: behind a load balancer listed in [Network]
// ProxyProtocolFrom, screening sees the client the PROXY header names (on
// the STARTTLS and the implicit-TLS listener, where the header comes
// before TLS), and so does the login failure detector; a header from an
// address not listed changes nothing.
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
	if g := greeting(proxiedConn(t, e.node.imap, balancer, blocked)); !strings.HasPrefix(g, "* BYE ") || !strings.Contains(g, blocked) {
		t.Fatalf("greeting of the blocked client behind the balancer: %q", g)
	}
	if err := tls.Client(proxiedConn(t, e.node.imaps, balancer, blocked), e.client).Handshake(); err == nil {
		t.Fatal("TLS handshake of a blocked client behind the balancer succeeded")
	}
	// From an address not listed the header is not read: the client is
	// 127.0.0.3, not blocked.
	if g := greeting(proxiedConn(t, e.node.imap, "127.0.0.3", blocked)); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting of a client that is not a listed balancer: %q", g)
	}

	tc := tls.Client(proxiedConn(t, e.node.imaps, balancer, other), e.client)
	c := imapclient.New(tc, nil)
	defer c.Close()
	wantNo(t, c.Login("alice@example.com", "wrong-password").Wait(), imap.ResponseCodeAuthenticationFailed)
	fs := e.failures.all()
	if len(fs) != 1 || fs[0].IP != other {
		t.Fatalf("login failures %+v, want one from %s", fs, other)
	}
}
