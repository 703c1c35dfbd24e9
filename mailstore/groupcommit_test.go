package mailstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

// countingFS records, for every directory sync, the names the directory
// held when the sync began, and makes each sync slow so that deliveries
// pile up behind it.
type countingFS struct {
	mailstore.FS
	mu    sync.Mutex
	syncs map[string][][]string // dir -> names at the start of each sync
}

func (f *countingFS) SyncDir(dir string) error {
	names := dirNames(dir)
	f.mu.Lock()
	f.syncs[dir] = append(f.syncs[dir], names)
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	return f.FS.SyncDir(dir)
}

// Concurrent deliveries into one mailbox share the sync of its new/
// directory, and none returns before a sync that began after its file
// was linked.
func TestDeliveriesShareDirectorySyncs(t *testing.T) {
	e := mustStoreEnv(t)
	fs := &countingFS{FS: mailstore.OSFS, syncs: map[string][][]string{}}
	st := e.node(t, mailstore.Options{FS: fs})
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), 1<<20)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	newDir := filepath.Join(e.alice.MailboxPath, "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != n {
		t.Fatalf("new/ holds %d messages (%v), want %d", len(ents), err, n)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	syncs := fs.syncs[newDir]
	if len(syncs) >= n {
		t.Fatalf("%d syncs of new/ for %d concurrent deliveries: none was shared", len(syncs), n)
	}
	covered := map[string]bool{}
	for _, names := range syncs {
		for _, nm := range names {
			covered[nm] = true
		}
	}
	for _, ent := range ents {
		if !covered[ent.Name()] {
			t.Errorf("%s was acknowledged without a sync that began after its link", ent.Name())
		}
	}
	t.Logf("%d deliveries, %d syncs of new/", n, len(syncs))
}
