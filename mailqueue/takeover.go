package mailqueue

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"
)

// Takeover hands the queues of gone nodes to live ones. The primary runs
// it: a node's queue is taken over once the node has been gone (Live does
// not list it) for [Queue] TakeoverAfter without a break. Each message
// moves by one rename into a live node's queue, round robin, so it is
// never lost; a node that comes back finds only what was not moved.
//
// A node stops delivering as soon as it is no longer a live member
// (Config.Live), and TakeoverAfter is much longer than that takes, so
// with a graceful stop nothing is sent twice. A node that dies between a
// destination's 250 and the removal of the message leaves it queued: the
// new owner sends it again (at most one duplicate, as with every MTA).
type Takeover struct {
	Spool   Spool
	Self    string
	Setting Setting
	Log     *slog.Logger
	// Live returns the nodes that are members now (holding a Consul
	// session or passing their health check), this one included.
	Live func(ctx context.Context) ([]string, error)
	// Moved, when not nil, is told of every takeover (for the cluster log).
	Moved func(from string, moved int, to []string)

	gone map[string]time.Time // node -> first seen gone
	next int                  // round robin
}

// Step looks at every node's queue once; now is the time of the look.
// It returns how many messages it moved.
func (t *Takeover) Step(ctx context.Context, now time.Time) (int, error) {
	live, err := t.Live(ctx)
	if err != nil {
		return 0, err
	}
	if !slices.Contains(live, t.Self) {
		live = append(live, t.Self)
	}
	slices.Sort(live)
	nodes, err := t.Spool.Nodes()
	if err != nil {
		return 0, err
	}
	if t.gone == nil {
		t.gone = map[string]time.Time{}
	}
	after := t.Setting.duration(KeyTakeoverAfter, DefaultTakeoverAfter)
	total := 0
	for _, n := range nodes {
		if slices.Contains(live, n) {
			delete(t.gone, n)
			continue
		}
		ids, err := t.Spool.IDs(n)
		if err != nil || len(ids) == 0 {
			continue
		}
		since, seen := t.gone[n]
		if !seen {
			t.gone[n] = now
			t.Log.Info("queue: a node with queued mail is gone; its queue is taken over if it stays gone", "node", n, "messages", len(ids), "after", after)
			continue
		}
		if now.Sub(since) < after {
			continue
		}
		moved := 0
		for _, id := range ids {
			if ctx.Err() != nil {
				break
			}
			to := live[t.next%len(live)]
			t.next++
			if err := t.Spool.Move(n, to, id); err != nil {
				if !errors.Is(err, ErrNotFound) {
					t.Log.Error("queue: take over a message", "id", id, "from", n, "to", to, "err", err)
				}
				continue
			}
			moved++
		}
		total += moved
		if moved > 0 {
			t.Log.Info("queue: took over the queue of a gone node", "node", n, "messages", moved, "to", live)
			if t.Moved != nil {
				t.Moved(n, moved, live)
			}
		}
	}
	for n := range t.gone {
		if !slices.Contains(nodes, n) {
			delete(t.gone, n)
		}
	}
	return total, nil
}

// Run calls Step every interval while primary() is true, until ctx ends.
func (t *Takeover) Run(ctx context.Context, interval time.Duration, primary func() bool) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !primary() {
			t.gone = nil // a new primary starts counting afresh
			continue
		}
		if _, err := t.Step(ctx, time.Now()); err != nil && ctx.Err() == nil {
			t.Log.Warn("queue: takeover check", "err", err)
		}
	}
}
