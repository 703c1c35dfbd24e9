package mailstore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"mailcluster"
	"mailcluster/mailstore"
)

// unnamedFaultFS is faultFS (whose faultfs.FS checks unnamed files as
// named ones: "create" with the directory, "write" and "sync" with the
// file's name, "link" with the new name) counting the files created with
// and without a name.
type unnamedFaultFS struct {
	*faultFS
	named, unnamed atomic.Int32
	unsupported    bool   // CreateUnnamed answers errors.ErrUnsupported
	failNamed      string // CreateTemp in a directory containing it fails
}

var _ mailstore.UnnamedFS = (*unnamedFaultFS)(nil)

func (f *unnamedFaultFS) CreateTemp(dir, pattern string) (mailstore.File, error) {
	f.named.Add(1)
	if f.failNamed != "" && strings.Contains(dir, f.failNamed) {
		return nil, &fs.PathError{Op: "create", Path: dir, Err: syscall.EACCES}
	}
	return f.faultFS.CreateTemp(dir, pattern)
}

func (f *unnamedFaultFS) CreateUnnamed(dir string) (mailstore.File, error) {
	if f.unsupported {
		return nil, errors.ErrUnsupported
	}
	file, err := f.faultFS.CreateUnnamed(dir)
	if err == nil {
		f.unnamed.Add(1)
	}
	return file, err
}

// unnamedEnv is a store env with alice and bob, and a Store over an
// unnamedFaultFS.
func unnamedEnv(t *testing.T) (*storeEnv, *unnamedFaultFS, *mailstore.Store, *mailcluster.Account) {
	t.Helper()
	e := mustStoreEnv(t)
	bob := &mailcluster.Account{Domain: "example.com", Mailbox: "bob", MailboxPath: filepath.Join(e.root, "example.com", "bob")}
	e.dir.accounts["bob@example.com"] = bob
	ffs := &unnamedFaultFS{faultFS: newFaultFS(mailstore.OSFS)}
	return e, ffs, e.node(t, mailstore.Options{FS: ffs}), bob
}

