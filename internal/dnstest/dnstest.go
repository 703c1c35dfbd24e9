// Package dnstest is an authoritative DNS server for tests (RFC 1035): it
// answers MX, A, AAAA and TXT queries from records the test sets, on
// 127.0.0.1 over UDP and TCP on one random port.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string
	Pref uint16
}

// zone holds the records of one name.
type zone struct {
	mx       []MX
	a        []net.IP
	aaaa     []net.IP
	txt      []string
	nxdomain bool
	servfail bool
}

// Server answers DNS queries from the records set by the test. Every method
// is safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr string

	mu      sync.Mutex
	names   map[string]*zone
	queries atomic.Int64
	udp     *dns.Server
	tcp     *dns.Server
}

// TTL is the time to live of every answer, in seconds.
const TTL = 60

// Start starts a server on a random port of 127.0.0.1 (UDP and TCP); it is
// stopped by t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{names: map[string]*zone{}}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The UDP port is random; TCP must get the same one, which another
	// process may hold: try a few times.
	for range 20 {
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatalf("dnstest: listen tcp: %v", err)
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: notify}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("dnstest: server did not start")
		}
	}
	t.Cleanup(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
	return s
}

// canonical returns name in lower case with a trailing dot.
func canonical(name string) string {
	return dns.Fqdn(strings.ToLower(name))
}

// zone returns the records of name, created when missing; s.mu is held.
func (s *Server) zone(name string) *zone {
	n := canonical(name)
	z := s.names[n]
	if z == nil {
		z = &zone{}
		s.names[n] = z
	}
	return z
}

// SetMX replaces the MX records of domain; no mx removes them.
func (s *Server) SetMX(domain string, mx ...MX) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(domain)
	z.mx = append([]MX(nil), mx...)
	z.nxdomain, z.servfail = false, false
}

// SetA replaces the address records of host: each IP becomes an A or an
// AAAA record by its family. No ips removes both. An invalid IP panics.
func (s *Server) SetA(host string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(host)
	z.a, z.aaaa = nil, nil
	for _, v := range ips {
		ip := net.ParseIP(v)
		if ip == nil {
			panic("dnstest: invalid IP " + v)
		}
		if ip4 := ip.To4(); ip4 != nil {
			z.a = append(z.a, ip4)
		} else {
			z.aaaa = append(z.aaaa, ip)
		}
	}
	z.nxdomain, z.servfail = false, false
}

// SetTXT replaces the TXT records of name, one record per string; strings
// longer than 255 bytes are split into 255-byte character strings.
func (s *Server) SetTXT(name string, txt ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(name)
	z.txt = append([]string(nil), txt...)
	z.nxdomain, z.servfail = false, false
}

// SetNXDomain makes every query for name answer NXDOMAIN (until a Set* of
// records for name).
func (s *Server) SetNXDomain(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(name)
	*z = zone{nxdomain: true}
}

// SetServFail makes every query for name answer SERVFAIL (until a Set* of
// records for name).
func (s *Server) SetServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(name)
	*z = zone{servfail: true}
}

// Queries returns how many queries the server received.
func (s *Server) Queries() int {
	return int(s.queries.Load())
}

// splitTXT cuts v into character strings of at most 255 bytes.
func splitTXT(v string) []string {
	if v == "" {
		return []string{""}
	}
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// serve answers one query. Names without records answer NXDOMAIN; names
// with records but none of the asked type answer NOERROR with no data;
// both negative answers carry an SOA record with TTL as its minimum.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
	}
	s.mu.Lock()
	z := s.names[name]
	switch {
	case z == nil || z.nxdomain:
		m.Rcode = dns.RcodeNameError
	case z.servfail:
		m.Rcode = dns.RcodeServerFailure
	default:
		if q.Qtype == dns.TypeMX || q.Qtype == dns.TypeANY {
			for _, mx := range z.mx {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: mx.Pref, Mx: dns.Fqdn(mx.Host)})
			}
		}
		if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
			for _, ip := range z.a {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
			}
		}
		if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
			for _, ip := range z.aaaa {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
			}
		}
		if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
			for _, v := range z.txt {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(v)})
			}
		}
	}
	s.mu.Unlock()
	if len(m.Answer) == 0 && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
		// A negative answer carries the zone's SOA, whose TTL and minimum
		// bound how long resolvers remember it (RFC 2308).
		m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
			Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: TTL})
	}
	// A UDP answer too large for the client's buffer is truncated; the
	// client retries over TCP.
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}
