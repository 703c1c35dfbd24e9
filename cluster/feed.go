package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/schema"
)

// The change feed. Every write of the primary is one Consul transaction
// that, besides the records it changes, writes one feed entry
// (feed/<epoch>/<seq>: the changed keys with their values or tombstones)
// and moves the head (meta/head: epoch and seq) with compare-and-set. All
// operations of a Consul transaction share one raft index, so the index of
// a feed entry is the ModifyIndex of every record it sets.
//
// Every node blocks on the head (a few hundred bytes), reads only the
// entries after its position, and applies each in one local transaction
// together with the new position. A node that finds another epoch, a head
// behind its position, or an entry pruned away re-syncs from a paged full
// read into a new local file, replays the entries written meanwhile, and
// swaps; it serves its old state until then.

// feedPos is a node's position in the feed (also the head's value).
type feedPos struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// metaFeedPos is the name under which the local state keeps its position.
const metaFeedPos = "feed"

// feedEntry is the value of feed/<epoch>/<seq>.
type feedEntry struct {
	ID      string       `json:"id"` // random per commit: tells whether a commit of unknown outcome landed
	Epoch   string       `json:"epoch"`
	Seq     uint64       `json:"seq"`
	At      time.Time    `json:"at"`
	Changes []feedChange `json:"changes"`
}

