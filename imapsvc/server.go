package imapsvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailcluster"
	"mailcluster/internal/maillisten"
	"mailcluster/mailstore"
	"mailcluster/service"
)

// Settings of [IMAP] in the main ini file.
const (
	SectionIMAP = "IMAP"
	// KeyAllowPlaintextLoopback (Yes/No, default No): Yes lets clients on
	// the loopback interface log in without TLS. Everyone else must use
	// STARTTLS or the implicit-TLS listener first (LOGINDISABLED until
	// then).
	KeyAllowPlaintextLoopback = maillisten.KeyAllowPlaintextLoopback
)

// Directory is what the IMAP service needs of the domain service. It is
// satisfied by *service.Local.
type Directory interface {
	// AuthenticateMailUser checks a mail user's password through dynamic
	// screening (failures counted under protocol, blocked addresses
	// refused, frozen and disabled accounts refused). Errors:
	// EUNAUTHORIZED, EFORBIDDEN (the client address is blocked),
	// EUNAVAILABLE.
	AuthenticateMailUser(ctx context.Context, protocol, address, password string) (*mailcluster.Account, error)
	// LookupAccount returns an account by address. Errors: EINVALID, ENOTFOUND.
	LookupAccount(address string) (*mailcluster.Account, error)
	// Setting, BlockedIP and Serving: the main ini file, dynamic
	// screening and whether the node is in service.
	maillisten.Directory
}

var _ Directory = (*service.Local)(nil)

// Config configures a Server. Log is required.
type Config struct {
	// TLS serves STARTTLS on ServeIMAP and the handshake of ServeIMAPS;
	// nil: no TLS (then only loopback clients may log in, and only when
	// [IMAP] AllowPlaintextLoopback allows it).
	TLS *tls.Config
	Log *slog.Logger
	// Hub tells a selected folder's sessions of changes made on this node
	// (and, later, on others); it should be the Hub the Store publishes
	// on. nil: changes are seen by rescanning only.
	Hub mailstore.Hub
	// Rescan is how often a selected folder is read again while a session
	// idles or polls, to see changes that reached no Hub (other
	// processes, other nodes); 0 means 2 s.
	Rescan time.Duration
	// HeaderCacheBytes bounds the memory of the parsed headers and
	// envelopes kept for FETCH ENVELOPE and SEARCH; 0 means
	// DefaultHeaderCacheBytes.
	HeaderCacheBytes int64
}

// Server runs the IMAP listeners of a node over the mailbox store.
type Server struct {
	store   *mailstore.Store
	dir     Directory
	cfg     Config
	boxes   *registry
	headers *headerCache

	secure *imapserver.Server // authentication only over TLS
	plain  *imapserver.Server // loopback clients allowed to log in without TLS
	secLn  *chanListener
	plLn   *chanListener

	screen    maillisten.Screen
	listeners maillisten.Listeners

	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	sessions int
	idle     *sync.Cond // signalled when sessions drops to 0
	closed   bool
	wg       sync.WaitGroup
}

// capabilities are what the server announces (besides what imapserver adds
// itself: STARTTLS, AUTH=PLAIN, LOGINDISABLED, SASL-IR, LITERAL-, ENABLE,
// IDLE, UNSELECT, UTF8=ACCEPT and APPENDLIMIT=n).
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {},
	imap.CapChildren: {}, imap.CapSpecialUse: {}, imap.CapLiteralPlus: {},
	imap.CapQuota: {}, "QUOTA=RES-" + imap.Cap(imap.QuotaResourceStorage): {}, "QUOTA=RES-" + imap.Cap(imap.QuotaResourceMessage): {},
}

// NewServer returns a Server over store. Settings are read at every
// connection and login.
func NewServer(store *mailstore.Store, dir Directory, cfg Config) *Server {
	if cfg.Rescan <= 0 {
		cfg.Rescan = 2 * time.Second
	}
	s := &Server{store: store, dir: dir, cfg: cfg, conns: map[*trackedConn]struct{}{}}
	s.screen = maillisten.Screen{Dir: dir, Log: cfg.Log, Protocol: "imap",
		NotServing: "* BYE [UNAVAILABLE] This node is not in service yet (not registered in its cluster); try another\r\n",
		Blocked: func(ip string) string {
			return fmt.Sprintf("* BYE [UNAVAILABLE] Your address %s is blocked by dynamic screening\r\n", ip)
		}}
	s.idle = sync.NewCond(&s.mu)
	s.headers = newHeaderCache(cfg.HeaderCacheBytes)
	s.boxes = newRegistry(cfg.Hub, cfg.Rescan, cfg.Log, s.headers)
	logger := slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)
	opts := func(insecure bool) *imapserver.Options {
		return &imapserver.Options{
			NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.closed {
					return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
				}
				s.sessions++
				return &session{srv: s, conn: c, log: cfg.Log}, nil, nil
			},
			Caps:         capabilities,
			Logger:       logger,
			TLSConfig:    cfg.TLS,
			InsecureAuth: insecure,
		}
	}
	s.secure, s.plain = imapserver.New(opts(false)), imapserver.New(opts(true))
	s.secLn, s.plLn = newChanListener(), newChanListener()
	s.goServe(func() { _ = s.secure.Serve(s.secLn) })
	s.goServe(func() { _ = s.plain.Serve(s.plLn) })
	return s
}

func (s *Server) goServe(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// ServeIMAP serves IMAP with STARTTLS on ln until Close.
func (s *Server) ServeIMAP(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeIMAPS serves IMAP over implicit TLS (port 993 style) on ln until
// Close. It needs Config.TLS.
func (s *Server) ServeIMAPS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imapsvc: implicit TLS needs a TLS configuration")
	}
	return s.serve(ln, true)
}

// serve accepts connections (with the real client's address when they
// come through a load balancer listed in [Network] ProxyProtocolFrom,
// whose PROXY header comes before any TLS), refuses at connect those
// from addresses
// that dynamic screening blocks (and all while the node is not in
// service), and hands the others to the IMAP server that applies to them.
func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.listeners.Serve(maillisten.NewProxyListener(ln, s.dir, s.cfg.Log), func(c net.Conn) {
		if !s.screen.Admit(c, !implicitTLS) {
			return
		}
		if c = s.track(c); c == nil {
			return
		}
		switch {
		case implicitTLS:
			s.secLn.push(tls.Server(c, s.cfg.TLS))
		case maillisten.PlaintextAllowed(c, s.dir, SectionIMAP):
			s.plLn.push(c)
		default:
			s.secLn.push(c)
		}
	})
}

// Close stops the listeners, closes every connection and returns once
// every session has ended. (imapserver's own Close is not used: it may
// race with a Serve that is starting.)
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.listeners.Close()
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	s.secLn.Close()
	s.plLn.Close()
	s.wg.Wait()
	s.mu.Lock()
	for s.sessions > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
	s.boxes.close()
	return nil
}

// sessionEnded counts a session's end (session.Close).
func (s *Server) sessionEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions--; s.sessions == 0 {
		s.idle.Broadcast()
	}
}

// trackedConn is an accepted connection, closed by Server.Close.
type trackedConn struct {
	net.Conn
	srv  *Server
	once sync.Once
}

// track registers a new connection; nil (closed) once the server is closed.
func (s *Server) track(c net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s}
	s.conns[tc] = struct{}{}
	return tc
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	})
	return err
}

// chanListener is the net.Listener an imapserver.Server serves: the
// connections the Server's own accept loops hand it.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func remoteIP(c net.Conn) string { return maillisten.RemoteIP(c) }
