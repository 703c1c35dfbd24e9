package mailcluster_test

import (
	"os"
	"path/filepath"
	"testing"

	"mailcluster"
)

// Roots resolved once confine like ConfineMailboxPath: a root configured
// through a symbolic link accepts paths spelled with either form, and a
// symbolic link anywhere below a root is followed and refused when it
// leads outside every root, also one created after the roots were
// resolved.
func TestMailboxRootSet(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	outside := filepath.Join(base, "outside")
	link := filepath.Join(base, "link") // the configured root: link -> target
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(target, "d", "alice"), 0o750))
	must(os.MkdirAll(outside, 0o750))
	must(os.Symlink(target, link))
	must(os.Symlink(filepath.Join(target, "d"), filepath.Join(target, "in")))
	set := mailcluster.ResolveMailboxRoots(link)

	// Created after the roots were resolved.
	must(os.Symlink(outside, filepath.Join(target, "d", "bob")))
	must(os.MkdirAll(filepath.Join(target, "e"), 0o750))
	must(os.Symlink(outside, filepath.Join(target, "e", "carol")))

	for _, tc := range []struct {
		in, want string // want "" means refused
	}{
		{filepath.Join(link, "d", "alice"), filepath.Join(target, "d", "alice")},
		{filepath.Join(target, "d", "alice"), filepath.Join(target, "d", "alice")},
		{filepath.Join(link, "d", "new", "x"), filepath.Join(target, "d", "new", "x")},
		{filepath.Join(link, "in", "alice"), filepath.Join(target, "d", "alice")},
		{filepath.Join(link, "d", "bob"), ""},
		{filepath.Join(link, "d", "bob", "new"), ""},
		{filepath.Join(target, "e", "carol"), ""},
		{filepath.Join(target, "d", "alice", "..", "..", "..", "outside"), ""},
		{link, ""}, {target, ""}, {outside, ""}, {"relative/x", ""},
	} {
		got, err := set.Confine(tc.in)
		if tc.want == "" {
			if err == nil || mailcluster.ErrorCode(err) != mailcluster.EFORBIDDEN {
				t.Errorf("Confine(%q) = %q, %v; want a refusal", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Confine(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	if _, err := (mailcluster.MailboxRootSet{}).Confine(filepath.Join(target, "d", "alice")); err == nil {
		t.Error("a set without roots accepted a path")
	}
	if _, err := mailcluster.ResolveMailboxRoots("/").Confine(filepath.Join(outside, "x")); err == nil {
		t.Error("the file system root confines nothing and must not count")
	}
}