// feedChange is one changed key of an entry.
type feedChange struct {
	Key     string `json:"k"`
	Value   []byte `json:"v,omitempty"`
	Deleted bool   `json:"d,omitempty"`
	// Index is the record's ModifyIndex when it is not the entry's own
	// (changes made outside mailcluster and adopted by the primary).
	Index uint64 `json:"i,omitempty"`
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// notReplicated reports whether a key under the cluster prefix stays out
// of the replicated state: the election's keys and the feed itself.
func notReplicated(key string) bool {
	return key == "" || key == schema.KeyPrimary || key == keySwitchover || key == schema.KeyHead ||
		strings.HasPrefix(key, schema.PrefixFeed) || strings.HasSuffix(key, "/")
}

// pos returns the local state's feed position.
func (s *ConsulStore) pos() feedPos {
	var p feedPos
	if b := s.state.Meta(metaFeedPos); b != nil {
		_ = json.Unmarshal(b, &p)
	}
	return p
}

func encodePos(p feedPos) []byte {
	b, _ := json.Marshal(p)
	return b
}

// posAdvanced returns a channel closed the next time the position moves.
func (s *ConsulStore) posAdvanced() <-chan struct{} {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	return s.posCh
}

func (s *ConsulStore) signalPos() {
	s.posMu.Lock()
	close(s.posCh)
	s.posCh = make(chan struct{})
	s.posMu.Unlock()
}

// waitPos waits until the local state is at p (or past it in the same
// epoch), or ctx ends.
func (s *ConsulStore) waitPos(ctx context.Context, p feedPos) error {
	for {
		ch := s.posAdvanced()
		cur := s.pos()
		if cur.Epoch == p.Epoch && cur.Seq >= p.Seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// applyEntry applies e, committed at index, if it is the next entry of the
// local state. It reports whether the state now includes e.
func (s *ConsulStore) applyEntry(e *feedEntry, index uint64) (bool, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	p := s.pos()
	if e.Epoch != p.Epoch || e.Seq != p.Seq+1 {
		return e.Epoch == p.Epoch && e.Seq <= p.Seq, nil
	}
	set, del := entryChanges(e, index)
	if err := s.state.Apply(index, set, del, map[string][]byte{metaFeedPos: encodePos(feedPos{e.Epoch, e.Seq})}); err != nil {
		return false, fmt.Errorf("cluster: apply feed entry %d: %w", e.Seq, err)
	}
	s.entriesApplied.Add(1)
	if s.onApply != nil {
		s.onApply(e.Epoch, e.Seq)
	}
	s.signalPos()
	s.logApplied(index, len(e.Changes))
	return true, nil
}

// readHead reads the head; ok is false when there is none or it is
// damaged (index is then the damaged record's ModifyIndex, else 0).
func (s *ConsulStore) readHead(ctx context.Context, q *api.QueryOptions) (h feedPos, index uint64, ok bool, meta *api.QueryMeta, err error) {
	if q == nil {
		q = &api.QueryOptions{RequireConsistent: true}
	}
	pair, meta, err := s.client.KV().Get(s.prefix+schema.KeyHead, q.WithContext(ctx))
	if err != nil {
		return h, 0, false, nil, err
	}
	if pair == nil {
		return h, 0, false, meta, nil
	}
	s.bytesRead.Add(uint64(len(pair.Key) + len(pair.Value)))
	if err := json.Unmarshal(pair.Value, &h); err != nil || h.Epoch == "" {
		// Changed outside mailcluster: as if there were no head (the
		// primary starts a new epoch over it, CAS on its index).
		s.log.Warn("the change feed's head is damaged; the primary starts a new epoch", "value", string(pair.Value[:min(len(pair.Value), 64)]))
		return feedPos{}, pair.ModifyIndex, false, meta, nil
	}
	return h, pair.ModifyIndex, true, meta, nil
}

// errPruned says that an entry the node needs is no longer in the feed.
var errPruned = errors.New("cluster: the feed was pruned past this node's position")

// readEntries reads entries from..to (inclusive) of epoch, at most
// feedReadBatch at a time, and calls fn for each in order.
func (s *ConsulStore) readEntries(ctx context.Context, epoch string, from, to uint64, fn func(*feedEntry, uint64) error) error {
	for from <= to {
		n := min(to-from+1, feedReadBatch)
		ops := make(api.TxnOps, 0, n)
		for seq := from; seq < from+n; seq++ {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.prefix + schema.Feed(epoch, seq)}})
		}
		ok, resp, _, err := s.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("cluster: read feed: %w", err)
		}
		if !ok || len(resp.Results) != int(n) {
			return fmt.Errorf("cluster: read feed: %v", resp.Errors)
		}
		for i, r := range resp.Results {
			if r.KV == nil || len(r.KV.Value) == 0 {
				return errPruned
			}
			s.bytesRead.Add(uint64(len(r.KV.Key) + len(r.KV.Value)))
			var e feedEntry
			if err := json.Unmarshal(r.KV.Value, &e); err != nil || e.Seq != from+uint64(i) || e.Epoch != epoch {
				return fmt.Errorf("cluster: feed entry %d is damaged", from+uint64(i))
			}
			if err := fn(&e, r.KV.ModifyIndex); err != nil {
				return err
			}
		}
		from += n
	}
	return nil
}

// feedReadBatch is how many entries one read transaction fetches.
const feedReadBatch = 64

// catchUp brings the local state to head h.
func (s *ConsulStore) catchUp(ctx context.Context, h feedPos) error {
	p := s.pos()
	if h.Epoch != p.Epoch || h.Seq < p.Seq {
		// A blocking read may answer with a head older than this node's
		// own latest commit: ask again, consistently, before re-reading
		// everything. The position is read first: every position this
		// node reached was committed in Consul before, so a consistent
		// head read after it is at least as far.
		p = s.pos()
		h2, _, ok, _, err := s.readHead(ctx, nil)
		if err != nil {
			return err
		}
		if !ok {
			return nil // no head (yet): nothing to follow
		}
		h = h2
		if own, _ := s.ownEpoch.Load().(string); own != "" && p.Epoch == own && h.Epoch != own {
			return nil // this primary is starting a new epoch: its first entry is on its way
		}
		if h.Epoch != p.Epoch || h.Seq < p.Seq {
			return s.resync(ctx, "the feed's epoch or head differs from this node's position")
		}
	}
	if h.Seq == p.Seq {
		return nil
	}
	err := s.readEntries(ctx, h.Epoch, p.Seq+1, h.Seq, func(e *feedEntry, index uint64) error {
		_, err := s.applyEntry(e, index)
		return err
	})
	if errors.Is(err, errPruned) {
		return s.resync(ctx, "the feed was pruned past this node's position")
	}
	return err
}

