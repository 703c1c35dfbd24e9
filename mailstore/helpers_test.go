package mailstore_test

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"mailcluster"
	"mailcluster/internal/faultfs"
	"mailcluster/mailstore"
)

// fakeDir is the domain service as the store sees it: accounts under one
// mailbox root, the published usage, and the [Directories] settings.
type fakeDir struct {
	mu       sync.Mutex
	accounts map[string]*mailcluster.Account
	usage    map[string]mailcluster.Usage
	settings map[string]string
}

func (d *fakeDir) LookupAccount(address string) (*mailcluster.Account, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.accounts[strings.ToLower(address)]
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "no account %s", address)
	}
	c := *a
	return &c, nil
}

func (d *fakeDir) Usage(domain, mailbox string) mailcluster.Usage {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage[mailbox+"@"+domain]
}

func (d *fakeDir) SetUsage(_ context.Context, domain, mailbox string, u mailcluster.Usage) error {
	return nil
}

func (d *fakeDir) Setting(section, key, def string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.settings[section+"/"+key]; ok {
		return v
	}
	return def
}

// fakeRep records the usage deltas reported; none is ever published, so
// they all stay pending.
type fakeRep struct {
	mu     sync.Mutex
	deltas []mailcluster.UsageDelta
}

func (r *fakeRep) Report(deltas ...mailcluster.UsageDelta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deltas = append(r.deltas, deltas...)
	return nil
}

func (r *fakeRep) Pending(domain, mailbox string) (bytes, messages int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.deltas {
		if d.Domain == domain && d.Mailbox == mailbox {
			bytes += d.Bytes
			messages += d.Messages
		}
	}
	return bytes, messages
}

// storeEnv is the shared path of a cluster (mailbox root and lock files)
// with one account, alice@example.com.
type storeEnv struct {
	dir   *fakeDir
	rep   *fakeRep
	root  string
	locks string
	alice *mailcluster.Account
}

func mustStoreEnv(t testing.TB) *storeEnv {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "mailboxes")
	locks := filepath.Join(base, "locks")
	for _, d := range []string{root, locks} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	alice := &mailcluster.Account{Domain: "example.com", Mailbox: "alice", MailboxPath: filepath.Join(root, "example.com", "alice")}
	d := &fakeDir{accounts: map[string]*mailcluster.Account{"alice@example.com": alice}, usage: map[string]mailcluster.Usage{},
		settings: map[string]string{
			mailcluster.SectionDirectories + "/" + mailcluster.KeyMailboxRoot: root,
			mailcluster.SectionDirectories + "/" + mailcluster.KeyLockFiles:   locks,
		}}
	return &storeEnv{dir: d, rep: &fakeRep{}, root: root, locks: locks, alice: alice}
}

// node returns a new Store over the env's shared path, as one node (or
// one process) of the cluster has.
func (e *storeEnv) node(t *testing.T, opts mailstore.Options) *mailstore.Store {
	return mailstore.NewStore(e.dir, e.rep, slog.New(slog.NewTextHandler(testWriter{t}, nil)), opts)
}

// setQuota sets alice's quotas.
func (e *storeEnv) setQuota(bytes, messages int64) {
	e.dir.mu.Lock()
	defer e.dir.mu.Unlock()
	e.alice.QuotaBytes, e.alice.QuotaMessages = bytes, messages
}

// testWriter sends a log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// faultFS fails an operation ("create", "write", "sync", "rename",
// "syncdir") on the paths containing a substring, or blocks it on a
// channel, on demand.
type faultFS struct {
	faultfs.FS
	mu     sync.Mutex
	op     string
	substr string
	block  chan struct{} // non-nil: the operation waits until it is closed
	hit    chan string   // receives the path of each operation that faulted
}

// newFaultFS returns a faultFS over base with no fault set.
func newFaultFS(base mailstore.FS) *faultFS {
	f := &faultFS{}
	f.FS = faultfs.FS{FS: base, Check: f.check}
	return f
}

func (f *faultFS) set(op, substr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op, f.substr = op, substr
}

func (f *faultFS) check(op, path string) error {
	f.mu.Lock()
	match := f.op == op && strings.Contains(path, f.substr)
	block, hit := f.block, f.hit
	f.mu.Unlock()
	if !match {
		return nil
	}
	if hit != nil {
		hit <- path
	}
	if block != nil {
		<-block
	}
	return &fs.PathError{Op: op, Path: path, Err: syscall.ENOSPC}
}

// dirNames lists the names in dir (none when it cannot be read).
func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
