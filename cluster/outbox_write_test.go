package cluster_test

import (
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"mailcluster/cluster"
)

// WriteReport takes deltas at once without a sync of their own: they are
// pending from then on, the sender syncs the file once before it sends
// them, and they keep their place among synced reports.
func TestOutboxWriteReport(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		rec := &recorder{}
		ob := mustOpenOutbox(t, filepath.Join(dir, "outbox.db"), rec.send, discard())
		defer ob.Close()
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		if id, ok := ob.FileSystem(); !ok || id != uint64(st.Dev) {
			t.Fatalf("FileSystem() = %d, %v; want the device %d", id, ok, st.Dev)
		}
		before := cluster.OutboxCommits(ob)
		if err := ob.WriteReport(delta(1), delta(2)); err != nil {
			t.Fatal(err)
		}
		if b, m := ob.Pending("example.com", "alice"); b != 3 || m != 2 {
			t.Fatalf("pending after WriteReport = %d bytes, %d messages; want 3, 2", b, m)
		}
		if n := cluster.OutboxCommits(ob) - before; n != 1 {
			t.Fatalf("WriteReport wrote the file %d times, want once", n)
		}
		rec.drain(t, ob)
		seqs, bytes, _ := rec.sent()
		if len(seqs) != 2 || bytes != 3 {
			t.Fatalf("sent %v (%d bytes), want 2 deltas of 3 bytes", seqs, bytes)
		}
		// The write, then one sync before the send.
		if n := cluster.OutboxCommits(ob) - before; n != 2 {
			t.Fatalf("%d writes and syncs of the file, want 2 (the write, and the sync before the send)", n)
		}
	})
	t.Run("KeepsOrder", func(t *testing.T) {
		rec := &recorder{}
		ob := mustOpenOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), rec.send, discard())
		defer ob.Close()
		stop := runOutbox(t, ob)
		var wg sync.WaitGroup
		errs := make(chan error, 300)
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if w%3 == 0 {
						errs <- ob.Report(delta(1))
					} else {
						errs <- ob.WriteReport(delta(1))
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, func() bool { return ob.Queued() == 0 })
		stop()
		seqs, bytes, _ := rec.sent()
		if len(seqs) != 300 || bytes != 300 {
			t.Fatalf("sent %d deltas of %d bytes, want 300 of 300", len(seqs), bytes)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("sequence numbers sent out of order: %d after %d", seqs[i], seqs[i-1])
			}
		}
	})
	// A WriteReport that writes the file anew first (here: its end was
	// unknown) still leaves its own deltas to be synced before they are
	// sent: the new file holds only the deltas before them.
	t.Run("AfterRewrite", func(t *testing.T) {
		rec := &recorder{down: true}
		ob := mustOpenOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), rec.send, discard())
		defer ob.Close()
		if err := ob.WriteReport(delta(1)); err != nil {
			t.Fatal(err)
		}
		cluster.BreakOutbox(ob)
		if err := ob.WriteReport(delta(2)); err != nil {
			t.Fatal(err)
		}
		if synced, last := cluster.OutboxSynced(ob); synced >= last {
			t.Fatalf("after a rewrite the outbox counts %d of %d as synced: the delta written after the rewrite is not", synced, last)
		}
		before := cluster.OutboxCommits(ob)
		rec.drain(t, ob)
		if seqs, bytes, _ := rec.sent(); len(seqs) != 2 || bytes != 3 {
			t.Fatalf("sent %v (%d bytes), want both deltas", seqs, bytes)
		}
		if cluster.OutboxCommits(ob) == before {
			t.Fatal("the sender sent a written delta without a sync")
		}
	})
	t.Run("Reopened", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		rec := &recorder{down: true}
		ob := mustOpenOutbox(t, path, rec.send, discard())
		if err := ob.WriteReport(delta(5)); err != nil {
			t.Fatal(err)
		}
		if err := cluster.CrashOutbox(ob); err != nil {
			t.Fatal(err)
		}
		ob = mustOpenOutbox(t, path, rec.send, discard())
		defer ob.Close()
		if q := ob.Queued(); q != 1 {
			t.Fatalf("queued after a reopen = %d, want the written delta", q)
		}
		rec.drain(t, ob)
		if seqs, bytes, _ := rec.sent(); len(seqs) != 1 || bytes != 5 {
			t.Fatalf("sent %v (%d bytes), want the written delta", seqs, bytes)
		}
	})
}
