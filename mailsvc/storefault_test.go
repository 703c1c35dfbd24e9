package mailsvc_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/internal/faultfs"
	"mailcluster/mailstore"
)

// faultFS is the os file system of a delivery with faults on demand: an
// operation ("create", "write", "sync", "link", "rename", "syncdir") on a
// path below a prefix fails with an errno. A failing write first writes
// half of its bytes, as on a disk that fills up. It records the faults it
// made.
type faultFS struct {
	faultfs.FS
	mu     sync.Mutex
	faults []fault
	fired  map[string]bool // op -> a fault of op was made
}

// fault makes op fail with err on the paths below prefix.
type fault struct {
	op, prefix string
	err        syscall.Errno
}

var _ mailstore.FS = (*faultFS)(nil)

// newFaultFS returns a faultFS over base with no faults set.
func newFaultFS(base mailstore.FS) *faultFS {
	f := &faultFS{fired: map[string]bool{}}
	f.FS = faultfs.FS{FS: base, Check: f.check}
	return f
}

// set replaces the faults (none: the file system works).
func (f *faultFS) set(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults, f.fired = faults, map[string]bool{}
}

func (f *faultFS) check(op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.faults {
		if ft.op == op && strings.HasPrefix(path, ft.prefix+string(filepath.Separator)) {
			f.fired[op] = true
			return &fs.PathError{Op: op, Path: path, Err: ft.err}
		}
	}
	return nil
}

// wantFired asserts that every fault set was made.
func (f *faultFS) wantFired(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.faults {
		if !f.fired[ft.op] {
			t.Fatalf("no %s below %s was tried: the delivery failed elsewhere", ft.op, ft.prefix)
		}
	}
}

// mailboxFiles lists the files (anything but directories) below a
// mailbox, relative to it.
func mailboxFiles(t *testing.T, box string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(box, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(box, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeliveryStorageFaults fails each file operation of a delivery to
// two recipients (a full disk, a mailbox that is not writable, an I/O
// error) through the Store's file system seam: the answer is 451 4.3.0
// without the internal error, nothing is left in tmp/, new/ or cur/ of
// either recipient (a recipient already linked is rolled back), and no
// usage is reported. The message file is written to alice's tmp/ and
// linked into each new/; bob's copy is written only when the link fails
// (as across file systems).
func TestDeliveryStorageFaults(t *testing.T) {
	e := MustOpenEnv(t)
	ffs := e.fs
	box := map[string]string{}
	for _, mb := range []string{"alice", "bob"} {
		a, err := mustLocal(e.svc).LookupAccount(mb + "@example.com")
		if err != nil {
			t.Fatal(err)
		}
		box[mb] = filepath.Clean(a.MailboxPath)
	}
	alice, bob := box["alice"], box["bob"]
	rcpts := []string{"alice@example.com", "bob@example.com"}
	for _, tc := range []struct {
		name   string
		faults []fault
	}{
		{"CreateDenied", []fault{{"create", alice, syscall.EACCES}}},
		{"WriteNoSpace", []fault{{"write", alice, syscall.ENOSPC}}},
		{"SyncNoSpace", []fault{{"sync", alice, syscall.ENOSPC}}},
		{"LinkAndCopyDenied", []fault{{"link", bob, syscall.EACCES}, {"create", bob, syscall.EACCES}}},
		{"CopyWriteNoSpace", []fault{{"link", bob, syscall.EXDEV}, {"write", bob, syscall.ENOSPC}}},
		{"CopySyncNoSpace", []fault{{"link", bob, syscall.EXDEV}, {"sync", bob, syscall.ENOSPC}}},
		{"CopyRenameDenied", []fault{{"link", bob, syscall.EXDEV}, {"rename", bob, syscall.EACCES}}},
		{"SyncNewDirFails", []fault{{"syncdir", bob, syscall.EIO}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ffs.set(tc.faults...)
			defer ffs.set()
			err := send(dial(t, e.inbound), "sender@remote.test", rcpts, msg)
			wantReply(t, err, 451, smtp.EnhancedCode{4, 3, 0})
			ffs.wantFired(t)
			for _, leak := range []string{e.data, "space", "permission", "cross-device", "input/output"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("reply %q shows the internal error", err)
				}
			}
			for mb, p := range box {
				if files := mailboxFiles(t, p); len(files) != 0 {
					t.Fatalf("%s's mailbox after the failed delivery holds %v", mb, files)
				}
				// Report persists a delta before Deliver returns, and it
				// stays pending until the usage includes it: usage and
				// pending add up to nothing. The outbox sends on its own,
				// so the two are read again until nothing was sent in
				// between (the same pending before and after the usage).
				wantNoUsage(t, mb, func() (mailcluster.Usage, [2]int64) {
					u := mustLocal(e.svc).Usage("example.com", mb)
					pb, pm := e.outbox.Pending("example.com", mb)
					return u, [2]int64{pb, pm}
				})
			}
		})
	}
	// The control: with the link failing as across file systems, bob's
	// copy is written through his tmp/ and delivered; usage then counts
	// exactly this one message, so none of the failures above counted.
	t.Run("CopyAcrossFileSystems", func(t *testing.T) {
		ffs.set(fault{"link", bob, syscall.EXDEV})
		defer ffs.set()
		if err := send(dial(t, e.inbound), "sender@remote.test", rcpts, msg); err != nil {
			t.Fatalf("delivery with a copy for bob: %v", err)
		}
		ffs.wantFired(t)
		for mb, p := range box {
			files := mailboxFiles(t, p)
			if len(files) != 1 || filepath.Dir(files[0]) != "new" {
				t.Fatalf("%s's mailbox holds %v, want one message in new/", mb, files)
			}
			b, err := os.ReadFile(filepath.Join(p, files[0]))
			if err != nil || !strings.HasSuffix(string(b), msg) {
				t.Fatalf("%s's message: %q %v", mb, b, err)
			}
			waitUsage(t, e, mb, 1)
		}
	})
}

// wantNoUsage fails unless read, within 5 s, gives a usage and pending
// deltas of mailbox mb that add up to nothing, read while no pending
// delta was applied (the pending ones the same before and after).
func wantNoUsage(t *testing.T, mb string, read func() (mailcluster.Usage, [2]int64)) {
	t.Helper()
	var u mailcluster.Usage
	var p [2]int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		_, before := read()
		u, p = read()
		if p != before {
			continue // a delta was applied between the reads
		}
		if u.Bytes+p[0] == 0 && u.Messages+p[1] == 0 {
			return
		}
	}
	t.Fatalf("usage of %s after the failed delivery: %+v, pending %d bytes %d messages", mb, u, p[0], p[1])
}
