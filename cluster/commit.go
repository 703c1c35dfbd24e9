package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/schema"
)

// Group commit. Writes queue for one committer goroutine, which puts every
// write waiting at that moment into one Consul transaction (within
// Consul's limits of operations and bytes): check-session on the primary
// key, the writes' operations, the feed entry and the head's
// compare-and-set. A write whose check fails fails alone; the others are
// sent again. When the outcome of a transaction is unknown (the connection
// broke after sending), the committer reads the head to find out whether
// it committed, and fences it off with a write of the head when it did not,
// so every write gets a definite answer.

const (
	// txnMaxOps is Consul's limit of operations in one transaction.
	txnMaxOps = 128
	// maxTxnOps is how many operations one write may hold: the limit less
	// check-session, the feed entry and the head.
	maxTxnOps = txnMaxOps - 3
	// txnBudget bounds the estimated size of one transaction request,
	// below Consul's txn_max_req_len (512 KiB) and kv_max_value_size.
	txnBudget = 400 << 10
	// pruneMax is how many old feed entries one transaction deletes at most.
	pruneMax = 16
)

// writeReq is one Txn call waiting for the committer.
type writeReq struct {
	ops  []mailcluster.Op
	size int
	done chan writeResult
	// adopt carries records changed outside mailcluster, with their
	// Consul indexes, to be published in the feed (no record operations).
	adopt []feedChange
}

type writeResult struct {
	index uint64
	err   error
}

// opSize estimates an operation's share of a transaction request: the
// record itself and its copy in the feed entry (values are base64).
func opSize(key string, value []byte) int { return 2*(len(key)+len(value)*4/3) + 96 }

func (r *writeReq) nops() int {
	if r.adopt != nil {
		return len(r.adopt)
	}
	return len(r.ops)
}

// resolveTimeout bounds finding out the outcome of a transaction whose
// answer was lost (a Consul leader election takes a few seconds).
const resolveTimeout = 8 * time.Second

// notSent reports whether a failed transaction call certainly changed
// nothing: the connection to the agent could not be made, or Consul
// refused it for want of a leader before it reached the raft log.
func notSent(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "No cluster leader") ||
		strings.Contains(msg, "no such host")
}

// headState is what the committer knows of the head.
type headState struct {
	pos   feedPos
	index uint64 // the head's ModifyIndex (0: it does not exist)
}

// commitLoop runs the committer until s.stop is closed.
func (s *ConsulStore) commitLoop() {
	defer close(s.stopped)
	var carry *writeReq
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-s.reqs:
			case <-s.stop:
				return
			}
		}
		batch := []*writeReq{first}
		keys := map[string]bool{}
		addKeys := func(r *writeReq) {
			for _, op := range r.ops {
				keys[op.Key] = true
			}
			for _, c := range r.adopt {
				keys[c.Key] = true
			}
		}
		addKeys(first)
		nops, size := first.nops(), first.size
	gather:
		for {
			select {
			case r := <-s.reqs:
				if nops+r.nops() > maxTxnOps || size+r.size > txnBudget || overlaps(keys, r) {
					carry = r
					break gather
				}
				batch = append(batch, r)
				addKeys(r)
				nops += r.nops()
				size += r.size
			default:
				break gather
			}
		}
		s.commitMu.Lock()
		unreachable := s.commitBatch(batch)
		s.commitMu.Unlock()
		if unreachable != nil {
			// The writes that queued while Consul did not answer would wait
			// as long again: they get the same answer now (nothing of them
			// was sent).
			if carry != nil {
				finish([]*writeReq{carry}, 0, unreachable)
				carry = nil
			}
			for drained := false; !drained; {
				select {
				case r := <-s.reqs:
					finish([]*writeReq{r}, 0, unreachable)
				default:
					drained = true
				}
			}
		}
	}
}

func overlaps(keys map[string]bool, r *writeReq) bool {
	for _, op := range r.ops {
		if keys[op.Key] {
			return true
		}
	}
	for _, c := range r.adopt {
		if keys[c.Key] {
			return true
		}
	}
	return false
}

func finish(reqs []*writeReq, index uint64, err error) {
	for _, r := range reqs {
		r.done <- writeResult{index: index, err: err}
	}
}

