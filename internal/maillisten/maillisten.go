// Package maillisten is what the mail edges (SMTP, IMAP, POP3) share in
// front of their sessions: screening a new connection (refused while the
// node is not in service and from addresses that dynamic screening
// blocks), the client's address, the loopback plaintext policy and the
// accept loops of a server's listeners.
package maillisten

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"mailcluster"
)

// KeyAllowPlaintextLoopback (Yes/No, default No) is the setting, in a
// protocol's section of the main ini file, that lets clients on the
// loopback interface log in without TLS.
const KeyAllowPlaintextLoopback = "AllowPlaintextLoopback"

// Directory is what screening needs of the domain service. It is
// satisfied by *service.Local.
type Directory interface {
	// Setting reads the main ini file.
	Setting(section, key, def string) string
	// BlockedIP tells whether dynamic screening blocks a client address.
	BlockedIP(ip string) (*mailcluster.BlockedIP, bool)
	// Serving is false on a node that is not registered in the cluster.
	Serving() bool
}

// Screen decides at connect whether a connection may go on.
type Screen struct {
	Dir Directory
	Log *slog.Logger
	// Protocol names the edge in log lines ("imap").
	Protocol string
	// NotServing is the line answered while the node is not in service.
	NotServing string
	// Blocked returns the line answered to an address dynamic screening
	// blocks.
	Blocked func(ip string) string
}

// Admit screens a new connection. A refused one is closed, after its
// refusal line when answer is true (false for an implicit-TLS listener:
// its client would not read plain text).
func (s Screen) Admit(c net.Conn, answer bool) bool {
	refusal := ""
	if !s.Dir.Serving() {
		refusal = s.NotServing
	} else {
		ip := RemoteIP(c)
		if b, blocked := s.Dir.BlockedIP(ip); blocked {
			refusal = s.Blocked(b.IP)
			s.Log.Debug(s.Protocol+": refused a blocked address", "ip", ip)
		}
	}
	if refusal == "" {
		return true
	}
	if answer {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write([]byte(refusal))
	}
	_ = c.Close()
	return false
}

// RemoteIP is the client address of c.
func RemoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// PlaintextAllowed reports whether the client of c may log in without
// TLS: only on the loopback interface, and only when [section]
// AllowPlaintextLoopback says so.
func PlaintextAllowed(c net.Conn, dir Directory, section string) bool {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback() && strings.EqualFold(dir.Setting(section, KeyAllowPlaintextLoopback, "No"), "yes")
}

// Listeners runs the accept loops of a server's listeners until Close.
// The zero value is ready to use.
type Listeners struct {
	mu     sync.Mutex
	open   map[net.Listener]struct{}
	closed bool
}

// Serve accepts connections on ln and hands each to handle until ln or
// the Listeners is closed (then it returns nil). After Close it closes
// ln and returns net.ErrClosed.
func (l *Listeners) Serve(ln net.Listener, handle func(net.Conn)) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	if l.open == nil {
		l.open = map[net.Listener]struct{}{}
	}
	l.open[ln] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.open, ln)
		l.mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		handle(c)
	}
}

// Close closes every listener being served and any served later.
func (l *Listeners) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ln := range l.open {
		ln.Close()
	}
}
