package cluster_test

import (
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/cluster"
)

// sendLog records the reports an outbox sends, with the time of each.
type sendLog struct {
	mu    sync.Mutex
	sizes []int
	times []time.Time
}

func (l *sendLog) record(r mailcluster.UsageReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sizes = append(l.sizes, len(r.Deltas))
	l.times = append(l.times, time.Now())
}

func (l *sendLog) snapshot() ([]int, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.sizes...), append([]time.Time(nil), l.times...)
}

// TestOutboxPacesStreamingReports streams reports in (many deltas every
// millisecond): once a send's deltas came fast enough to fill
// StreamDeltas within MinPace, the sender waits at least MinPace before
// the next send, so the primary applies many deltas per transaction; and
// every delta arrives once.
func TestOutboxPacesStreamingReports(t *testing.T) {
	var log sendLog
	svc, _, ob := mustPrimaryOutbox(t, "n1", log.record)
	stop := runOutbox(t, ob)
	defer stop()
	const reports, per = 100, 10
	batch := make([]mailcluster.UsageDelta, per)
	for range reports {
		for i := range batch {
			batch[i] = delta(10)
		}
		if err := ob.Report(batch...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { return ob.Queued() == 0 })
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 10*reports*per || u.Messages != reports*per {
		t.Fatalf("usage = %+v, want %d bytes in %d messages", u, 10*reports*per, reports*per)
	}
	sizes, times := log.snapshot()
	total, paced := 0, 0
	for i, n := range sizes {
		total += n
		if i < 2 || sizes[i-1] >= mailcluster.MaxReportDeltas {
			continue
		}
		// The send before came at twice the streaming rate or more
		// (the margin covers the difference between the times seen
		// here and the sender's own).
		window := times[i-1].Sub(times[i-2])
		if time.Duration(sizes[i-1])*cluster.MinPace < 2*cluster.StreamDeltas*window {
			continue
		}
		paced++
		if gap := times[i].Sub(times[i-1]); gap < cluster.MinPace {
			t.Errorf("send %d came %s after a send of %d deltas, want at least %s", i+1, gap, sizes[i-1], cluster.MinPace)
		}
	}
	if total != reports*per {
		t.Errorf("%d deltas sent in %v, want %d", total, sizes, reports*per)
	}
	if paced == 0 {
		t.Errorf("sends %v at %v: none came after a streaming send", sizes, times)
	}
	t.Logf("%d deltas over %s in %d sends (%v)", total, times[len(times)-1].Sub(times[0]).Round(time.Millisecond), len(sizes), sizes)
}

// TestOutboxPace: no pause after a full send; a short one while changes
// come now and then (they reach the primary, and the other nodes' IMAP
// clients, quickly); at least MinPace once reports stream in.
func TestOutboxPace(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		n                  int
		took, window, want time.Duration
	}{
		{mailcluster.MaxReportDeltas, time.Second, 0, 0},
		{1, ms, 0, 2 * ms},
		{50, 3 * ms, 0, 6 * ms}, // after an idle spell: one large report
		{cluster.StreamDeltas, time.Second, 0, 10 * ms},
		{cluster.StreamDeltas - 1, ms, cluster.MinPace, 2 * ms}, // below the streaming rate
		{cluster.StreamDeltas, ms, cluster.MinPace, cluster.MinPace},
		{50, 15 * ms, 30 * ms, 30 * ms},
		{50, time.Second, 30 * ms, 50 * ms},
	} {
		if got := cluster.Pace(tc.n, tc.took, tc.window); got != tc.want {
			t.Errorf("pause after a send of %d deltas that took %s, %s after the one before = %s, want %s", tc.n, tc.took, tc.window, got, tc.want)
		}
	}
}

// TestOutboxSendsFullBatchesAtOnce queues more deltas than one report
// may carry: they go in full reports, and the sender does not pause
// after a full one.
func TestOutboxSendsFullBatchesAtOnce(t *testing.T) {
	var log sendLog
	svc, _, ob := mustPrimaryOutbox(t, "n1", log.record)
	n := 2*mailcluster.MaxReportDeltas + 50
	deltas := make([]mailcluster.UsageDelta, n)
	for i := range deltas {
		deltas[i] = delta(1)
	}
	if err := ob.Report(deltas...); err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	defer stop()
	waitFor(t, func() bool { return ob.Queued() == 0 })
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != int64(n) || u.Messages != int64(n) {
		t.Fatalf("usage = %+v, want %d bytes in %d messages", u, n, n)
	}
	sizes, _ := log.snapshot()
	want := []int{mailcluster.MaxReportDeltas, mailcluster.MaxReportDeltas, 50}
	if len(sizes) != len(want) || sizes[0] != want[0] || sizes[1] != want[1] || sizes[2] != want[2] {
		t.Fatalf("sends carried %v deltas, want %v", sizes, want)
	}
}
