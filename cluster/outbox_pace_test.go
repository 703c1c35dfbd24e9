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

// TestOutboxPacesStreamingReports streams reports in (a few deltas
// every millisecond): once a send carries StreamDeltas or more, the
// sender waits at least MinPace before the next one, so the primary
// applies many deltas per transaction, and every delta arrives once.
func TestOutboxPacesStreamingReports(t *testing.T) {
	var log sendLog
	svc, _, ob := mustPrimaryOutbox(t, "n1", log.record)
	stop := runOutbox(t, ob)
	defer stop()
	const reports, per = 100, 4
	for range reports {
		if err := ob.Report(delta(10), delta(10), delta(10), delta(10)); err != nil {
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
		if i > 0 && sizes[i-1] >= cluster.StreamDeltas && sizes[i-1] < mailcluster.MaxReportDeltas {
			paced++
			if gap := times[i].Sub(times[i-1]); gap < cluster.MinPace {
				t.Errorf("send %d came %s after a send of %d deltas, want at least %s", i+1, gap, sizes[i-1], cluster.MinPace)
			}
		}
	}
	if total != reports*per {
		t.Errorf("%d deltas sent in %v, want %d", total, sizes, reports*per)
	}
	if paced == 0 {
		t.Errorf("sends %v: none carried %d deltas or more, so none was paced", sizes, cluster.StreamDeltas)
	}
	t.Logf("%d deltas over %s in %d sends", total, times[len(times)-1].Sub(times[0]).Round(time.Millisecond), len(sizes))
}

// TestOutboxPace: no pause after a full send; a short one after a small
// send (a change now and then reaches the primary, and the other nodes'
// IMAP clients, quickly); at least MinPace once reports stream in.
func TestOutboxPace(t *testing.T) {
	for _, tc := range []struct {
		n          int
		took, want time.Duration
	}{
		{mailcluster.MaxReportDeltas, time.Second, 0},
		{1, time.Millisecond, 2 * time.Millisecond},
		{cluster.StreamDeltas - 1, time.Second, 10 * time.Millisecond},
		{cluster.StreamDeltas, time.Millisecond, cluster.MinPace},
		{50, 15 * time.Millisecond, 30 * time.Millisecond},
		{50, time.Second, 50 * time.Millisecond},
	} {
		if got := cluster.Pace(tc.n, tc.took); got != tc.want {
			t.Errorf("pause after a send of %d deltas that took %s = %s, want %s", tc.n, tc.took, got, tc.want)
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