// resync rebuilds the local state from a paged full read of Consul, then
// replays the entries written while it read, and swaps the new state in.
func (s *ConsulStore) resync(ctx context.Context, why string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.resyncOnce(ctx, nil); err == nil || ctx.Err() != nil {
			break
		}
		s.log.Warn("re-sync of the replicated state failed; trying again", "err", err)
	}
	if err != nil {
		return err
	}
	s.resyncs.Add(1)
	p := s.pos()
	s.log.Info("re-synced the replicated state from consul", "why", why, "epoch", p.Epoch, "seq", p.Seq)
	if s.Events != nil {
		s.Events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventReplicationResync, Message: "this node re-read the whole replicated state: " + why,
			Fields: map[string]string{"epoch": p.Epoch, "seq": fmt.Sprint(p.Seq)}})
	}
	s.signalPos()
	return nil
}

// resyncOnce does one rebuild. With start set (a new epoch begun by this
// primary), the state ends at that position instead of the head's.
// s.applyMu must be held.
func (s *ConsulStore) resyncOnce(ctx context.Context, start *feedPos) error {
	h0, _, haveHead, _, err := s.readHead(ctx, nil)
	if err != nil {
		return err
	}
	rb, err := s.state.Rebuild()
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = rb.Abort()
		}
	}()
	maxIndex, err := s.readAll(ctx, func(kvs []mailcluster.KV) error { return rb.Put(kvs) })
	if err != nil {
		return err
	}
	end := feedPos{}
	if start != nil {
		end = *start
	} else if haveHead {
		h, hIndex, ok, _, err := s.readHead(ctx, nil)
		if err != nil {
			return err
		}
		if !ok || h.Epoch != h0.Epoch || h.Seq < h0.Seq {
			return errors.New("cluster: the feed head moved back while re-syncing")
		}
		err = s.readEntries(ctx, h.Epoch, h0.Seq+1, h.Seq, func(e *feedEntry, index uint64) error {
			set, del := entryChanges(e, index)
			maxIndex = max(maxIndex, index)
			return rb.Apply(index, set, del)
		})
		if err != nil {
			return err
		}
		end = h
		maxIndex = max(maxIndex, hIndex)
	}
	if err := rb.Commit(maxIndex, map[string][]byte{metaFeedPos: encodePos(end)}); err != nil {
		return err
	}
	committed = true
	return nil
}

// entryChanges splits an entry into records to set and keys to delete.
func entryChanges(e *feedEntry, index uint64) ([]mailcluster.KV, []string) {
	var set []mailcluster.KV
	var del []string
	for _, c := range e.Changes {
		if c.Deleted {
			del = append(del, c.Key)
			continue
		}
		idx := index
		if c.Index != 0 {
			idx = c.Index
		}
		set = append(set, mailcluster.KV{Key: c.Key, Value: c.Value, ModifyIndex: idx})
	}
	return set, del
}

