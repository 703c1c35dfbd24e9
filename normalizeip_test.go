package mailcluster_test

import (
	"testing"

	"mailcluster"
)

func TestNormalizeIP(t *testing.T) {
	ok := map[string]string{
		"192.0.2.1":             "192.0.2.1",
		" 192.0.2.1 ":           "192.0.2.1",
		"::ffff:192.0.2.1":      "192.0.2.1",
		"2001:DB8::1":           "2001:db8::1",
		"2001:0db8:0:0:0:0:0:1": "2001:db8::1",
		"2001:db8::1":           "2001:db8::1",
		"fe80::1%eth0":          "fe80::1",
		"::1":                   "::1",
		"0:0:0:0:0:0:0:1":       "::1",
		"::ffff:c000:0201":      "192.0.2.1",
	}
	for in, want := range ok {
		if got, err := mailcluster.NormalizeIP(in); err != nil || got != want {
			t.Errorf("NormalizeIP(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "192.0.2", "example.com", "192.0.2.1:25", "01.2.3.4"} {
		if got, err := mailcluster.NormalizeIP(in); err == nil {
			t.Errorf("NormalizeIP(%q) = %q, want an error", in, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = mailcluster.NormalizeIP("192.0.2.1") }); n != 0 {
		t.Errorf("%v allocations for a canonical address", n)
	}
}
