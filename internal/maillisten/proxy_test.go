package maillisten_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"mailcluster"
	"mailcluster/internal/maillisten"
)

// The test's addresses: the load balancer and an ordinary client dial
// from distinct loopback addresses; the client behind the balancer is a
// documentation address.
const (
	balancerIP = "127.0.0.2"
	otherIP    = "127.0.0.3"
	realClient = "203.0.113.7"
)

// settings is a maillisten.Directory whose [Network] ProxyProtocolFrom
// can change while the listener runs.
type settings struct {
	mu   sync.Mutex
	from string
	read int // how often the setting was read
}

func (d *settings) set(v string) { d.mu.Lock(); d.from = v; d.mu.Unlock() }

func (d *settings) reads() int { d.mu.Lock(); defer d.mu.Unlock(); return d.read }

func (d *settings) Setting(section, key, def string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if section == mailcluster.SectionNetwork && key == mailcluster.KeyProxyProtocolFrom {
		d.read++
		return d.from
	}
	return def
}

func (d *settings) BlockedIP(string) (*mailcluster.BlockedIP, bool) { return nil, false }
func (d *settings) Serving() bool                                   { return true }

// mustProxyListener listens on 127.0.0.1:0 behind a ProxyListener that
// trusts from; accepted connections arrive on the returned channel.
func mustProxyListener(t *testing.T, from string, timeout time.Duration) (*maillisten.ProxyListener, *settings, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := &settings{from: from}
	pl := maillisten.NewProxyListener(ln, dir, slog.New(slog.DiscardHandler))
	pl.HeaderTimeout = timeout
	accepted := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := pl.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		pl.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	return pl, dir, accepted
}

// dialFrom connects to ln from the loopback address src.
func dialFrom(t *testing.T, src string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeHeader writes a PROXY header (version 1 or 2) naming realClient:4242.
func writeHeader(t *testing.T, c net.Conn, version byte) {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version,
		&net.TCPAddr{IP: net.ParseIP(realClient), Port: 4242}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 25})
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
}

func next(t *testing.T, accepted <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-accepted:
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("no connection accepted within 3 s")
		return nil
	}
}

// nothingAccepted fails when a connection is delivered within d.
func nothingAccepted(t *testing.T, accepted <-chan net.Conn, d time.Duration) {
	t.Helper()
	select {
	case c := <-accepted:
		t.Fatalf("a connection from %s was accepted", c.RemoteAddr())
	case <-time.After(d):
	}
}

// closedByServer fails unless the server closes c within 3 s.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, err %v: the server did not close the connection", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return line
}

