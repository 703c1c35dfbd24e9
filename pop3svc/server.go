package pop3svc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"mailcluster"
	"mailcluster/internal/maillisten"
	"mailcluster/mailstore"
	"mailcluster/service"
)

// Settings of [POP3] in the main ini file, read at every connection.
const (
	SectionPOP3 = "POP3"
	// KeyAllowPlaintextLoopback (Yes/No, default No): Yes lets clients on
	// the loopback interface log in without TLS. Everyone else must use
	// STLS or the implicit-TLS listener first.
	KeyAllowPlaintextLoopback = maillisten.KeyAllowPlaintextLoopback
	// KeyIdleTimeout (seconds, 1-86400, default 600): a connection that
	// neither receives nor sends a byte for this long is closed, without
	// removing the messages marked with DELE.
	KeyIdleTimeout = "IdleTimeout"
)

// DefaultIdleTimeout is [POP3] IdleTimeout when unset: RFC 1939's
// minimum autologout timer.
const DefaultIdleTimeout = 10 * time.Minute

// Directory is what the POP3 service needs of the domain service. It is
// satisfied by *service.Local.
type Directory interface {
	// AuthenticateMailUser checks a mail user's password through dynamic
	// screening (failures counted under protocol, blocked addresses
	// refused, frozen and disabled accounts refused). Errors:
	// EUNAUTHORIZED, EFORBIDDEN (the client address is blocked),
	// EUNAVAILABLE.
	AuthenticateMailUser(ctx context.Context, protocol, address, password string) (*mailcluster.Account, error)
	// Setting, BlockedIP and Serving: the main ini file, dynamic
	// screening and whether the node is in service.
	maillisten.Directory
}

var _ Directory = (*service.Local)(nil)

// Config configures a Server. Log is required.
type Config struct {
	// TLS serves STLS on ServePOP3 and the handshake of ServePOP3S; nil:
	// no TLS (then only loopback clients may log in, and only when [POP3]
	// AllowPlaintextLoopback allows it).
	TLS *tls.Config
	Log *slog.Logger
}

// sizeCacheEntries bounds the POP3 sizes of messages a Server remembers
// (a message file's content never changes, so an entry never goes stale).
const sizeCacheEntries = 1 << 16

// Server runs the POP3 listeners of a node over the mailbox store.
type Server struct {
	store *mailstore.Store
	dir   Directory
	cfg   Config
	sizes *lru.Cache[string, int64] // folder dir + "\x00" + message key -> POP3 size

	screen    maillisten.Screen
	listeners maillisten.Listeners

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // sessions
}

// NewServer returns a Server over store.
func NewServer(store *mailstore.Store, dir Directory, cfg Config) *Server {
	sizes, _ := lru.New[string, int64](sizeCacheEntries)
	return &Server{store: store, dir: dir, cfg: cfg, sizes: sizes, conns: map[net.Conn]struct{}{},
		screen: maillisten.Screen{Dir: dir, Log: cfg.Log, Protocol: "pop3",
			NotServing: "-ERR [SYS/TEMP] This node is not in service yet (not registered in its cluster); try another\r\n",
			Blocked: func(ip string) string {
				return fmt.Sprintf("-ERR [SYS/PERM] Your address %s is blocked by dynamic screening\r\n", ip)
			}}}
}

// ServePOP3 serves POP3 with STLS on ln until Close.
func (s *Server) ServePOP3(ln net.Listener) error { return s.serve(ln, false) }

// ServePOP3S serves POP3 over implicit TLS (port 995 style) on ln until
// Close. It needs Config.TLS.
func (s *Server) ServePOP3S(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("pop3svc: implicit TLS needs a TLS configuration")
	}
	return s.serve(ln, true)
}

// serve accepts connections (with the real client's address when they
// come through a load balancer listed in [Network] ProxyProtocolFrom,
// whose PROXY header comes before any TLS), refuses at connect those
// from addresses that
// dynamic screening blocks (and all while the node is not in service),
// and runs a session for each other one.
func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.listeners.Serve(maillisten.NewProxyListener(ln, s.dir, s.cfg.Log), func(c net.Conn) {
		if !s.screen.Admit(c, !implicitTLS) {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.newSession(c, implicitTLS).run()
		}()
	})
}

// Close stops the listeners, closes every connection and returns once
// every session has ended. Sessions cut off this way remove nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.listeners.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// idleTimeout is [POP3] IdleTimeout (DefaultIdleTimeout when unset or
// out of range).
func (s *Server) idleTimeout() time.Duration {
	v := strings.TrimSpace(s.dir.Setting(SectionPOP3, KeyIdleTimeout, ""))
	if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 86400 {
		return time.Duration(n) * time.Second
	}
	if v != "" {
		s.cfg.Log.Warn("pop3: [POP3] IdleTimeout is not a number of seconds from 1 to 86400; using the default", "value", v)
	}
	return DefaultIdleTimeout
}

// deadlineConn renews the idle deadline before every read and write, so
// a connection is closed after the idle timeout without a byte either
// way (a long RETR to a slow reader keeps it open as long as it moves).
type deadlineConn struct {
	net.Conn
	idle time.Duration
}

func (c deadlineConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

func remoteIP(c net.Conn) string { return maillisten.RemoteIP(c) }

// plaintextAllowed reports whether a client may log in without TLS: only
// on the loopback interface, and only when [POP3] AllowPlaintextLoopback
// says so.
func (s *Server) plaintextAllowed(c net.Conn) bool {
	return maillisten.PlaintextAllowed(c, s.dir, SectionPOP3)
}
