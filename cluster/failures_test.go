package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
)

// failure returns the i-th made-up login failure.
func failure(i int) mailcluster.LoginFailure {
	return mailcluster.LoginFailure{Address: fmt.Sprintf("user%d@example.com", i), IP: "192.0.2.1", Proto: "smtp"}
}

// failureIDs maps failures back to the i given to failure.
func failureIDs(fs []mailcluster.LoginFailure) []int {
	ids := make([]int, 0, len(fs))
	for _, f := range fs {
		var i int
		if _, err := fmt.Sscanf(f.Address, "user%d@example.com", &i); err == nil {
			ids = append(ids, i)
		}
	}
	return ids
}

// primaryFake is the primary's side of a FailureReporter: it records every
// batch it is sent and, when gate is set, holds the first call until gate
// is closed. err is the answer of every call.
type primaryFake struct {
	gate    chan struct{}
	entered chan struct{} // closed when the first call is in flight
	err     error

	mu      sync.Mutex
	calls   int
	batches [][]int
	decided []int // what the node decided on its own
}

func newPrimaryFake(gated bool, err error) *primaryFake {
	p := &primaryFake{entered: make(chan struct{}), err: err}
	if gated {
		p.gate = make(chan struct{})
	}
	return p
}

func (p *primaryFake) Send(ctx context.Context, fs []mailcluster.LoginFailure) error {
	p.mu.Lock()
	p.calls++
	first := p.calls == 1
	p.batches = append(p.batches, failureIDs(fs))
	p.mu.Unlock()
	if first {
		close(p.entered)
		if p.gate != nil {
			select {
			case <-p.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return p.err
}

func (p *primaryFake) DecideLocally(fs []mailcluster.LoginFailure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decided = append(p.decided, failureIDs(fs)...)
}

func (p *primaryFake) Calls() int { p.mu.Lock(); defer p.mu.Unlock(); return p.calls }

// Sent returns how often each failure was sent.
func (p *primaryFake) Sent() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[int]int{}
	for _, b := range p.batches {
		for _, i := range b {
			m[i]++
		}
	}
	return m
}

func (p *primaryFake) Decided() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.decided)
}

// runReporter runs r until the test ends.
func runReporter(t *testing.T, r *cluster.FailureReporter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func newReporter(p *primaryFake, max int) *cluster.FailureReporter {
	return &cluster.FailureReporter{Send: p.Send, DecideLocally: p.DecideLocally,
		ClearLocal: func() int { return 0 }, Log: discard(), MaxQueued: max}
}

// TestFailureReporterCap: the queue never holds more than MaxQueued
// failures; the oldest are dropped and the newest reach the primary.
func TestFailureReporterCap(t *testing.T) {
	p := newPrimaryFake(false, nil)
	r := newReporter(p, 3)
	for i := 1; i <= 5; i++ {
		r.Report(failure(i))
		if q, want := r.Queued(), min(i, 3); q != want {
			t.Fatalf("after %d reports Queued = %d, want %d", i, q, want)
		}
	}
	runReporter(t, r)
	waitFor(t, func() bool { return r.Queued() == 0 })
	want := map[int]int{3: 1, 4: 1, 5: 1}
	if got := p.Sent(); !equalCounts(got, want) {
		t.Errorf("sent %v, want the newest three once each %v", got, want)
	}
}

// TestFailureReporterTrimWhileSending: failures reported while a batch is
// in flight, and that push the oldest out of a full queue, are still sent
// once the batch is through (only the oldest, which were in that batch
// anyway, leave the queue).
func TestFailureReporterTrimWhileSending(t *testing.T) {
	p := newPrimaryFake(true, nil)
	r := newReporter(p, 4)
	for i := 1; i <= 4; i++ {
		r.Report(failure(i))
	}
	runReporter(t, r)
	<-p.entered // batch 1..4 in flight
	r.Report(failure(5))
	r.Report(failure(6)) // the full queue drops 1 and 2
	if q := r.Queued(); q != 4 {
		t.Fatalf("Queued = %d during the send, want the cap 4", q)
	}
	close(p.gate)
	// The queue shrinks only once the sent batch has been taken off it.
	waitFor(t, func() bool { return r.Queued() != 4 })
	r.Report(failure(7)) // the positive signal: sent after whatever was left
	waitFor(t, func() bool { return p.Sent()[7] == 1 })
	want := map[int]int{1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}
	if got := p.Sent(); !equalCounts(got, want) {
		t.Errorf("sent %v, want every failure once %v", got, want)
	}
	if q := r.Queued(); q != 0 {
		t.Errorf("Queued = %d after everything was sent", q)
	}
}

// TestFailureReporterTrimWhileFailing: while no primary answers, every
// failure is decided on locally exactly once, also those reported (and
// shifting the full queue) while a failing send was in flight.
func TestFailureReporterTrimWhileFailing(t *testing.T) {
	p := newPrimaryFake(true, errors.New("no primary"))
	r := newReporter(p, 4)
	for i := 1; i <= 4; i++ {
		r.Report(failure(i))
	}
	runReporter(t, r)
	<-p.entered
	r.Report(failure(5))
	r.Report(failure(6))
	close(p.gate)
	// Each failed send is followed by the local decision on its batch; the
	// third send comes after the second batch (3..6) was decided on.
	waitFor(t, func() bool { return p.Calls() >= 3 })
	got := p.Decided()
	slices.Sort(got)
	if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("decided locally %v, want each failure once %v", got, want)
	}
	if q := r.Queued(); q != 4 {
		t.Errorf("Queued = %d, want the cap 4 kept for the primary", q)
	}
}

func equalCounts(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