func TestProxyListener(t *testing.T) {
	for _, version := range []byte{1, 2} {
		t.Run("TrustedV"+string('0'+version), func(t *testing.T) {
			pl, _, accepted := mustProxyListener(t, "10.9.9.9, "+balancerIP, 0)
			c := dialFrom(t, balancerIP, pl.Addr())
			writeHeader(t, c, version)
			if _, err := io.WriteString(c, "EHLO client\r\n"); err != nil {
				t.Fatal(err)
			}
			sc := next(t, accepted)
			if ip := maillisten.RemoteIP(sc); ip != realClient {
				t.Fatalf("RemoteIP = %s, want %s", ip, realClient)
			}
			if line := readLine(t, sc); line != "EHLO client\r\n" {
				t.Fatalf("first line after the header = %q", line)
			}
		})
	}

	t.Run("TrustedByPrefix", func(t *testing.T) {
		pl, _, accepted := mustProxyListener(t, "127.0.0.0/30", 0)
		c := dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, c, 2)
		if ip := maillisten.RemoteIP(next(t, accepted)); ip != realClient {
			t.Fatalf("RemoteIP = %s, want %s", ip, realClient)
		}
	})

	// A client that is not a listed balancer cannot claim another
	// address: its header is not read, it is data of the session.
	t.Run("UntrustedSourceKeepsItsAddress", func(t *testing.T) {
		pl, _, accepted := mustProxyListener(t, balancerIP, 0)
		c := dialFrom(t, otherIP, pl.Addr())
		writeHeader(t, c, 1)
		sc := next(t, accepted)
		if ip := maillisten.RemoteIP(sc); ip != otherIP {
			t.Fatalf("RemoteIP = %s, want %s", ip, otherIP)
		}
		if line := readLine(t, sc); !strings.HasPrefix(line, "PROXY TCP4 "+realClient) {
			t.Fatalf("first line = %q, want the PROXY line as data", line)
		}
	})

	t.Run("EmptySettingReadsNoHeader", func(t *testing.T) {
		pl, _, accepted := mustProxyListener(t, "", 0)
		c := dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, c, 1)
		sc := next(t, accepted)
		if ip := maillisten.RemoteIP(sc); ip != balancerIP {
			t.Fatalf("RemoteIP = %s, want %s", ip, balancerIP)
		}
		if line := readLine(t, sc); !strings.HasPrefix(line, "PROXY ") {
			t.Fatalf("first line = %q, want the PROXY line as data", line)
		}
	})

	t.Run("MissingHeaderFromBalancerClosed", func(t *testing.T) {
		pl, _, accepted := mustProxyListener(t, balancerIP, 0)
		c := dialFrom(t, balancerIP, pl.Addr())
		if _, err := io.WriteString(c, "EHLO client\r\n"); err != nil {
			t.Fatal(err)
		}
		closedByServer(t, c)
		nothingAccepted(t, accepted, 100*time.Millisecond)
	})

	t.Run("MalformedHeaderClosed", func(t *testing.T) {
		for _, bad := range []string{
			"PROXY TCP4 203.0.113.7 nonsense 1 2\r\n",
			"PROXY TCP4 999.0.113.7 198.51.100.1 4242 25\r\n",
			"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\xff", // v2 signature, length past the data
		} {
			pl, _, accepted := mustProxyListener(t, balancerIP, 500*time.Millisecond)
			c := dialFrom(t, balancerIP, pl.Addr())
			if _, err := io.WriteString(c, bad); err != nil {
				t.Fatal(err)
			}
			closedByServer(t, c)
			nothingAccepted(t, accepted, 100*time.Millisecond)
		}
	})

	// A balancer that connects and says nothing holds up neither the
	// accept loop nor other clients, and is closed after the deadline.
	t.Run("SilentBalancerDoesNotBlockAccept", func(t *testing.T) {
		pl, _, accepted := mustProxyListener(t, balancerIP, time.Second)
		silent := make([]net.Conn, 3)
		for i := range silent {
			silent[i] = dialFrom(t, balancerIP, pl.Addr())
		}
		start := time.Now()
		c := dialFrom(t, otherIP, pl.Addr())
		sc := next(t, accepted)
		if ip := maillisten.RemoteIP(sc); ip != otherIP {
			t.Fatalf("RemoteIP = %s, want %s", ip, otherIP)
		}
		b := dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, b, 2)
		if ip := maillisten.RemoteIP(next(t, accepted)); ip != realClient {
			t.Fatalf("RemoteIP = %s, want %s", ip, realClient)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("the other clients waited %v behind silent balancer connections", d)
		}
		_ = c
		for _, s := range silent {
			closedByServer(t, s)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("silent connections closed after %v, before the header deadline", d)
		}
	})

	t.Run("SettingReadAtEveryAccept", func(t *testing.T) {
		pl, dir, accepted := mustProxyListener(t, "", 0)
		c := dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, c, 2)
		if ip := maillisten.RemoteIP(next(t, accepted)); ip != balancerIP {
			t.Fatalf("RemoteIP = %s, want %s", ip, balancerIP)
		}
		dir.set(balancerIP)
		c = dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, c, 2)
		if ip := maillisten.RemoteIP(next(t, accepted)); ip != realClient {
			t.Fatalf("RemoteIP = %s, want %s after the setting changed", ip, realClient)
		}
		if n := dir.reads(); n != 2 {
			t.Fatalf("setting read %d times for 2 connections", n)
		}
		dir.set("not an address")
		c = dialFrom(t, balancerIP, pl.Addr())
		writeHeader(t, c, 2)
		if ip := maillisten.RemoteIP(next(t, accepted)); ip != balancerIP {
			t.Fatalf("RemoteIP = %s, want %s with a setting that does not parse", ip, balancerIP)
		}
	})

	t.Run("CloseEndsPendingHeaders", func(t *testing.T) {
		pl, _, _ := mustProxyListener(t, balancerIP, time.Minute)
		silent := dialFrom(t, balancerIP, pl.Addr())
		time.Sleep(100 * time.Millisecond) // let the header read start
		done := make(chan struct{})
		go func() { pl.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatal("Close waited for a silent balancer")
		}
		closedByServer(t, silent)
		if _, err := pl.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	})
}
