package cluster_test

import (
	"path/filepath"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
)

// ReportAsync counts its deltas as pending from the call on, once (not
// again when their commit makes them pending for good), and they stay
// across a restart, as Report's do; a commit that fails stops counting
// them and says so on the channel.
func TestOutboxReportAsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob, err := cluster.OpenOutbox(path, "node2", nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	ds := []mailcluster.UsageDelta{delta(100), delta(20)}
	ch := ob.ReportAsync(ds...)
	if b, m := ob.Pending("example.com", "alice"); b != 120 || m != 2 {
		t.Errorf("pending at the call = %d, %d; want 120, 2", b, m)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	// The caller's deltas are its own: it may read them while the commit
	// runs (a delivery does), so the commit numbers a copy.
	if ds[0].Seq != 0 || ds[1].Seq != 0 {
		t.Errorf("the commit wrote into the caller's deltas: %+v", ds)
	}
	if b, m := ob.Pending("example.com", "alice"); b != 120 || m != 2 {
		t.Errorf("pending after the commit = %d, %d; want 120, 2", b, m)
	}
	if n := ob.Queued(); n != 2 {
		t.Errorf("%d deltas queued; want 2", n)
	}
	// Deltas waiting for their commit are queued too (a test that waits
	// until nothing is queued must not miss them).
	var chs []<-chan error
	for range 50 {
		chs = append(chs, ob.ReportAsync(delta(0))) // a message of no bytes
	}
	if n := ob.Queued(); n != 52 {
		t.Errorf("%d deltas queued right after 50 more reports; want 52", n)
	}
	for _, c := range chs {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if n := ob.Queued(); n != 52 {
		t.Errorf("%d deltas queued after their commits; want 52", n)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	ob, err = cluster.OpenOutbox(path, "node2", nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	if b, m := ob.Pending("example.com", "alice"); b != 120 || m != 52 {
		t.Errorf("pending after a restart = %d, %d; want 120, 52", b, m)
	}
	ob.Close()
	// A closed outbox cannot commit.
	if err := <-ob.ReportAsync(delta(7)); err == nil {
		t.Error("a commit into a closed file succeeded")
	}
	if b, m := ob.Pending("example.com", "alice"); b != 120 || m != 52 {
		t.Errorf("pending after a failed commit = %d, %d; want 120, 52", b, m)
	}
}
