package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/schema"
)

// Writes made outside mailcluster. Someone may edit a key in the Consul UI
// or with the consul CLI: such a change is in Consul but not in the feed,
// so no node would apply it. The primary watches the index of the whole
// prefix with a blocking query that lists only the top-level folders (a
// few hundred bytes); when the index moves past every write the cluster
// itself made (its commits, the election's keys, the head), it compares
// Consul's content with its own state and publishes the differences in the
// feed (with checks that Consul still holds what it read), so that every
// node converges on Consul's content; each difference is written to the
// cluster log. (A Consul snapshot restored moves the head back, which
// makes every node re-sync instead.) The watch looks at most once per
// OutsideCheckEvery; an outside write followed by one of the primary's own
// commits before the watch looks is found by the full comparison the
// primary makes every ReconcileEvery.

// watchOutside runs on every node and acts only while it is primary.
func (s *ConsulStore) watchOutside(ctx context.Context, wait time.Duration) {
	every, full := s.OutsideCheckEvery, s.ReconcileEvery
	if every <= 0 {
		every = time.Second
	}
	if full <= 0 {
		full = 10 * time.Minute
	}
	pause := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	var index uint64
	lastFull := time.Now()
	for ctx.Err() == nil {
		if s.Session == nil || s.Session() == "" {
			index, lastFull = 0, time.Now()
			if !pause(250 * time.Millisecond) {
				return
			}
			continue
		}
		start := time.Now()
		// The first look (after becoming primary) checks too: a change
		// made while no primary watched is found then.
		_, meta, err := s.client.KV().Keys(s.prefix, "/", (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			index = 0
			if !pause(time.Second) {
				return
			}
			continue
		}
		prev := index
		index = meta.LastIndex
		check := (prev == 0 || index > prev) && !s.explained(ctx, index)
		if !check && time.Since(lastFull) >= full {
			// An outside change followed by one of this node's own commits
			// before the watch looked is not seen by the index: compare
			// everything now and then.
			check = true
		}
		if check {
			if err := s.reconcile(ctx); err != nil {
				s.log.Warn("checking for changes made outside mailcluster failed", "err", err)
			}
			lastFull = time.Now()
		}
		// At most one look per interval: the query makes Consul walk the
		// whole prefix, and every write of the primary wakes it.
		if d := every - time.Since(start); d > 0 && !pause(d) {
			return
		}
	}
}

// explained reports whether the prefix's index is that of a write the
// cluster made itself.
func (s *ConsulStore) explained(ctx context.Context, index uint64) bool {
	// A commit in flight is recorded once its outcome is known: wait for it.
	s.commitMu.Lock()
	ours := s.commits.has(index)
	s.commitMu.Unlock()
	if ours {
		return true
	}
	ops := api.TxnOps{}
	for _, k := range []string{schema.KeyPrimary, keySwitchover, schema.KeyHead} {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.prefix + k}})
	}
	ok, resp, _, err := s.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || !ok {
		return true // cannot tell now; the next change looks again
	}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.ModifyIndex == index {
			return true
		}
	}
	return false
}

// reconcile compares Consul's content with the local state and publishes
// the differences through the feed.
func (s *ConsulStore) reconcile(ctx context.Context) error {
	start := s.commits.latest()
	var changes []feedChange
	seen := map[string]bool{}
	_, err := s.readAll(ctx, func(kvs []mailcluster.KV) error {
		for _, kv := range kvs {
			seen[kv.Key] = true
			cur, ok := s.state.Get(kv.Key)
			if ok && cur.ModifyIndex == kv.ModifyIndex && string(cur.Value) == string(kv.Value) {
				continue
			}
			changes = append(changes, feedChange{Key: kv.Key, Value: kv.Value, Index: kv.ModifyIndex})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for after := ""; ; {
		page := s.state.List("", after, 1000)
		if len(page) == 0 {
			break
		}
		for _, kv := range page {
			// A record this node wrote after the read began was not seen.
			if !seen[kv.Key] && kv.ModifyIndex <= start {
				changes = append(changes, feedChange{Key: kv.Key, Deleted: true})
			}
		}
		after = page[len(page)-1].Key
	}
	// A difference may be one of this node's own commits made while the
	// pages were read (Consul had it, this node had not applied it yet):
	// look again now, once no commit is in flight (a commit whose answer
	// was lost is recorded only when its outcome is known).
	s.commitMu.Lock()
	kept := changes[:0]
	for _, c := range changes {
		cur, ok := s.state.Get(c.Key)
		switch {
		case !c.Deleted && (s.commits.has(c.Index) || ok && cur.ModifyIndex == c.Index && string(cur.Value) == string(c.Value)):
		case c.Deleted && !ok:
		default:
			kept = append(kept, c)
		}
	}
	s.commitMu.Unlock()
	changes = kept
	if len(changes) == 0 {
		return nil
	}
	s.external.Add(uint64(len(changes)))
	keys := make([]string, 0, 10)
	for _, c := range changes[:min(len(changes), 10)] {
		keys = append(keys, c.Key)
	}
	s.log.Warn("found changes made outside mailcluster in consul; publishing them to every node", "keys", len(changes))
	if s.Events != nil {
		s.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventExternalWrite,
			Message: "records were changed in Consul outside mailcluster; every node takes Consul's content",
			Fields:  map[string]string{"count": fmt.Sprint(len(changes)), "keys": strings.Join(keys, " ")}})
	}
	for len(changes) > 0 {
		n := min(len(changes), maxTxnOps)
		size := 0
		for n > 1 {
			size = 0
			for _, c := range changes[:n] {
				size += opSize(c.Key, c.Value)
			}
			if size <= txnBudget {
				break
			}
			n /= 2
		}
		if _, err := s.submit(ctx, &writeReq{adopt: changes[:n], size: size}); err != nil {
			return err
		}
		changes = changes[n:]
	}
	return nil
}
