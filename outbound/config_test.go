package outbound_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/outbound"
)

func TestConfigValidate(t *testing.T) {
	sh := func(host string, port int, mode outbound.TLSMode, user, pass string) *outbound.Smarthost {
		return &outbound.Smarthost{Host: host, Port: port, TLS: mode, Username: user, Password: pass}
	}
	for _, tt := range []struct {
		name string
		cfg  outbound.Config
		bad  string // part of the error, "" for valid
	}{
		{"OK", outbound.Config{}, ""},
		{"OKSmarthost", outbound.Config{HeloName: "mx.example.com", DNSServer: "127.0.0.1:53",
			Smarthost: sh("relay.example.com", 587, outbound.TLSStartTLS, "u", "p")}, ""},
		{"OKSmarthostIPv6", outbound.Config{Smarthost: sh("::1", 0, "", "", "")}, ""},
		{"ErrHelo", outbound.Config{HeloName: "mx.example.com\r\nMAIL FROM:<x>"}, "EHLO name"},
		{"ErrHeloSpace", outbound.Config{HeloName: "a b"}, "EHLO name"},
		{"ErrDNSServer", outbound.Config{DNSServer: "127.0.0.1"}, "DNS server"},
		{"ErrPort", outbound.Config{Port: 70000}, "port"},
		{"ErrSmarthostHost", outbound.Config{Smarthost: sh("", 0, "", "", "")}, "smarthost"},
		{"ErrSmarthostHostSpace", outbound.Config{Smarthost: sh("relay example", 0, "", "", "")}, "smarthost"},
		{"ErrSmarthostPort", outbound.Config{Smarthost: sh("relay.example", -1, "", "", "")}, "port"},
		{"ErrTLSMode", outbound.Config{Smarthost: sh("relay.example", 0, "ssl", "", "")}, "TLS mode"},
		{"ErrPasswordWithoutUser", outbound.Config{Smarthost: sh("relay.example", 0, "", "", "secret-pw")}, "user name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) || mailcluster.ErrorCode(err) != mailcluster.EINVALID {
				t.Fatalf("err %v, want one about %q", err, tt.bad)
			}
			if strings.Contains(err.Error(), "secret-pw") {
				t.Fatalf("the error shows the password: %v", err)
			}
			// A client from an invalid config sends nothing and fails
			// temporarily.
			rs := outbound.New(tt.cfg).Deliver(context.Background(), "dest.test", message("b@dest.test"))
			if len(rs) != 1 || rs[0].Delivered || rs[0].Permanent {
				t.Fatalf("results %+v", rs)
			}
		})
	}
}
