package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// errNXDomain is the answer NXDOMAIN: the name does not exist.
var errNXDomain = errors.New("no such domain (NXDOMAIN)")

// dnsTimeout bounds one query to one server.
const dnsTimeout = 5 * time.Second

// resolver asks DNS servers directly (miekg/dns) for MX, A and AAAA
// records, or Go's resolver when no server is known.
type resolver struct {
	servers []string      // "host:port"; empty: use fallback
	dnsUDP  *dns.Client   // UDP with EDNS0, retried over TCP when truncated
	dnsTCP  *dns.Client   // TCP
	goRes   *net.Resolver // fallback
	pool    *Pool         // keeps answers for their TTL; nil: none kept
}

// newResolver returns a resolver asking server, or the servers of
// /etc/resolv.conf when server is "".
func newResolver(server string, pool *Pool) *resolver {
	r := &resolver{pool: pool,
		dnsUDP: &dns.Client{Net: "udp", Timeout: dnsTimeout, UDPSize: 4096},
		dnsTCP: &dns.Client{Net: "tcp", Timeout: dnsTimeout},
		goRes:  net.DefaultResolver,
	}
	if server != "" {
		r.servers = []string{server}
		return r
	}
	if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
	}
	return r
}

// query asks the servers in turn for name's records of type qtype and
// returns the answer's records of that type. NXDOMAIN gives errNXDomain; a
// name without such records gives none and no error; SERVFAIL, REFUSED and
// timeouts try the next server, and fail when none answered.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	key := dnsKey(r.servers, name, qtype)
	if e, ok := r.pool.cached(key); ok {
		return e.rrs, e.err
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	var lastErr error
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		resp, _, err := r.dnsUDP.ExchangeContext(ctx, m, server)
		if err == nil && resp.Truncated {
			resp, _, err = r.dnsTCP.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			lastErr = fmt.Errorf("query %s %s: %w", dns.TypeToString[qtype], name, err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			var out []dns.RR
			for _, rr := range resp.Answer {
				if rr.Header().Rrtype == qtype {
					out = append(out, rr)
				}
			}
			r.pool.keep(key, dnsEntry{rrs: out}, answerTTL(resp, out))
			return out, nil
		case dns.RcodeNameError:
			r.pool.keep(key, dnsEntry{err: errNXDomain}, answerTTL(resp, nil))
			return nil, errNXDomain
		default:
			lastErr = fmt.Errorf("query %s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no DNS server configured")
	}
	return nil, lastErr
}

// mx returns the MX records of domain, ordered by preference with ties in
// random order (RFC 5321 5.1).
func (r *resolver) mx(ctx context.Context, domain string) ([]*net.MX, error) {
	var out []*net.MX
	if len(r.servers) == 0 {
		recs, err := r.goRes.LookupMX(ctx, domain)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			// Go does not tell NXDOMAIN from "no MX": the address lookup
			// of the implicit MX decides.
			return nil, nil
		}
		if err != nil && len(recs) == 0 {
			return nil, err
		}
		out = recs
	} else {
		rrs, err := r.query(ctx, domain, dns.TypeMX)
		if err != nil {
			return nil, err
		}
		for _, rr := range rrs {
			mx := rr.(*dns.MX)
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// addrs returns the IPv4 then the IPv6 addresses of host. A host without
// addresses gives none and no error; errNXDomain when it does not exist.
func (r *resolver) addrs(ctx context.Context, host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	if len(r.servers) == 0 {
		ips, err := r.goRes.LookupIP(ctx, "ip", host)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, errNXDomain
		}
		slices.SortStableFunc(ips, func(a, b net.IP) int {
			return boolInt(a.To4() == nil) - boolInt(b.To4() == nil)
		})
		return ips, err
	}
	var out []net.IP
	rrs, err := r.query(ctx, host, dns.TypeA)
	if err != nil {
		return nil, err
	}
	for _, rr := range rrs {
		out = append(out, rr.(*dns.A).A)
	}
	rrs, err = r.query(ctx, host, dns.TypeAAAA)
	if err != nil && len(out) == 0 {
		return nil, err
	}
	for _, rr := range rrs {
		out = append(out, rr.(*dns.AAAA).AAAA)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isNullMX reports whether the MX records are RFC 7505's null MX: a
// single record with the root as host.
func isNullMX(mxs []*net.MX) bool {
	return len(mxs) == 1 && strings.Trim(mxs[0].Host, ".") == ""
}
