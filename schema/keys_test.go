package schema_test

import (
	"testing"

	"mailcluster/schema"
)

func TestKeys(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{schema.Domain("example.com"), "domains/example.com"},
		{schema.Account("example.com", "alice"), "accounts/example.com/alice"},
		{schema.AccountPrefix("example.com"), "accounts/example.com/"},
		{schema.Usage("example.com", "alice"), "usage/example.com/alice"},
		{schema.Setting("mailcluster", "SMTP", "Banner"), "settings/mailcluster/SMTP/Banner"},
		{schema.BlockedIP("192.0.2.1"), "screening/ips/192.0.2.1"},
		{schema.FrozenAccount("a@example.com"), "screening/accounts/a@example.com"},
		{schema.Server("n1"), "servers/n1"},
		{schema.Certificate("mail"), "certs/mail"},
		{schema.Report("n1"), "reports/n1"},
		{schema.Clock("n1"), "clock/n1"},
		{schema.GlobalAdmin("a@example.com"), "index/admins/a@example.com"},
		{schema.Feed("e1", 42), "feed/e1/00000000000000000042"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}
