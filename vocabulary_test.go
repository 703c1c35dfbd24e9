package mailcluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster"
)

func TestValidateMailbox(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"alice", true}, {"a.b", true}, {"a_b+c-d", true}, {"0", true}, {strings.Repeat("a", 64), true},
		{"", false}, {strings.Repeat("a", 65), false}, {".a", false}, {"a.", false}, {"a..b", false},
		{"A", false}, {"a/b", false}, {"a b", false}, {"ä", false}, {"a@b", false},
	} {
		if err := mailcluster.ValidateMailbox(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateMailbox(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestValidateDomainName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 253
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"example.com", true}, {"localhost", true}, {"a-b.c0", true}, {label63 + ".com", true}, {long, true},
		{"", false}, {long + "b", false}, {strings.Repeat("a", 64) + ".com", false}, {"a..b", false},
		{"-a.com", false}, {"a-.com", false}, {"a_b.com", false}, {"a b.com", false}, {".a.com", false},
	} {
		if err := mailcluster.ValidateDomainName(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateDomainName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
	if got := mailcluster.NormalizeDomain(" Example.COM. "); got != "example.com" {
		t.Errorf("NormalizeDomain = %q", got)
	}
}

func TestSplitAddressAndRights(t *testing.T) {
	m, d, err := mailcluster.SplitAddress(" Alice@Example.COM ")
	if err != nil || m != "alice" || d != "example.com" {
		t.Fatalf("%q %q %v", m, d, err)
	}
	for _, bad := range []string{"", "@x.com", "alice@", "alice", "a@b@", "a..b@x.com", "a@-x.com"} {
		if _, _, err := mailcluster.SplitAddress(bad); err == nil {
			t.Errorf("SplitAddress(%q) accepted", bad)
		}
	}
	for in, want := range map[string]mailcluster.AdminRights{"": mailcluster.AdminNone, "No": mailcluster.AdminNone, " Domain ": mailcluster.AdminDomain, "GLOBAL": mailcluster.AdminGlobal} {
		if got, err := mailcluster.ParseAdminRights(in); err != nil || got != want {
			t.Errorf("ParseAdminRights(%q) = %q %v", in, got, err)
		}
	}
	if _, err := mailcluster.ParseAdminRights("root"); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
		t.Errorf("ParseAdminRights(root) = %v", err)
	}
}

func TestMaySendAs(t *testing.T) {
	a := &mailcluster.Account{Domain: "example.com", Mailbox: "bob", SendAs: []string{"sales@example.com", "@other.test"}}
	for sender, ok := range map[string]bool{
		"bob@example.com": true, "BOB@Example.com ": true, "sales@example.com": true, "x@other.test": true,
		"x@example.com": false, "bob@other.com": false, "x@sub.other.test": false, "other.test": false, "": false, "@other.test": false,
	} {
		if got := a.MaySendAs(sender); got != ok {
			t.Errorf("MaySendAs(%q) = %v, want %v", sender, got, ok)
		}
	}
	if p := (&mailcluster.Account{PasswordHash: "x"}).Public(); p.PasswordHash != "" {
		t.Error("Public keeps the password hash")
	}
}

func TestConfineMailboxPath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "d", "alice"), 0o750))
	must(os.Symlink(outside, filepath.Join(root, "out")))
	must(os.Symlink(filepath.Join(root, "d"), filepath.Join(root, "in")))
	must(os.Symlink(filepath.Join(root, "missing"), filepath.Join(root, "dangling")))
	for _, tc := range []struct {
		in, want string // want "" means refused
	}{
		{filepath.Join(root, "d", "alice") + "/", filepath.Join(root, "d", "alice")},
		{filepath.Join(root, "d", "new", "bob"), filepath.Join(root, "d", "new", "bob")},
		{filepath.Join(root, "in", "alice"), filepath.Join(root, "d", "alice")},
		{filepath.Join(root, "out", "x"), ""},
		{filepath.Join(root, "dangling", "x"), ""},
		{root, ""}, {root + "/", ""}, {"/etc", ""}, {"relative/x", ""}, {"", ""},
		{root + "/a\nb", ""}, {root + "/" + strings.Repeat("d", 1024), ""},
		{filepath.Join(root, "d", "..", "..", filepath.Base(outside)), ""},
	} {
		got, err := mailcluster.ConfineMailboxPath(tc.in, root)
		if tc.want == "" {
			if err == nil || mailcluster.ErrorCode(err) != mailcluster.EFORBIDDEN {
				t.Errorf("ConfineMailboxPath(%q) = %q, %v; want a refusal", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ConfineMailboxPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := mailcluster.ConfineMailboxPath(filepath.Join(outside, "x"), "/", root); err == nil {
		t.Error("the file system root confines nothing and must not count")
	}
	if _, err := mailcluster.ConfineMailboxPath(filepath.Join(outside, "x"), root, outside); err != nil {
		t.Errorf("a second root is not accepted: %v", err)
	}
	roots := mailcluster.MailboxRoots(func(section, key, def string) string {
		return map[string]string{mailcluster.KeyMailboxRoot: root + "/", mailcluster.KeyMailboxRootNext: "relative"}[key]
	})
	if len(roots) != 1 || roots[0] != root {
		t.Errorf("MailboxRoots = %v", roots)
	}
}

func TestFilterEvents(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var evs []mailcluster.ClusterEvent
	for i, lvl := range []string{"info", "warn", "error", "info", "warn"} {
		evs = append(evs, mailcluster.ClusterEvent{Time: t0.Add(time.Duration(i) * time.Minute), Level: lvl})
	}
	if got := mailcluster.FilterEvents(evs, mailcluster.ClusterLogFilter{Level: "warn"}); len(got) != 3 {
		t.Errorf("warn and above: %d", len(got))
	}
	if got := mailcluster.FilterEvents(evs, mailcluster.ClusterLogFilter{Since: t0.Add(3 * time.Minute)}); len(got) != 2 {
		t.Errorf("since: %d", len(got))
	}
	if got := mailcluster.FilterEvents(evs, mailcluster.ClusterLogFilter{Limit: 2}); len(got) != 2 || !got[1].Time.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("limit keeps the newest: %+v", got)
	}
	for lvl, ok := range map[string]bool{"": true, "info": true, "warn": true, "error": true, "debug": false} {
		if mailcluster.ValidLogLevel(lvl) != ok {
			t.Errorf("ValidLogLevel(%q)", lvl)
		}
	}
}
