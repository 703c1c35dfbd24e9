package dnstest_test

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailcluster/internal/dnstest"
)

func query(t *testing.T, s *dnstest.Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("exchange %s %s: %v", network, name, err)
	}
	return r
}

func TestMX(t *testing.T) {
	s := dnstest.Start(t)
	s.SetMX("Example.COM.", dnstest.MX{Host: "mx1.example.com", Pref: 10}, dnstest.MX{Host: "mx2.example.com.", Pref: 20})
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, s, network, "example.com", dns.TypeMX)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("%s: rcode %d answers %v", network, r.Rcode, r.Answer)
		}
		mx := r.Answer[0].(*dns.MX)
		if mx.Mx != "mx1.example.com." || mx.Preference != 10 {
			t.Fatalf("%s: first MX %v", network, mx)
		}
	}
	// Replaced, then removed: the name stays and answers no data.
	s.SetMX("example.com", dnstest.MX{Host: "mx3.example.com", Pref: 5})
	if r := query(t, s, "udp", "EXAMPLE.com", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "mx3.example.com." {
		t.Fatalf("replaced: %v", r.Answer)
	}
	s.SetMX("example.com")
	if r := query(t, s, "udp", "example.com", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("removed: rcode %d %v", r.Rcode, r.Answer)
	}
	if s.Queries() != 4 {
		t.Fatalf("queries %d, want 4", s.Queries())
	}
}

func TestAddresses(t *testing.T) {
	s := dnstest.Start(t)
	s.SetA("mx.example.org", "127.0.0.2", "::1", "127.0.0.3")
	r := query(t, s, "udp", "mx.example.org", dns.TypeA)
	var got []string
	for _, rr := range r.Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	if strings.Join(got, ",") != "127.0.0.2,127.0.0.3" {
		t.Fatalf("A %v", got)
	}
	r = query(t, s, "udp", "mx.example.org", dns.TypeAAAA)
	if len(r.Answer) != 1 || !r.Answer[0].(*dns.AAAA).AAAA.Equal(net.ParseIP("::1")) {
		t.Fatalf("AAAA %v", r.Answer)
	}
	// The system resolver path works too (net.Resolver dialing the server).
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr)
	}}
	ips, err := res.LookupHost(context.Background(), "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ips)
	if strings.Join(ips, ",") != "127.0.0.2,127.0.0.3,::1" {
		t.Fatalf("LookupHost %v", ips)
	}
}

func TestTXTLong(t *testing.T) {
	s := dnstest.Start(t)
	long := strings.Repeat("k", 600)
	s.SetTXT("sel._domainkey.example.com", "v=DKIM1; p="+long, "other")
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, s, network, "SEL._domainkey.example.com.", dns.TypeTXT)
		if len(r.Answer) != 2 {
			t.Fatalf("%s: %v", network, r.Answer)
		}
		parts := r.Answer[0].(*dns.TXT).Txt
		if len(parts) != 3 || len(parts[0]) != 255 || strings.Join(parts, "") != "v=DKIM1; p="+long {
			t.Fatalf("%s: parts %d %v", network, len(parts), parts)
		}
	}
	// Without EDNS0 the UDP answer is truncated (TC set), for the client
	// to retry over TCP.
	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("sel._domainkey.example.com.", dns.TypeTXT)
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil || !r.Truncated {
		t.Fatalf("plain UDP: truncated %v, err %v", r != nil && r.Truncated, err)
	}
	// The Go resolver joins the character strings back.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr)
	}}
	txt, err := res.LookupTXT(context.Background(), "sel._domainkey.example.com")
	if err != nil || len(txt) != 2 || txt[0] != "v=DKIM1; p="+long {
		t.Fatalf("LookupTXT %v %v", txt, err)
	}
}

func TestErrors(t *testing.T) {
	s := dnstest.Start(t)
	if r := query(t, s, "udp", "unknown.example", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: rcode %d", r.Rcode)
	}
	s.SetA("gone.example", "127.0.0.1")
	s.SetNXDomain("gone.example")
	if r := query(t, s, "udp", "gone.example", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
		t.Fatalf("nxdomain: rcode %d %v", r.Rcode, r.Answer)
	}
	s.SetServFail("broken.example")
	if r := query(t, s, "tcp", "broken.example", dns.TypeMX); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("servfail: rcode %d", r.Rcode)
	}
	s.SetMX("broken.example", dnstest.MX{Host: "mx.broken.example", Pref: 1})
	if r := query(t, s, "udp", "broken.example", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after SetMX: rcode %d %v", r.Rcode, r.Answer)
	}
}

func TestConcurrent(t *testing.T) {
	s := dnstest.Start(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				s.SetA("c.example", "127.0.0."+string(rune('1'+i)))
				c := &dns.Client{Timeout: 5 * time.Second}
				m := new(dns.Msg)
				m.SetQuestion("c.example.", dns.TypeA)
				if _, _, err := c.Exchange(m, s.Addr); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s.Queries() != 160 {
		t.Fatalf("queries %d, want 160", s.Queries())
	}
}