// boxFiles lists the files below a mailbox (relative), and their content.
func boxFiles(t *testing.T, box string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(box, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(box, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantOneInNew asserts that box holds exactly one file, in new/, with
// content want, and returns its path.
func wantOneInNew(t *testing.T, box, want string) string {
	t.Helper()
	files := boxFiles(t, box)
	if len(files) != 1 {
		t.Fatalf("%s holds %v, want one message in new/", box, files)
	}
	for rel, got := range files {
		if filepath.Dir(rel) != "new" || got != want {
			t.Fatalf("%s holds %s = %q, want new/ = %q", box, rel, got, want)
		}
		return filepath.Join(box, rel)
	}
	return ""
}

// A delivery to two mailboxes writes one unnamed file: no file is ever
// created with a name (so none is left in or removed from tmp/), and both
// new/ entries are the same file, with the header and body.
func TestDeliverUnnamedFile(t *testing.T) {
	e, ffs, st, bob := unnamedEnv(t)
	header, body := "Return-Path: <s@remote.test>\r\n", "Subject: x\r\n\r\nbody\r\n"
	err := st.Deliver(context.Background(), []*mailcluster.Account{e.alice, bob}, []byte(header), strings.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if n, u := ffs.named.Load(), ffs.unnamed.Load(); n != 0 || u != 1 {
		t.Fatalf("files created: %d named, %d unnamed; want 0 and 1", n, u)
	}
	pa := wantOneInNew(t, e.alice.MailboxPath, header+body)
	pb := wantOneInNew(t, bob.MailboxPath, header+body)
	sa, err1 := os.Stat(pa)
	sb, err2 := os.Stat(pb)
	if err1 != nil || err2 != nil || !os.SameFile(sa, sb) || sa.Mode().Perm() != 0o600 {
		t.Fatalf("alice's and bob's messages are not one file of mode 0600: %v %v %v %v", sa, sb, err1, err2)
	}
	if b, m := e.rep.Pending("example.com", "bob"); b != int64(len(header+body)) || m != 1 {
		t.Fatalf("bob's usage: %d bytes %d messages", b, m)
	}
}

// Two versions of a message (a list's copy with its own header) are two
// unnamed files, each with its header and the one body.
func TestDeliverCopiesUnnamed(t *testing.T) {
	e, ffs, st, bob := unnamedEnv(t)
	body := "Subject: x\r\n\r\nbody\r\n"
	copies := []mailstore.Copy{
		{Header: []byte("X-One: 1\r\n"), Accounts: []*mailcluster.Account{e.alice}},
		{Header: []byte("X-Two: 22\r\n"), Accounts: []*mailcluster.Account{bob}},
	}
	n, err := st.DeliverCopies(context.Background(), copies, strings.NewReader(body), 1<<20, true)
	if err != nil || n != 2 {
		t.Fatalf("DeliverCopies: %d %v", n, err)
	}
	if n, u := ffs.named.Load(), ffs.unnamed.Load(); n != 0 || u != 2 {
		t.Fatalf("files created: %d named, %d unnamed; want 0 and 2", n, u)
	}
	wantOneInNew(t, e.alice.MailboxPath, "X-One: 1\r\n"+body)
	wantOneInNew(t, bob.MailboxPath, "X-Two: 22\r\n"+body)
	if b, _ := e.rep.Pending("example.com", "bob"); b != int64(len("X-Two: 22\r\n"+body)) {
		t.Fatalf("bob's usage: %d bytes", b)
	}
}

// Each failing operation of the unnamed file (its creation, a write, its
// sync, its first link) and of a copy across file systems fails the
// delivery as a LocalError, with nothing left in either mailbox and no
// usage; a link refused as across file systems is a copy, delivered.
func TestDeliverUnnamedFaults(t *testing.T) {
	e, ffs, st, bob := unnamedEnv(t)
	body := "Subject: x\r\n\r\nbody\r\n"
	aliceTmp := filepath.Join(e.alice.MailboxPath, "tmp")
	if err := os.MkdirAll(aliceTmp, 0o750); err != nil {
		t.Fatal(err)
	}
	deliver := func() error {
		return st.Deliver(context.Background(), []*mailcluster.Account{e.alice, bob}, nil, strings.NewReader(body), 1<<20)
	}
	aliceNew, bobNew := filepath.Join(e.alice.MailboxPath, "new"), filepath.Join(bob.MailboxPath, "new")
	for _, tc := range []struct{ op, sub, failNamed string }{
		{"create", aliceTmp, ""},
		{"write", aliceTmp, ""},
		{"sync", aliceTmp, ""},
		// A link that fails is a copy (as across file systems); the copy
		// fails too.
		{"link", aliceNew, aliceTmp},
		{"link", bobNew, filepath.Join(bob.MailboxPath, "tmp")},
		{"syncdir", bobNew, ""},
	} {
		t.Run(tc.op+"_"+filepath.Base(filepath.Dir(tc.sub)), func(t *testing.T) {
			hit := make(chan string, 10)
			ffs.mu.Lock()
			ffs.hit = hit
			ffs.mu.Unlock()
			ffs.set(tc.op, tc.sub)
			ffs.failNamed = tc.failNamed
			defer func() { ffs.set("", ""); ffs.failNamed = "" }()
			err := deliver()
			var le *mailstore.LocalError
			if !errors.As(err, &le) {
				t.Fatalf("delivery with %s failing on %s: %v, want a LocalError", tc.op, tc.sub, err)
			}
			if len(hit) == 0 {
				t.Fatalf("no %s on %s was tried", tc.op, tc.sub)
			}
			for _, box := range []string{e.alice.MailboxPath, bob.MailboxPath} {
				if files := boxFiles(t, box); len(files) != 0 {
					t.Fatalf("%s after the failed delivery holds %v", box, files)
				}
			}
			for _, mb := range []string{"alice", "bob"} {
				if b, m := e.rep.Pending("example.com", mb); b != 0 || m != 0 {
					t.Fatalf("%s's usage after the failed delivery: %d bytes %d messages", mb, b, m)
				}
			}
		})
	}
	if ffs.unnamed.Load() == 0 {
		t.Fatal("no unnamed file was created")
	}
	// The control: the unnamed file's first link refused, alice gets a
	// copy written from it through her tmp/; bob's link then gives the
	// unnamed file its first name.
	t.Run("FirstLinkRefusedCopied", func(t *testing.T) {
		ffs.mu.Lock()
		ffs.hit = nil
		ffs.mu.Unlock()
		ffs.set("link", aliceNew)
		defer ffs.set("", "")
		if err := deliver(); err != nil {
			t.Fatal(err)
		}
		pa := wantOneInNew(t, e.alice.MailboxPath, body)
		pb := wantOneInNew(t, bob.MailboxPath, body)
		sa, _ := os.Stat(pa)
		sb, _ := os.Stat(pb)
		if sa == nil || sb == nil || os.SameFile(sa, sb) {
			t.Fatal("alice's copy is not a file of its own")
		}
	})
}

// Where the file system cannot make an unnamed file, a delivery writes a
// named file in tmp/ and removes it when done.
func TestDeliverUnnamedUnsupported(t *testing.T) {
	e, ffs, st, bob := unnamedEnv(t)
	ffs.unsupported = true
	if err := mailstore.Maildir(e.alice.MailboxPath).Init(); err != nil {
		t.Fatal(err)
	}
	body := "Subject: x\r\n\r\nbody\r\n"
	if err := st.Deliver(context.Background(), []*mailcluster.Account{e.alice, bob}, nil, strings.NewReader(body), 1<<20); err != nil {
		t.Fatal(err)
	}
	if n, u := ffs.named.Load(), ffs.unnamed.Load(); n != 1 || u != 0 {
		t.Fatalf("files created: %d named, %d unnamed; want 1 and 0", n, u)
	}
	wantOneInNew(t, e.alice.MailboxPath, body)
	wantOneInNew(t, bob.MailboxPath, body)
}
