package mailstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster/mailstore"
)

func TestValidMaildirName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"1700000000.M123456P42Q7Rabcdefgh.host,S=1234", true},
		{"1700000000.M123456P42Q7Rabcdefgh.host,S=1234:2,", true},
		{"1700000000.M1P2.host,S=12,W=13:2,FRS", true},
		{"1700000000.M1P2.host\\057x\\072y,S=1:2,Sa", true},
		{"1.a", true},
		{"1234.link:2,S", true},
		{"app.conf", false},
		{"id_rsa", false},
		{"notes.txt", false},
		{".1700000000.M1.host", false},
		{"1700000000.M1.host:2,S/x", false},
		{"1700000000.M1.host:1,S", false},
		{"1700000000 M1.host", false},
		{"", false},
		{"1." + strings.Repeat("x", 300), false},
	} {
		if got := mailstore.ValidMaildirName(tc.name); got != tc.ok {
			t.Errorf("ValidMaildirName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// mustMaildir creates a maildir (tmp, new, cur) in a fresh directory.
func mustMaildir(t *testing.T) mailstore.Maildir {
	t.Helper()
	md := mailstore.Maildir(filepath.Join(t.TempDir(), "box"))
	if err := md.Init(); err != nil {
		t.Fatal(err)
	}
	return md
}

// entries lists the names under tmp, new and cur.
func entries(t *testing.T, md mailstore.Maildir) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"tmp", "new", "cur"} {
		des, err := os.ReadDir(filepath.Join(string(md), sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			out = append(out, sub+"/"+de.Name())
		}
	}
	return out
}

func TestMaildirPlace(t *testing.T) {
	src := filepath.Join(t.TempDir(), "1.a")
	if err := os.WriteFile(src, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("Link", func(t *testing.T) {
		md := mustMaildir(t)
		if err := md.Place(src, "new/1.a", mailstore.PlaceOptions{}); err != nil {
			t.Fatal(err)
		}
		a, _ := os.Stat(src)
		b, err := os.Stat(filepath.Join(string(md), "new", "1.a"))
		if err != nil || !os.SameFile(a, b) {
			t.Fatalf("not a hard link: %v", err)
		}
	})
	t.Run("Copy", func(t *testing.T) {
		md := mustMaildir(t)
		mod := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		// A partial file of an interrupted copy under the same temporary
		// name is replaced.
		if err := os.WriteFile(filepath.Join(string(md), "tmp", "copy.1.a"), []byte("he"), 0o644); err != nil {
			t.Fatal(err)
		}
		opts := mailstore.PlaceOptions{NoLink: true, TmpName: "copy.1.a", Mode: 0o600, ModTime: mod}
		if err := md.Place(src, "cur/1.a:2,S", opts); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(string(md), "cur", "1.a:2,S")
		b, _ := os.ReadFile(p)
		st, err := os.Stat(p)
		if err != nil || string(b) != "hello" || st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mod) {
			t.Fatalf("copy: %q %v %v", b, st, err)
		}
		a, _ := os.Stat(src)
		if os.SameFile(a, st) {
			t.Fatal("linked although NoLink")
		}
		if got := entries(t, md); len(got) != 1 || got[0] != "cur/1.a:2,S" {
			t.Fatalf("maildir holds %v, want only the message", got)
		}
	})
	t.Run("ErrSymlink", func(t *testing.T) {
		md := mustMaildir(t)
		link := filepath.Join(t.TempDir(), "2.b")
		if err := os.Symlink(src, link); err != nil {
			t.Fatal(err)
		}
		for _, noLink := range []bool{false, true} {
			if err := md.Place(link, "new/2.b", mailstore.PlaceOptions{NoLink: noLink}); err == nil {
				t.Fatalf("NoLink=%v: a symbolic link was placed", noLink)
			}
		}
		if got := entries(t, md); len(got) != 0 {
			t.Fatalf("maildir holds %v", got)
		}
	})
}
