package cluster_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/service"
)

// sendLog records the reports an outbox sends (their size, and when each
// send began and ended) and the sender's pause after each.
type sendLog struct {
	mu          sync.Mutex
	sizes       []int
	calls, rets []time.Time
	pauses      []time.Duration
}

// send records r around apply.
func (l *sendLog) send(apply cluster.SendFunc) cluster.SendFunc {
	return func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		l.mu.Lock()
		l.sizes = append(l.sizes, len(r.Deltas))
		l.calls = append(l.calls, time.Now())
		l.mu.Unlock()
		idx, err := apply(ctx, r)
		l.mu.Lock()
		l.rets = append(l.rets, time.Now())
		l.mu.Unlock()
		return idx, err
	}
}

func (l *sendLog) paced(n int, pause time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pauses = append(l.pauses, pause)
}

// mustPacedOutbox returns a primary and an outbox of node n1 sending to
// it through log, with log's pace hook set.
func mustPacedOutbox(t *testing.T, log *sendLog) (*service.Service, *cluster.Outbox) {
	t.Helper()
	svc, st := MustOpenPrimary(t)
	ob, err := cluster.OpenOutbox(filepath.Join(t.TempDir(), "outbox.db"), "n1", log.send(applyTo(svc)), discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	ob.Store = st
	cluster.SetPaceHook(ob, log.paced)
	return svc, ob
}

// TestOutboxPacesStreamingReports streams reports in: the sender then
// pauses at least MinPace after a send that was not full, so the primary
// applies many deltas per transaction, and it keeps every pause it
// decides; every delta arrives once. Spaced: each report finds the sender
// idle (its send ended before the next report), and still counts as
// streaming.
func TestOutboxPacesStreamingReports(t *testing.T) {
	for _, tc := range []struct {
		name         string
		reports, per int
		every        time.Duration
	}{
		{"Burst", 40, 25, time.Millisecond},
		{"Spaced", 30, 10, 4 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log sendLog
			svc, ob := mustPacedOutbox(t, &log)
			stop := runOutbox(t, ob)
			defer stop()
			batch := make([]mailcluster.UsageDelta, tc.per)
			for range tc.reports {
				for i := range batch {
					batch[i] = delta(10)
				}
				if err := ob.Report(batch...); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.every)
			}
			want := int64(tc.reports * tc.per)
			waitFor(t, func() bool { return ob.Queued() == 0 })
			if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 10*want || u.Messages != want {
				t.Fatalf("usage = %+v, want %d bytes in %d messages", u, 10*want, want)
			}
			stop()
			log.mu.Lock()
			defer log.mu.Unlock()
			total, streaming := 0, 0
			for i, n := range log.sizes {
				total += n
				if i >= len(log.pauses) || i+1 >= len(log.calls) {
					continue
				}
				if log.pauses[i] >= cluster.MinPace {
					streaming++
				}
				if gap := log.calls[i+1].Sub(log.rets[i]); gap < log.pauses[i] {
					t.Errorf("send %d began %s after send %d (%d deltas) ended, within its pause of %s", i+2, gap, i+1, n, log.pauses[i])
				}
			}
			if int64(total) != want {
				t.Errorf("%d deltas sent in %v, want %d", total, log.sizes, want)
			}
			if streaming == 0 {
				t.Errorf("sends %v, pauses %v: none paused for the streaming reports", log.sizes, log.pauses)
			}
			t.Logf("%d deltas in %d sends %v, pauses %v", total, len(log.sizes), log.sizes, log.pauses)
		})
	}
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
	svc, ob := mustPacedOutbox(t, &log)
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
	stop()
	log.mu.Lock()
	defer log.mu.Unlock()
	want := []int{mailcluster.MaxReportDeltas, mailcluster.MaxReportDeltas, 50}
	if !slices.Equal(log.sizes, want) {
		t.Fatalf("sends carried %v deltas, want %v", log.sizes, want)
	}
	if log.pauses[0] != 0 || log.pauses[1] != 0 {
		t.Errorf("pauses after the full sends = %v, want none", log.pauses[:2])
	}
}
