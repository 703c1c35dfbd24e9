package cluster_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/service"
)

// Reporters that report again as soon as their report is on disk (a
// stream of deliveries) share commits: the loop gathers those it released
// instead of committing them apart from those that came in meanwhile.
func TestOutboxStreamingReportsShareCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	never := func(context.Context, mailcluster.UsageReport) (uint64, error) { return 0, context.Canceled }
	ob, err := cluster.OpenOutbox(path, "n1", never, discard())
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 40
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := ob.Report(delta(1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	const n = goroutines * each
	commits := cluster.OutboxCommits(ob)
	t.Logf("%d reports from %d goroutines in %d commits", n, goroutines, commits)
	// Without gathering, the batches alternate (about n/4 commits); with
	// it most commits carry all eight reporters (about n/8).
	if commits > n/6 {
		t.Fatalf("%d commits for %d reports from %d reporters, want at most %d", commits, n, goroutines, n/6)
	}
	ob.Close()
	ob, err = cluster.OpenOutbox(path, "n1", never, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if q := ob.Queued(); q != n {
		t.Fatalf("queued after reopening = %d, want %d", q, n)
	}
}

// What the primary acknowledged leaves the file with the next commit of
// reports, without a commit of its own.
func TestOutboxRemovesSentWithNextCommit(t *testing.T) {
	svc, _, ob := mustPrimaryOutbox(t, "n1", nil)
	stop := runOutbox(t, ob)
	defer stop()
	for i := range 3 {
		if err := ob.Report(delta(10)); err != nil {
			t.Fatal(err)
		}
		// The deltas sent before this report are gone with its commit.
		if n := cluster.OutboxFileDeltas(ob); n > 1 {
			t.Fatalf("after report %d the file holds %d deltas, want at most this one", i+1, n)
		}
		waitFor(t, func() bool { return ob.Queued() == 0 })
	}
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Messages != 3 || u.Bytes != 30 {
		t.Fatalf("usage = %+v, want 30 bytes in 3 messages", u)
	}
	// The idle sender removes the last one itself.
	waitFor(t, func() bool { return cluster.OutboxFileDeltas(ob) == 0 })
}

// A crash after the primary applied a batch and before the outbox removed
// it: after the restart the outbox sends it again, the primary counts it
// once, and nothing is lost; a clean close leaves nothing to send again.
func TestOutboxCrashAfterSend(t *testing.T) {
	svc, st := MustOpenPrimary(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	var mu sync.Mutex
	var resent int
	send := applyTo(svc)
	counting := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		mu.Lock()
		resent += len(r.Deltas)
		mu.Unlock()
		return send(ctx, r)
	}
	ob, err := cluster.OpenOutbox(path, "n1", send, discard())
	if err != nil {
		t.Fatal(err)
	}
	ob.Store = st
	stop := runOutbox(t, ob)
	if err := ob.Report(delta(100), delta(50)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ob.Queued() == 0 })
	stop()
	if n := cluster.OutboxFileDeltas(ob); n != 2 {
		t.Fatalf("the file holds %d deltas before the crash, want the 2 sent (not removed yet)", n)
	}
	if err := cluster.CrashOutbox(ob); err != nil {
		t.Fatal(err)
	}

	ob, err = cluster.OpenOutbox(path, "n1", counting, discard())
	if err != nil {
		t.Fatal(err)
	}
	ob.Store = st
	if b, m := ob.Pending("example.com", "alice"); b != 0 || m != 0 {
		t.Fatalf("pending after the restart = %d, %d; the primary has published them", b, m)
	}
	if err := ob.Report(delta(7)); err != nil {
		t.Fatal(err)
	}
	stop = runOutbox(t, ob)
	waitFor(t, func() bool { return ob.Queued() == 0 })
	stop()
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Messages != 3 || u.Bytes != 157 {
		t.Fatalf("usage = %+v, want 157 bytes in 3 messages (each change once)", u)
	}
	if resent != 3 {
		t.Fatalf("sent %d deltas after the restart, want the 2 not removed and the new one", resent)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	ob, err = cluster.OpenOutbox(path, "n1", counting, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if q := ob.Queued(); q != 0 {
		t.Fatalf("queued after a clean close = %d, want 0", q)
	}
}

// applyTo sends reports to svc's ApplyUsageReport as the node's outbox
// does on its own primary.
func applyTo(svc *service.Service) cluster.SendFunc {
	return func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
	}
}
