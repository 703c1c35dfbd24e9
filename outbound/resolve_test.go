package outbound_test

import (
	"context"
	"net"
	"testing"
	"time"

	"mailcluster/internal/dnstest"
	"mailcluster/outbound"
)

// TestGoResolverFallback runs the DNS cases through Go's resolver, used
// when /etc/resolv.conf cannot be read.
func TestGoResolverFallback(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dns.Addr)
	}}
	c := outbound.NewWithGoResolver(outbound.Config{HeloName: "client.test", Port: mx.Port(),
		ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second}, res)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	dns.SetA("mx.dest.test", "127.0.0.2")
	dns.SetA("implicit.test", "127.0.0.2")
	dns.SetMX("null.test", dnstest.MX{Host: ".", Pref: 0})
	dns.SetNXDomain("gone.test")
	for _, tt := range []struct {
		domain    string
		delivered bool
		enhanced  string
	}{
		{"dest.test", true, ""},
		{"implicit.test", true, ""},
		{"null.test", false, "5.1.10"},
		{"gone.test", false, "5.1.2"},
	} {
		r := one(t, c.Deliver(context.Background(), tt.domain, message("b@"+tt.domain)))
		if r.Delivered != tt.delivered || !tt.delivered && (!r.Permanent || r.Enhanced != tt.enhanced) {
			t.Errorf("%s: %+v", tt.domain, r)
		}
	}
	if n := len(mx.Got()); n != 2 {
		t.Fatalf("the server got %d messages, want 2", n)
	}
}