// commitBatch commits the batch, sending again the writes of a failed
// transaction that did not cause its failure. It returns the error given
// to the batch when Consul could not be reached (nil otherwise).
func (s *ConsulStore) commitBatch(batch []*writeReq) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.commitTimeout())
	defer cancel()
	for attempt := 0; len(batch) > 0; attempt++ {
		if attempt == 8 {
			finish(batch, 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The cluster state is busy; nothing was changed: try again."))
			return nil
		}
		session := ""
		if s.Session != nil {
			session = s.Session()
		}
		if session == "" {
			s.head = nil
			finish(batch, 0, mailcluster.Errorf(mailcluster.EREADONLY, "This node is not the primary."))
			return nil
		}
		if err := s.ensureHead(ctx); err != nil {
			s.head = nil
			e := &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster state cannot be reached; nothing was changed.", Err: err}
			finish(batch, 0, e)
			return e
		}
		entry, txn, owner := s.buildTxn(session, batch)
		if s.beforeCommit != nil {
			s.beforeCommit()
		}
		ok, resp, _, err := s.client.Txn().Txn(txn, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil && notSent(err) {
			s.head = nil
			e := &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster state cannot be reached; nothing was changed.",
				Err: fmt.Errorf("cluster: consul txn: %w", err)}
			finish(batch, 0, e)
			return e
		}
		if err != nil {
			rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			committed, index, rerr := s.resolve(rctx, session, entry)
			cancel()
			switch {
			case rerr != nil:
				s.head = nil
				finish(batch, 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE,
					Message: "The cluster state did not confirm the change and could not be asked whether it was applied: read it back before retrying.",
					Err:     fmt.Errorf("cluster: consul txn: %w; then: %w", err, rerr)})
				// The writes queued meanwhile were not sent.
				return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The cluster state cannot be reached; nothing was changed.")
			case committed:
				s.committed(batch, entry, index)
				return nil
			default:
				s.log.Debug("a transaction of unknown outcome did not commit; sending it again", "err", err)
				continue
			}
		}
		if !ok {
			failed := map[int]bool{}
			headFailed := false
			for _, e := range resp.Errors {
				if e.OpIndex == 0 {
					s.head = nil
					finish(batch, 0, &mailcluster.Error{Code: mailcluster.EREADONLY, Message: "This node is no longer the primary; nothing was changed.",
						Err: fmt.Errorf("cluster: fenced: %s", e.What)})
					return nil
				}
				if r, ok := owner[e.OpIndex]; ok {
					failed[r] = true
				} else {
					headFailed = true
				}
			}
			if len(failed) == 0 && !headFailed {
				finish(batch, 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster state refused the change; nothing was changed.",
					Err: fmt.Errorf("cluster: consul txn failed without errors: %v", resp.Errors)})
				return nil
			}
			if headFailed {
				s.head = nil // re-read it, and wait for this node to catch up
			}
			var rest []*writeReq
			for i, r := range batch {
				if failed[i] {
					finish([]*writeReq{r}, 0, &mailcluster.Error{Code: mailcluster.ECONFLICT, Message: "The data was changed concurrently; try again.",
						Err: errors.New("cluster: consul txn: check failed")})
					continue
				}
				rest = append(rest, r)
			}
			batch = rest
			continue
		}
		var index uint64
		for _, r := range resp.Results {
			if r.KV != nil && r.KV.Key == s.prefix+schema.KeyHead {
				index = r.KV.ModifyIndex
			}
		}
		s.committed(batch, entry, index)
		return nil
	}
	return nil
}

func (s *ConsulStore) commitTimeout() time.Duration {
	if s.CommitTimeout > 0 {
		return s.CommitTimeout
	}
	return 15 * time.Second
}

// committed records a commit, applies it locally and answers the batch.
func (s *ConsulStore) committed(batch []*writeReq, entry *feedEntry, index uint64) {
	s.head = &headState{pos: feedPos{entry.Epoch, entry.Seq}, index: index}
	s.commits.add(index)
	s.pruneRing = append(s.pruneRing, prunePoint{seq: entry.Seq, at: entry.At})
	if n := len(s.pruning); n > 0 {
		s.pruneFrom = s.pruning[n-1] + 1
	}
	applied, err := s.applyEntry(entry, index)
	if err != nil {
		s.log.Error("applying a committed write locally", "err", err)
	}
	if !applied {
		ctx, cancel := context.WithTimeout(context.Background(), s.applyTimeout())
		if err := s.waitPos(ctx, feedPos{entry.Epoch, entry.Seq}); err != nil {
			s.log.Warn("a committed write is not yet visible in the local state", "index", index, "seq", entry.Seq)
		}
		cancel()
	}
	finish(batch, index, nil)
}

func (s *ConsulStore) applyTimeout() time.Duration {
	if s.ApplyTimeout > 0 {
		return s.ApplyTimeout
	}
	return 5 * time.Second
}