// readAll reads every replicated record under the prefix in pages (one
// list per second-level folder, e.g. accounts/<domain>/, and the loose
// keys in transactions of feedReadBatch), calling fn per page in key
// order, and returns the largest ModifyIndex seen. Up to readAllWorkers
// pages are read from Consul at once, at most readAllAhead ahead of fn,
// so that a catch-up waits on Consul's answers and the snapshot's writes
// together rather than one after the other.
func (s *ConsulStore) readAll(ctx context.Context, fn func([]mailcluster.KV) error) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs, err := s.readAllJobs(ctx)
	if err != nil {
		return 0, err
	}
	type result struct {
		pairs api.KVPairs
		err   error
	}
	results := make([]chan result, len(jobs))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	ahead := make(chan struct{}, readAllAhead) // pages read and not yet given to fn
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range jobs {
			select {
			case ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range min(readAllWorkers, len(jobs)) {
		go func() {
			for i := range next {
				pairs, err := s.readJob(ctx, jobs[i])
				results[i] <- result{pairs, err}
			}
		}()
	}
	var maxIndex uint64
	for i := range jobs {
		var r result
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		<-ahead
		if r.err != nil {
			return 0, r.err
		}
		out := make([]mailcluster.KV, 0, len(r.pairs))
		for _, p := range r.pairs {
			s.bytesRead.Add(uint64(len(p.Key) + len(p.Value)))
			key := strings.TrimPrefix(p.Key, s.prefix)
			if notReplicated(key) {
				continue
			}
			maxIndex = max(maxIndex, p.ModifyIndex)
			out = append(out, mailcluster.KV{Key: key, Value: p.Value, ModifyIndex: p.ModifyIndex})
		}
		if len(out) == 0 {
			continue
		}
		if err := fn(out); err != nil {
			return 0, err
		}
	}
	return maxIndex, nil
}

const (
	// readAllWorkers is how many pages readAll reads from Consul at once.
	readAllWorkers = 4
	// readAllAhead bounds the pages read and not yet applied (each a
	// folder of records, e.g. one domain's accounts).
	readAllAhead = 16
)

// readAllJob is one page of readAll: the records under prefix, or the
// loose keys named.
type readAllJob struct {
	prefix string
	keys   []string
}

// readAllJobs lists the pages of readAll in key order: a list per folder
// without sub-folders, then the loose keys in batches of feedReadBatch.
func (s *ConsulStore) readAllJobs(ctx context.Context) ([]readAllJob, error) {
	kv := s.client.KV()
	q := (&api.QueryOptions{}).WithContext(ctx)
	top, _, err := kv.Keys(s.prefix, "/", q)
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s: %w", s.prefix, err)
	}
	var jobs []readAllJob
	var leaves []string
	for _, k := range top {
		rel := strings.TrimPrefix(k, s.prefix)
		if rel == schema.PrefixFeed {
			continue
		}
		if !strings.HasSuffix(rel, "/") {
			if !notReplicated(rel) {
				leaves = append(leaves, k)
			}
			continue
		}
		subs, _, err := kv.Keys(k, "/", q)
		if err != nil {
			return nil, fmt.Errorf("cluster: list %s: %w", k, err)
		}
		dirs := false
		for _, sub := range subs {
			if strings.HasSuffix(sub, "/") {
				dirs = true
				break
			}
		}
		if !dirs {
			jobs = append(jobs, readAllJob{prefix: k})
			continue
		}
		for _, sub := range subs {
			if !strings.HasSuffix(sub, "/") {
				leaves = append(leaves, sub)
				continue
			}
			jobs = append(jobs, readAllJob{prefix: sub})
		}
	}
	for len(leaves) > 0 {
		n := min(len(leaves), feedReadBatch)
		jobs = append(jobs, readAllJob{keys: leaves[:n:n]})
		leaves = leaves[n:]
	}
	return jobs, nil
}

// readJob reads one page of readAll from Consul.
func (s *ConsulStore) readJob(ctx context.Context, j readAllJob) (api.KVPairs, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if j.keys == nil {
		pairs, _, err := s.client.KV().List(j.prefix, q)
		if err != nil {
			return nil, fmt.Errorf("cluster: list %s: %w", j.prefix, err)
		}
		return pairs, nil
	}
	ops := make(api.TxnOps, 0, len(j.keys))
	for _, k := range j.keys {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}})
	}
	ok, resp, _, err := s.client.Txn().Txn(ops, q)
	if err != nil || !ok {
		return nil, fmt.Errorf("cluster: read keys: %v %v", err, resp)
	}
	var pairs api.KVPairs
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.ModifyIndex != 0 {
			pairs = append(pairs, r.KV)
		}
	}
	return pairs, nil
}
