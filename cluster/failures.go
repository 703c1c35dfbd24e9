package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"mailcluster"
)

// FailureReporter carries failed logins to the primary, which counts them
// and decides blocks and freezes. While no primary is reachable it keeps
// them (up to MaxQueued) and lets the node decide on its own copy; once a
// primary answers again, the node's own decisions are dropped (the
// primary's state wins) and the queued failures are counted by the
// primary, so repeat offenders stay counted. Both transitions are written
// to the cluster log. It implements mailcluster.FailureSink.
type FailureReporter struct {
	// Send delivers failures to the primary (directly when this node is
	// primary, else over the internal API).
	Send func(ctx context.Context, fs []mailcluster.LoginFailure) error
	// DecideLocally and ClearLocal are the service's local decisions.
	DecideLocally func(fs []mailcluster.LoginFailure)
	ClearLocal    func() int
	Events        mailcluster.ClusterLog
	Log           *slog.Logger
	// MaxQueued bounds the queue; 0 means 10000 (the oldest are dropped).
	MaxQueued int

	mu       sync.Mutex
	queue    []queuedFailure // oldest first, by seq
	seq      uint64          // of the last failure queued
	kick     chan struct{}
	degraded bool
	once     sync.Once
}

type queuedFailure struct {
	f       mailcluster.LoginFailure
	seq     uint64 // rises with every failure queued
	decided bool   // counted locally already
}

var _ mailcluster.FailureSink = (*FailureReporter)(nil)

func (r *FailureReporter) init() {
	r.once.Do(func() { r.kick = make(chan struct{}, 1) })
}

// Report queues a failure and wakes the sender; it never blocks.
func (r *FailureReporter) Report(f mailcluster.LoginFailure) {
	r.init()
	max := r.MaxQueued
	if max <= 0 {
		max = 10000
	}
	r.mu.Lock()
	if len(r.queue) >= max {
		r.queue = r.queue[1:]
	}
	r.seq++
	r.queue = append(r.queue, queuedFailure{f: f, seq: r.seq})
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Queued returns how many failures wait for the primary.
func (r *FailureReporter) Queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// Run sends queued failures until ctx ends.
func (r *FailureReporter) Run(ctx context.Context) {
	r.init()
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		n := min(len(r.queue), 500)
		batch := make([]mailcluster.LoginFailure, n)
		var undecided []mailcluster.LoginFailure
		// last identifies the batch: Report may drop the oldest while the
		// batch is in flight, so positions in the queue shift; sequence
		// numbers do not.
		var last uint64
		if n > 0 {
			last = r.queue[n-1].seq
		}
		for i := range n {
			batch[i] = r.queue[i].f
			if !r.queue[i].decided {
				undecided = append(undecided, r.queue[i].f)
			}
		}
		r.mu.Unlock()
		if n > 0 {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.Send(sctx, batch)
			cancel()
			if err == nil {
				r.mu.Lock()
				r.queue = r.queue[r.through(last):]
				wasDegraded := r.degraded
				r.degraded = false
				r.mu.Unlock()
				backoff = 100 * time.Millisecond
				if wasDegraded {
					dropped := r.ClearLocal()
					r.record("info", mailcluster.EventScreeningPrimaryBack,
						"a primary is reachable again: its screening state replaces this node's own decisions; queued failures were sent to it",
						map[string]string{"dropped_local_decisions": strconv.Itoa(dropped), "sent_failures": strconv.Itoa(n)})
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if len(undecided) > 0 {
				r.DecideLocally(undecided)
				r.mu.Lock()
				for i := range r.through(last) {
					r.queue[i].decided = true
				}
				first := !r.degraded
				r.degraded = true
				r.mu.Unlock()
				if first {
					r.record("warn", mailcluster.EventScreeningLocal, "no primary is reachable: this node decides dynamic screening on its own copy and keeps the failures for the primary",
						map[string]string{"err": fmt.Sprint(err)})
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
	}
}

// through returns how many queued failures, from the front, have a
// sequence number up to last (those of a batch still queued). r.mu is held.
func (r *FailureReporter) through(last uint64) int {
	i := 0
	for i < len(r.queue) && r.queue[i].seq <= last {
		i++
	}
	return i
}

func (r *FailureReporter) record(level string, event mailcluster.EventKind, msg string, fields map[string]string) {
	if r.Events != nil {
		r.Events.Record(mailcluster.ClusterEvent{Level: level, Event: event, Message: msg, Fields: fields})
	} else if r.Log != nil {
		r.Log.Info(msg, "event", event)
	}
}
