package cluster_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
)

// Concurrent reports share bbolt commits (group commit); every report is
// on disk when Report returns, with a distinct sequence number.
func TestOutboxGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	never := func(context.Context, mailcluster.UsageReport) (uint64, error) { return 0, context.Canceled }
	ob, err := cluster.OpenOutbox(path, "n1", never, discard())
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ob.Report(delta(10)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	commits := cluster.OutboxCommits(ob)
	if commits >= n {
		t.Fatalf("%d commits for %d concurrent reports: none shared", commits, n)
	}
	if b, m := ob.Pending("example.com", "alice"); b != 10*n || m != n {
		t.Fatalf("pending %d bytes in %d messages, want %d in %d", b, m, 10*n, n)
	}
	ob.Close()
	// After a restart every report is still there, each under its own
	// sequence number (a shared one would have overwritten another).
	ob, err = cluster.OpenOutbox(path, "n1", never, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if b, m := ob.Pending("example.com", "alice"); b != 10*n || m != n {
		t.Fatalf("after reopening: pending %d bytes in %d messages, want %d in %d", b, m, 10*n, n)
	}
	if q := ob.Queued(); q != n {
		t.Fatalf("queued %d, want %d", q, n)
	}
	t.Logf("%d reports, %d commits", n, commits)
}