// buildTxn builds the transaction of a batch; owner maps an operation's
// index in it to the write (its position in batch) it belongs to.
func (s *ConsulStore) buildTxn(session string, batch []*writeReq) (*feedEntry, api.TxnOps, map[int]int) {
	h := s.head
	entry := &feedEntry{ID: newID(), Epoch: h.pos.Epoch, Seq: h.pos.Seq + 1, At: time.Now().UTC()}
	txn := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.prefix + schema.KeyPrimary, Session: session}}}
	owner := map[int]int{}
	for i, r := range batch {
		for _, c := range r.adopt {
			// The record is in Consul already: check it is still what was read.
			k := &api.KVTxnOp{Verb: api.KVCheckIndex, Key: s.prefix + c.Key, Index: c.Index}
			if c.Deleted {
				k = &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: s.prefix + c.Key}
			}
			owner[len(txn)] = i
			txn = append(txn, &api.TxnOp{KV: k})
			entry.Changes = append(entry.Changes, c)
		}
		for _, op := range r.ops {
			k := &api.KVTxnOp{Key: s.prefix + op.Key, Value: op.Value, Index: op.Index}
			switch op.Verb {
			case mailcluster.OpSet:
				k.Verb = api.KVSet
			case mailcluster.OpCAS:
				k.Verb = api.KVCAS
			case mailcluster.OpDelete:
				k.Verb = api.KVDelete
			case mailcluster.OpDeleteCAS:
				k.Verb = api.KVDeleteCAS
			case mailcluster.OpCheck:
				k.Verb = api.KVCheckIndex
				if op.Index == 0 {
					k.Verb = api.KVCheckNotExists
				}
			}
			owner[len(txn)] = i
			txn = append(txn, &api.TxnOp{KV: k})
			switch op.Verb {
			case mailcluster.OpSet, mailcluster.OpCAS:
				entry.Changes = append(entry.Changes, feedChange{Key: op.Key, Value: op.Value})
			case mailcluster.OpDelete, mailcluster.OpDeleteCAS:
				entry.Changes = append(entry.Changes, feedChange{Key: op.Key, Deleted: true})
			}
		}
	}
	value, _ := json.Marshal(entry)
	txn = append(txn,
		&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.prefix + schema.Feed(entry.Epoch, entry.Seq), Value: value, Index: 0}},
		&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.prefix + schema.KeyHead, Value: encodePos(feedPos{entry.Epoch, entry.Seq}), Index: h.index}})
	s.pruning = s.prunable(entry.Seq, min(pruneMax, txnMaxOps-len(txn)))
	for _, seq := range s.pruning {
		txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.prefix + schema.Feed(entry.Epoch, seq)}})
	}
	return entry, txn, owner
}

// ensureHead makes sure the committer knows the head and the local state
// is at it, so the new entry can be applied locally right after it
// commits. A cluster without a head (new, or restored from a snapshot
// taken before the feed existed) starts a new epoch from Consul's content.
func (s *ConsulStore) ensureHead(ctx context.Context) error {
	if s.head != nil && s.pos() == s.head.pos {
		return nil
	}
	h, index, ok, _, err := s.readHead(ctx, nil)
	if err != nil {
		return err
	}
	if !ok {
		start := feedPos{Epoch: newID(), Seq: 0}
		s.applyMu.Lock()
		err := s.resyncOnce(ctx, &start)
		s.applyMu.Unlock()
		if err != nil {
			return err
		}
		s.signalPos()
		s.ownEpoch.Store(start.Epoch)
		s.log.Info("started a new change feed", "epoch", start.Epoch)
		s.head = &headState{pos: start, index: index} // index: a damaged head's, replaced by CAS
		s.startPrune(start)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.applyTimeout())
	defer cancel()
	if err := s.waitPos(wctx, h); err != nil {
		return fmt.Errorf("cluster: this node has not caught up with the feed (at %+v, head %+v)", s.pos(), h)
	}
	if p := s.pos(); p != h {
		return fmt.Errorf("cluster: this node is past the feed's head (at %+v, head %+v)", p, h)
	}
	if s.head == nil || s.head.pos.Epoch != h.Epoch {
		s.startPrune(h)
	}
	s.head = &headState{pos: h, index: index}
	return nil
}

