package maillisten

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"mailcluster"
)

// DefaultProxyHeaderTimeout bounds how long a trusted load balancer may
// take to send its PROXY header before its connection is closed.
const DefaultProxyHeaderTimeout = 5 * time.Second

// ProxyListener reads the PROXY protocol header (v1 or v2, HAProxy's
// specification) of connections from the load balancers listed in
// [Network] ProxyProtocolFrom, so that the connections it returns carry
// the real client's address (RemoteAddr): screening, connection caps,
// Received headers, the login failure detector and logs all see it.
//
// The list is read at every accept. From a listed address the header is
// required (a connection without one, with a malformed one or with a
// source that is not a TCP address is closed); it is read with a deadline
// in a goroutine of its own, so a slow or silent peer never holds up the
// accept loop. From any other address nothing is read: the connection is
// an ordinary client with its own address, whatever it sends (a "PROXY"
// line is then a protocol error to the session), so no client can claim
// another's address. An implicit-TLS listener wraps the connections
// after this: the header comes before the TLS handshake.
type ProxyListener struct {
	net.Listener
	dir Directory
	log *slog.Logger
	// HeaderTimeout is the deadline of a PROXY header; 0 means
	// DefaultProxyHeaderTimeout. Set it before the first Accept.
	HeaderTimeout time.Duration

	start   sync.Once
	ready   chan net.Conn
	done    chan struct{}
	closing sync.Once
	errMu   sync.Mutex
	err     error // why the accept loop stopped

	trustMu  sync.Mutex
	trustRaw string
	trusted  []netip.Prefix

	pendMu  sync.Mutex
	pending map[net.Conn]struct{} // connections whose header is being read
	wg      sync.WaitGroup
}

// NewProxyListener wraps ln. dir gives the setting; log receives the
// connections it closes and a bad setting (at warn level).
func NewProxyListener(ln net.Listener, dir Directory, log *slog.Logger) *ProxyListener {
	return &ProxyListener{Listener: ln, dir: dir, log: log,
		ready: make(chan net.Conn), done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
}

// Accept returns the next connection, its PROXY header (if its peer is
// trusted) already read. After Close it returns net.ErrClosed.
func (l *ProxyListener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		return nil, l.err
	}
}

// Close closes the listener and every connection whose header is still
// being read, and waits for its goroutines.
func (l *ProxyListener) Close() error {
	l.start.Do(func() {}) // an accept loop not started yet never starts
	err := l.Listener.Close()
	l.stop(net.ErrClosed)
	l.pendMu.Lock()
	for c := range l.pending {
		c.Close()
	}
	l.pendMu.Unlock()
	l.wg.Wait()
	return err
}

// stop ends Accept with err (the first reason wins).
func (l *ProxyListener) stop(err error) {
	l.closing.Do(func() {
		l.errMu.Lock()
		l.err = err
		l.errMu.Unlock()
		close(l.done)
	})
}

func (l *ProxyListener) acceptLoop() {
	defer l.wg.Done()
	backoff := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, net.ErrClosed) {
				// A passing shortage (file descriptors): wait a little.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
					return
				}
			}
			if errors.Is(err, net.ErrClosed) {
				err = net.ErrClosed
			}
			l.stop(err)
			return
		}
		backoff = 0
		if !l.trustedPeer(c) {
			l.deliver(c)
			continue
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.readHeader(c)
	}
}

// readHeader reads the PROXY header of a connection from a trusted peer
// and delivers the connection, or closes it.
func (l *ProxyListener) readHeader(c net.Conn) {
	defer l.wg.Done()
	timeout := l.HeaderTimeout
	if timeout <= 0 {
		timeout = DefaultProxyHeaderTimeout
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(timeout))
	h := pc.ProxyHeader()
	l.untrack(c)
	reason := ""
	switch {
	case h == nil:
		reason = "no valid PROXY header"
	case h.Command.IsProxy() && h.TransportProtocol != proxyproto.UNSPEC:
		if _, _, ok := h.TCPAddrs(); !ok {
			reason = "PROXY header without TCP addresses"
		}
	}
	if reason != "" {
		l.log.Warn("proxy: closed a connection from a listed load balancer", "peer", RemoteIP(c), "reason", reason)
		c.Close()
		return
	}
	l.deliver(pc)
}

// deliver hands c to Accept, or closes it once the listener is closed.
func (l *ProxyListener) deliver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *ProxyListener) track(c net.Conn) bool {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	select {
	case <-l.done:
		return false
	default:
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *ProxyListener) untrack(c net.Conn) {
	l.pendMu.Lock()
	delete(l.pending, c)
	l.pendMu.Unlock()
}

// trustedPeer reports whether c comes from an address listed in
// [Network] ProxyProtocolFrom (read now; parsed again only when it
// changed). A list that does not parse trusts nobody.
func (l *ProxyListener) trustedPeer(c net.Conn) bool {
	raw := l.dir.Setting(mailcluster.SectionNetwork, mailcluster.KeyProxyProtocolFrom, "")
	l.trustMu.Lock()
	if raw != l.trustRaw {
		p, err := mailcluster.ParsePrefixList(raw)
		if err != nil {
			l.log.Warn("proxy: [Network] ProxyProtocolFrom does not parse; no PROXY header is read", "err", mailcluster.ErrorMessage(err))
		}
		l.trustRaw, l.trusted = raw, p
	}
	trusted := l.trusted
	l.trustMu.Unlock()
	if len(trusted) == 0 {
		return false
	}
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
