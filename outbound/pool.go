package outbound

import (
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// Limits of the Pool, after Postfix's connection cache
// (smtp_connection_cache_time_limit, smtp_connection_reuse_time_limit)
// and its DNS caching resolver.
const (
	// sessionIdle is how long a session waits open for the next message.
	sessionIdle = 2 * time.Second
	// sessionMaxAge and sessionMaxUses bound the reuse of one session.
	sessionMaxAge  = 300 * time.Second
	sessionMaxUses = 100
	// sessionsPerKey bounds the idle sessions to one host and address.
	sessionsPerKey = 10
	// dnsMaxTTL caps how long an answer is kept, dnsNegativeTTL how long
	// a name that does not exist (or has no such records) is remembered,
	// dnsMaxEntries how many answers are kept.
	dnsMaxTTL      = 300 * time.Second
	dnsNegativeTTL = 60 * time.Second
	dnsMaxEntries  = 10000
)

// Pool holds what the Clients of one node share across deliveries:
// sessions left open after a message was sent, taken by the next message
// to the same host and address (with the same TLS mode, EHLO name and
// smarthost login), and DNS answers for their time to live. Sessions wait
// at most 2 s, serve at most 100 messages and live at most 5 minutes; a
// session found closed by the server when reused is replaced by a new one
// without counting as an attempt. The zero Config.Pool (nil) shares
// nothing: every delivery opens its own session and asks DNS. A Pool is
// safe for concurrent use.
type Pool struct {
	mu     sync.Mutex
	idle   map[string][]*pooled
	closed bool
	dns    map[string]dnsEntry
}

// NewPool returns an empty Pool.
func NewPool() *Pool {
	return &Pool{idle: map[string][]*pooled{}, dns: map[string]dnsEntry{}}
}

// pooled is an open SMTP session between transactions.
type pooled struct {
	key   string
	sc    *smtp.Client
	conn  net.Conn // the connection under sc (TLS or not), for deadlines
	uses  int
	born  time.Time
	timer *time.Timer
}

// quit ends s politely, within a few seconds.
func (s *pooled) quit() {
	s.sc.CommandTimeout = 5 * time.Second
	_ = s.sc.Quit()
	_ = s.sc.Close()
}

// take returns an idle session for key, or nil.
func (p *Pool) take(key string) *pooled {
	if p == nil {
		return nil
	}
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		s := list[len(list)-1]
		p.setIdle(key, list[:len(list)-1])
		p.mu.Unlock()
		s.timer.Stop() // its function finds it gone and leaves it alone
		if time.Since(s.born) < sessionMaxAge {
			return s
		}
		s.quit()
	}
}

// put keeps s for the next message to its key, or ends it when it has
// served enough, too many wait already, or the pool is closed.
func (p *Pool) put(s *pooled) {
	s.uses++
	p.mu.Lock()
	if p.closed || s.uses >= sessionMaxUses || time.Since(s.born) >= sessionMaxAge || len(p.idle[s.key]) >= sessionsPerKey {
		p.mu.Unlock()
		s.quit()
		return
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	s.timer = time.AfterFunc(sessionIdle, func() { p.expire(s) })
	p.mu.Unlock()
}

// expire ends s after its idle time, unless it was taken meanwhile.
func (p *Pool) expire(s *pooled) {
	p.mu.Lock()
	list := p.idle[s.key]
	i := -1
	for j, o := range list {
		if o == s {
			i = j
			break
		}
	}
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.setIdle(s.key, append(list[:i:i], list[i+1:]...))
	p.mu.Unlock()
	s.quit()
}

// setIdle stores list as key's idle sessions; p.mu is held.
func (p *Pool) setIdle(key string, list []*pooled) {
	if len(list) == 0 {
		delete(p.idle, key)
		return
	}
	p.idle[key] = list
}

// Idle returns the number of sessions waiting open.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close ends every idle session and keeps no more; DNS answers are
// dropped.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for _, l := range p.idle {
		all = append(all, l...)
	}
	p.idle = map[string][]*pooled{}
	p.dns = map[string]dnsEntry{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		s.timer.Stop()
		wg.Add(1)
		go func() { defer wg.Done(); s.quit() }()
	}
	wg.Wait()
}

// dnsEntry is a kept answer: its records, or errNXDomain.
type dnsEntry struct {
	rrs     []dns.RR
	err     error
	expires time.Time
}

// dnsKey names an answer: the servers asked, the type and the name.
func dnsKey(servers []string, name string, qtype uint16) string {
	return strings.Join(servers, ",") + " " + dns.TypeToString[qtype] + " " + strings.ToLower(dns.Fqdn(name))
}

// cached returns a kept answer that has not expired.
func (p *Pool) cached(key string) (dnsEntry, bool) {
	if p == nil {
		return dnsEntry{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.dns[key]
	if !ok {
		return dnsEntry{}, false
	}
	if !time.Now().Before(e.expires) {
		delete(p.dns, key)
		return dnsEntry{}, false
	}
	return e, true
}

// keep stores an answer for ttl (capped); nothing with a ttl of 0, and
// nothing more once dnsMaxEntries answers are kept and none has expired.
func (p *Pool) keep(key string, e dnsEntry, ttl time.Duration) {
	if p == nil || ttl <= 0 {
		return
	}
	e.expires = time.Now().Add(min(ttl, dnsMaxTTL))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if _, ok := p.dns[key]; !ok && len(p.dns) >= dnsMaxEntries {
		now := time.Now()
		for k, o := range p.dns {
			if !now.Before(o.expires) {
				delete(p.dns, k)
			}
		}
		if len(p.dns) >= dnsMaxEntries {
			return
		}
	}
	p.dns[key] = e
}

// answerTTL is how long an answer may be kept: the smallest TTL of its
// records; for an answer without records (NXDOMAIN or no such type), the
// negative TTL of the zone's SOA in the authority section (RFC 2308),
// capped at dnsNegativeTTL, and 0 (not kept) without one.
func answerTTL(resp *dns.Msg, rrs []dns.RR) time.Duration {
	if len(rrs) > 0 {
		ttl := rrs[0].Header().Ttl
		for _, rr := range rrs[1:] {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return time.Duration(ttl) * time.Second
	}
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Minttl, soa.Hdr.Ttl))*time.Second, dnsNegativeTTL)
		}
	}
	return 0
}