// resolve finds out whether entry, sent in a transaction whose answer was
// lost, committed. When the head shows it did not, a write of the head
// fences it off for good. err is set when Consul could not be asked.
func (s *ConsulStore) resolve(ctx context.Context, session string, entry *feedEntry) (committed bool, index uint64, err error) {
	prev := s.head
	backoff := 50 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		h, hIndex, ok, _, err := s.readHead(ctx, nil)
		if err != nil {
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		switch {
		case ok && h.Epoch == entry.Epoch && h.Seq >= entry.Seq:
			pair, _, err := s.client.KV().Get(s.prefix+schema.Feed(entry.Epoch, entry.Seq), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
			if err != nil {
				continue
			}
			if pair == nil {
				return false, 0, errors.New("cluster: the entry of a transaction of unknown outcome was pruned")
			}
			var e feedEntry
			if json.Unmarshal(pair.Value, &e) == nil && e.ID == entry.ID {
				return true, pair.ModifyIndex, nil
			}
			s.head = nil // another write took this sequence number
			return false, 0, nil
		case ok && h.Epoch == entry.Epoch && h.Seq == entry.Seq-1:
			if hIndex != prev.index {
				s.head = &headState{pos: h, index: hIndex}
				return false, 0, nil // the head moved: the lost transaction's CAS can never succeed
			}
			fence := api.TxnOps{
				{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.prefix + schema.KeyPrimary, Session: session}},
				{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.prefix + schema.KeyHead, Value: encodePos(h), Index: hIndex}},
			}
			fok, resp, _, err := s.client.Txn().Txn(fence, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil || !fok {
				continue // the lost transaction may have committed meanwhile: look again
			}
			for _, r := range resp.Results {
				if r.KV != nil && r.KV.Key == s.prefix+schema.KeyHead {
					s.head = &headState{pos: h, index: r.KV.ModifyIndex}
				}
			}
			return false, 0, nil
		default:
			// Another epoch, or the head went back: the lost transaction's
			// CAS on the head cannot succeed.
			s.head = nil
			return false, 0, nil
		}
	}
}

// prunePoint is when an entry was written.
type prunePoint struct {
	seq uint64
	at  time.Time
}

// startPrune resets what the committer knows of the feed's old entries:
// those before h are taken as written now.
func (s *ConsulStore) startPrune(h feedPos) {
	s.pruneRing = s.pruneRing[:0]
	s.pruneFrom = 0
	if h.Seq > 0 {
		// The oldest entry still present: look once.
		keys, _, err := s.client.KV().Keys(s.prefix+schema.FeedEpoch(h.Epoch), "", nil)
		if err == nil {
			for _, k := range keys {
				var seq uint64
				if _, err := fmt.Sscanf(strings.TrimPrefix(k, s.prefix+schema.FeedEpoch(h.Epoch)), "%d", &seq); err == nil && (s.pruneFrom == 0 || seq < s.pruneFrom) {
					s.pruneFrom = seq
				}
			}
		}
		if s.pruneFrom != 0 {
			s.pruneRing = append(s.pruneRing, prunePoint{seq: h.Seq, at: time.Now()})
		}
	}
}

// prunable returns up to n sequence numbers of entries to delete with the
// entry next: those older than FeedRetain or beyond FeedMaxEntries. The
// committer moves past them once that entry commits.
func (s *ConsulStore) prunable(next uint64, n int) []uint64 {
	retain, maxEntries := s.FeedRetain, s.FeedMaxEntries
	if retain <= 0 {
		retain = 15 * time.Minute
	}
	if maxEntries <= 0 {
		maxEntries = 20000
	}
	if s.pruneFrom == 0 && len(s.pruneRing) > 0 {
		s.pruneFrom = s.pruneRing[0].seq
	}
	var out []uint64
	cutoff := time.Now().Add(-retain)
	for seq := s.pruneFrom; len(out) < n && seq != 0 && seq < next; seq++ {
		old := next-seq > uint64(maxEntries)
		// Drop ring points this entry is past; the first point at or after
		// seq tells when it was written (at the latest).
		for len(s.pruneRing) > 1 && s.pruneRing[0].seq < seq {
			s.pruneRing = s.pruneRing[1:]
		}
		if !old && (len(s.pruneRing) == 0 || !s.pruneRing[0].at.Before(cutoff)) {
			break
		}
		out = append(out, seq)
	}
	return out
}

// commitLog remembers the indexes of a node's recent commits, so that the
// watch for changes made outside mailcluster can tell them apart.
type commitLog struct {
	mu   sync.Mutex
	ring [4096]uint64
	next int
	set  map[uint64]bool
	last uint64
}

func (c *commitLog) add(index uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil {
		c.set = map[uint64]bool{}
	}
	if old := c.ring[c.next]; old != 0 {
		delete(c.set, old)
	}
	c.ring[c.next] = index
	c.next = (c.next + 1) % len(c.ring)
	c.set[index] = true
	c.last = max(c.last, index)
}

// has reports whether index is one of the recent commits.
func (c *commitLog) has(index uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.set[index]
}

// latest returns the index of the latest commit.
func (c *commitLog) latest() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
