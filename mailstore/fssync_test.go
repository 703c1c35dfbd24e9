package mailstore_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

// wholeFS is the os file system with a FileSystemSyncer that records its
// calls: every directory is on file system 1, synced whole. Message files
// are named (no UnnamedFS) and wrapped, so that their fsyncs are counted.
type wholeFS struct {
	mailstore.FS
	newDir string // the new/ directory whose names each sync records
	// other, when set, is a directory whose subtree is on another file
	// system (2), also synced whole.
	other string

	mu         sync.Mutex
	syncs      [][]string // the names in newDir when each file-system sync began
	fileSyncs  int        // fsyncs of message files
	dirSyncs   int        // fsyncs of directories
	written    int        // calls of Written
	fail       error      // returned by the next file-system syncs
	writtenErr error      // returned by Written
	// block, when set, holds the next file-system sync (and only it)
	// until it is closed; began is closed when that sync begins.
	block, began chan struct{}
}

var _ mailstore.FileSystemSyncer = (*wholeFS)(nil)

func newWholeFS(newDir string) *wholeFS { return &wholeFS{FS: mailstore.OSFS, newDir: newDir} }

type countedFile struct {
	mailstore.File
	fs *wholeFS
}

func (f countedFile) Sync() error {
	f.fs.mu.Lock()
	f.fs.fileSyncs++
	f.fs.mu.Unlock()
	return f.File.Sync()
}

func (f *wholeFS) CreateTemp(dir, pattern string) (mailstore.File, error) {
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return countedFile{File: file, fs: f}, nil
}

func (f *wholeFS) SyncDir(dir string) error {
	f.mu.Lock()
	f.dirSyncs++
	f.mu.Unlock()
	return f.FS.SyncDir(dir)
}

func (f *wholeFS) FileSystem(dir string) (uint64, bool, error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, false, err
	}
	if f.other != "" && strings.HasPrefix(dir, f.other) {
		return 2, true, nil
	}
	return 1, true, nil
}

func (f *wholeFS) SyncFileSystem(id uint64, dir string) error {
	names := dirNames(f.newDir)
	f.mu.Lock()
	f.syncs = append(f.syncs, names)
	block, began, fail := f.block, f.began, f.fail
	f.block, f.began = nil, nil
	f.mu.Unlock()
	if id != 1 {
		return errors.New("wrong file system")
	}
	if began != nil {
		close(began)
	}
	if block != nil {
		<-block
	} else {
		time.Sleep(20 * time.Millisecond) // deliveries pile up behind it
	}
	return fail
}

