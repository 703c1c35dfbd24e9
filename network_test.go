package mailcluster_test

import (
	"fmt"
	"strings"
	"testing"

	"mailcluster"
)

// TestParsePrefixList pins the list syntax of [Network] ProxyProtocolFrom:
// commas or spaces, addresses and prefixes, v4-mapped addresses as IPv4.
func TestParsePrefixList(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "[]"},
		{"10.0.0.10", "[10.0.0.10/32]"},
		{" 10.0.0.10, 192.168.1.7/24  ::1,2001:db8::/32 ", "[10.0.0.10/32 192.168.1.0/24 ::1/128 2001:db8::/32]"},
		{"::ffff:10.0.0.1", "[10.0.0.1/32]"},
		{"::ffff:10.0.0.0/104", "[10.0.0.0/8]"},
	} {
		got, err := mailcluster.ParsePrefixList(tc.in)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("ParsePrefixList(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0", "10.0.0.1/33", "haproxy.local", "fe80::1%eth0", "10.0.0.1;10.0.0.2", "::ffff:0:0/90"} {
		if _, err := mailcluster.ParsePrefixList(bad); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
			t.Errorf("ParsePrefixList(%q) = %v; want EINVALID", bad, err)
		}
	}
}

// TestValidateSettingProxyProtocolFrom: a bad list is refused with a
// message naming the setting and the bad entry.
func TestValidateSettingProxyProtocolFrom(t *testing.T) {
	file, sec, key := mailcluster.MainSettingsFile, mailcluster.SectionNetwork, mailcluster.KeyProxyProtocolFrom
	if err := mailcluster.ValidateSetting(file, sec, key, "127.0.0.2, 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	err := mailcluster.ValidateSetting(file, sec, key, "127.0.0.2, lb.example")
	if mailcluster.ErrorCode(err) != mailcluster.EINVALID || !strings.Contains(err.Error(), "[Network] ProxyProtocolFrom") ||
		!strings.Contains(err.Error(), `"lb.example"`) {
		t.Fatalf("err = %v", err)
	}
}
