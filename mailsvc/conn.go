package mailsvc

import (
	"net"
	"sync"
	"time"
)

// connLimiter counts the open SMTP connections of a node, in total and per
// client address. Both listeners of a Server share one.
type connLimiter struct {
	mu    sync.Mutex
	total int64
	perIP map[string]int64
}

// acquire counts a new connection from ip unless that would exceed
// maxTotal connections in all or maxPerIP from ip. It returns the
// function that releases the count; calling it more than once releases
// once.
func (l *connLimiter) acquire(ip string, maxTotal, maxPerIP int64) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= maxTotal || l.perIP[ip] >= maxPerIP {
		return nil, false
	}
	if l.perIP == nil {
		l.perIP = map[string]int64{}
	}
	l.total++
	l.perIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perIP[ip]--; l.perIP[ip] <= 0 {
				delete(l.perIP, ip)
			}
		})
	}, true
}

// limitedConn is an accepted SMTP connection. Close releases its place in
// the connLimiter (once, however often it is called). With idle > 0, every
// Read and Write must make progress within idle: the deadline of each is
// the earlier of now+idle and the deadline the SMTP server set (go-smtp's
// ReadTimeout and WriteTimeout, which bound a whole command line or DATA
// transfer), so a client that stops sending, or stops reading, is dropped
// after idle while a slow but steady DATA transfer goes on.
type limitedConn struct {
	net.Conn
	idle    time.Duration
	release func()

	mu              sync.Mutex
	readDL, writeDL time.Time // set by the server; zero: none
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		c.mu.Lock()
		dl := earlier(c.readDL, time.Now().Add(c.idle))
		c.mu.Unlock()
		if err := c.Conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *limitedConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.mu.Lock()
		dl := earlier(c.writeDL, time.Now().Add(c.idle))
		c.mu.Unlock()
		if err := c.Conn.SetWriteDeadline(dl); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDL, c.writeDL = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDL = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDL = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// earlier returns the earlier of a deadline (zero: none) and t.
func earlier(dl, t time.Time) time.Time {
	if !dl.IsZero() && dl.Before(t) {
		return dl
	}
	return t
}