func (f *wholeFS) Written(file mailstore.File) error {
	if _, ok := file.(countedFile); !ok {
		return errors.New("not a file of this FS")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written++
	return f.writtenErr
}

func (f *wholeFS) set(fn func(f *wholeFS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// deliverOne delivers a small message to alice.
func deliverOne(st *mailstore.Store, e *storeEnv, subject string) error {
	return st.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader("Subject: "+subject+"\r\n\r\nbody\r\n"), 1<<20)
}

// mustWholeStore returns the env, a wholeFS over alice's new/ and a Store
// on it, with alice's Maildir made (the file system is asked about it).
func mustWholeStore(t *testing.T, opts mailstore.Options) (*storeEnv, *wholeFS, *mailstore.Store) {
	t.Helper()
	e := mustStoreEnv(t)
	if err := mailstore.Maildir(e.alice.MailboxPath).Init(); err != nil {
		t.Fatal(err)
	}
	fs := newWholeFS(filepath.Join(e.alice.MailboxPath, "new"))
	opts.FS = fs
	return e, fs, e.node(t, opts)
}

// newNames lists alice's new/.
func newNames(t *testing.T, e *storeEnv) []string {
	t.Helper()
	dir := filepath.Join(e.alice.MailboxPath, "new")
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	return dirNames(dir)
}

// Concurrent deliveries onto a file system synced whole share its syncs,
// fsync neither their files nor new/, and none returns before a sync that
// began after its file was linked; each asks for its own file's writes.
func TestDeliveriesShareFileSystemSyncs(t *testing.T) {
	e, fs, st := mustWholeStore(t, mailstore.Options{})
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- deliverOne(st, e, "x"+string(rune('a'+i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	names := newNames(t, e)
	if len(names) != n {
		t.Fatalf("%d messages in new/, want %d", len(names), n)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.fileSyncs != 0 || fs.dirSyncs != 0 {
		t.Errorf("%d message files and %d directories fsynced, want none", fs.fileSyncs, fs.dirSyncs)
	}
	if len(fs.syncs) == 0 || len(fs.syncs) >= n {
		t.Errorf("%d file-system syncs for %d concurrent deliveries, want fewer (shared) and at least one", len(fs.syncs), n)
	}
	if fs.written != n {
		t.Errorf("Written asked %d times, want %d", fs.written, n)
	}
	for _, name := range names {
		seen := false
		for _, s := range fs.syncs {
			for _, m := range s {
				seen = seen || m == name
			}
		}
		if !seen {
			t.Errorf("%s was acknowledged without a file-system sync that began after its link", name)
		}
	}
}

// A failed file-system sync fails its deliveries: nothing is left in new/
// and their usage is reported back out.
func TestFileSystemSyncFailure(t *testing.T) {
	t.Run("Sync", func(t *testing.T) {
		e, fs, st := mustWholeStore(t, mailstore.Options{})
		fs.set(func(f *wholeFS) { f.fail = syscall.EIO })
		err := deliverOne(st, e, "lost")
		var le *mailstore.LocalError
		if !errors.As(err, &le) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("delivery after a failed sync: %v, want a local error with EIO", err)
		}
		wantNothingKept(t, e)
	})
	t.Run("Written", func(t *testing.T) {
		e, fs, st := mustWholeStore(t, mailstore.Options{})
		fs.set(func(f *wholeFS) { f.writtenErr = syscall.EIO })
		if err := deliverOne(st, e, "lost"); !errors.Is(err, syscall.EIO) {
			t.Fatalf("delivery whose file's writes failed: %v, want EIO", err)
		}
		wantNothingKept(t, e)
	})
	// A sync that fails may have been writing the data of a delivery
	// that waits for the next sync, which then has nothing left to
	// report: that delivery fails too. Deliveries that begin after it
	// do not.
	t.Run("UnderWay", func(t *testing.T) {
		e, fs, st := mustWholeStore(t, mailstore.Options{})
		block, began := make(chan struct{}), make(chan struct{})
		fs.set(func(f *wholeFS) { f.block, f.began, f.fail = block, began, syscall.EIO })
		first := make(chan error, 1)
		go func() { first <- deliverOne(st, e, "first") }()
		<-began
		second := make(chan error, 1)
		go func() { second <- deliverOne(st, e, "second") }()
		deadline := time.Now().Add(10 * time.Second)
		for len(newNames(t, e)) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the second delivery never linked its file")
			}
			time.Sleep(time.Millisecond)
		}
		fs.set(func(f *wholeFS) { f.fail = nil }) // the second's own sync succeeds
		close(block)
		if err := <-first; !errors.Is(err, syscall.EIO) {
			t.Fatalf("first delivery: %v, want EIO", err)
		}
		if err := <-second; err == nil || !strings.Contains(err.Error(), "failed while the delivery was under way") {
			t.Fatalf("second delivery: %v, want the failure of a sync while it was under way", err)
		}
		wantNothingKept(t, e)
		if err := deliverOne(st, e, "third"); err != nil {
			t.Fatalf("a delivery after the failure: %v", err)
		}
		if got := len(newNames(t, e)); got != 1 {
			t.Fatalf("%d messages in new/, want the third only", got)
		}
	})
}

// wantNothingKept checks that alice's new/ is empty and that her reported
// usage adds up to nothing.
func wantNothingKept(t *testing.T, e *storeEnv) {
	t.Helper()
	if names := newNames(t, e); len(names) != 0 {
		t.Errorf("new/ holds %v after failed deliveries", names)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		bytes, messages := e.rep.Pending("example.com", "alice")
		if bytes == 0 && messages == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage reported for failed deliveries: %d bytes, %d messages", bytes, messages)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A delivery to mailboxes on two file systems syncs the file system of
// the first (which holds the message) whole, and the new/ directory of
// the other, whose link it made there, on its own.
func TestFileSystemSyncOtherFileSystem(t *testing.T) {
	e, fs, st := mustWholeStore(t, mailstore.Options{})
	bob := &mailcluster.Account{Domain: "example.com", Mailbox: "bob", MailboxPath: filepath.Join(e.root, "example.com", "bob")}
	e.dir.mu.Lock()
	e.dir.accounts["bob@example.com"] = bob
	e.dir.mu.Unlock()
	if err := mailstore.Maildir(bob.MailboxPath).Init(); err != nil {
		t.Fatal(err)
	}
	fs.set(func(f *wholeFS) { f.other = bob.MailboxPath })
	err := st.Deliver(context.Background(), []*mailcluster.Account{e.alice, bob}, nil, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(dirNames(filepath.Join(bob.MailboxPath, "new"))); got != 1 {
		t.Fatalf("bob's new/ holds %d messages, want 1", got)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.syncs) == 0 || fs.dirSyncs != 1 || fs.fileSyncs != 0 {
		t.Fatalf("%d file-system syncs, %d directory syncs, %d file syncs; want at least one, 1 (bob's new/) and none",
			len(fs.syncs), fs.dirSyncs, fs.fileSyncs)
	}
}

// SyncFiles syncs file by file even where the file system could be synced
// whole.
func TestSyncFilesMethod(t *testing.T) {
	e, fs, st := mustWholeStore(t, mailstore.Options{Sync: mailstore.SyncFiles})
	if err := deliverOne(st, e, "x"); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.syncs) != 0 || fs.written != 0 {
		t.Errorf("%d file-system syncs and %d Written with SyncFiles, want none", len(fs.syncs), fs.written)
	}
	if fs.fileSyncs != 1 || fs.dirSyncs != 1 {
		t.Errorf("%d message files and %d directories fsynced, want 1 and 1", fs.fileSyncs, fs.dirSyncs)
	}
}

func TestParseSyncMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mailstore.SyncMethod
		ok   bool
	}{
		{"auto", mailstore.SyncAuto, true},
		{"", mailstore.SyncAuto, true},
		{"file", mailstore.SyncFiles, true},
		{"File", 0, false},
		{"none", 0, false},
	} {
		got, err := mailstore.ParseSyncMethod(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseSyncMethod(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// writtenRep is a reporter that can write reports for a sync of file
// system id to make durable; it records how each delta came, and how
// many file-system syncs had begun when a delta was written.
type writtenRep struct {
	fakeRep
	id uint64
	fs *wholeFS

	calls        sync.Mutex
	written      []mailcluster.UsageDelta
	syncsAtWrite []int
	async        []mailcluster.UsageDelta
}

var _ mailstore.WrittenReporter = (*writtenRep)(nil)

func (r *writtenRep) FileSystem() (uint64, bool) { return r.id, true }

func (r *writtenRep) WriteReport(deltas ...mailcluster.UsageDelta) error {
	r.fs.mu.Lock()
	syncs := len(r.fs.syncs)
	r.fs.mu.Unlock()
	r.calls.Lock()
	r.written = append(r.written, deltas...)
	r.syncsAtWrite = append(r.syncsAtWrite, syncs)
	r.calls.Unlock()
	return r.Report(deltas...)
}

func (r *writtenRep) ReportAsync(deltas ...mailcluster.UsageDelta) <-chan error {
	r.calls.Lock()
	r.async = append(r.async, deltas...)
	r.calls.Unlock()
	ch := make(chan error, 1)
	ch <- r.Report(deltas...)
	return ch
}

// A delivery onto the file system that holds the reporter's file writes
// its report without a sync of its own, before the sync of the file
// system that makes its message durable; onto another file system it
// reports as before (ReportAsync, synced by the reporter).
func TestDeliveryReportSharesTheFileSystemSync(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      uint64
		written bool
	}{
		{"SameFileSystem", 1, true},
		{"OtherFileSystem", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustStoreEnv(t)
			if err := mailstore.Maildir(e.alice.MailboxPath).Init(); err != nil {
				t.Fatal(err)
			}
			fs := newWholeFS(filepath.Join(e.alice.MailboxPath, "new"))
			rep := &writtenRep{id: tc.id, fs: fs}
			st := mailstore.NewStore(e.dir, rep, slog.New(slog.NewTextHandler(testWriter{t}, nil)), mailstore.Options{FS: fs})
			if err := deliverOne(st, e, "x"); err != nil {
				t.Fatal(err)
			}
			if b, m := rep.Pending("example.com", "alice"); b == 0 || m != 1 {
				t.Fatalf("pending after the delivery: %d bytes, %d messages; want the message", b, m)
			}
			rep.calls.Lock()
			defer rep.calls.Unlock()
			how, other := rep.written, rep.async
			if !tc.written {
				how, other = other, how
			}
			// The usage delta, then the notice of INBOX.
			if len(how) != 2 || how[0].Messages != 1 || how[1].Kind != mailcluster.MailDelivered || len(other) != 0 {
				t.Fatalf("written %v, async %v", rep.written, rep.async)
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if tc.written && (len(rep.syncsAtWrite) == 0 || rep.syncsAtWrite[0] >= len(fs.syncs)) {
				t.Fatalf("the usage was written with %v syncs begun, of %d in all: no sync began after it", rep.syncsAtWrite, len(fs.syncs))
			}
		})
	}
}
