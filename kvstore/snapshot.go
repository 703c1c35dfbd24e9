package kvstore

import (
	"context"
	"strings"
	"sync"

	"github.com/google/btree"

	"mailcluster"
)

// Snapshot is the in-memory copy of the replicated state that every read
// is served from. Changes are applied atomically per index; readers see
// either all of a transaction or none of it.
//
// Deprecated: use State, which serves reads from its bbolt file and keeps
// no copy of the state in memory.
type Snapshot struct {
	mu      sync.RWMutex
	tree    *btree.BTreeG[mailcluster.KV]
	index   uint64
	advance chan struct{} // closed and replaced whenever index grows
	watchMu sync.Mutex
	watches map[*watch]struct{}
}

type watch struct {
	prefix string
	ch     chan struct{}
}

func kvLess(a, b mailcluster.KV) bool { return a.Key < b.Key }

// NewSnapshot returns an empty snapshot at index 0.
func NewSnapshot() *Snapshot {
	return &Snapshot{tree: btree.NewG(32, kvLess), watches: map[*watch]struct{}{}, advance: make(chan struct{})}
}

// Get returns one key.
func (s *Snapshot) Get(key string) (mailcluster.KV, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tree.Get(mailcluster.KV{Key: key})
}

// List returns keys under prefix after "after", at most limit (<=0: all).
func (s *Snapshot) List(prefix, after string, limit int) []mailcluster.KV {
	s.mu.RLock()
	defer s.mu.RUnlock()
	start := prefix
	if after > start {
		start = after + "\x00"
	}
	var out []mailcluster.KV
	s.tree.AscendGreaterOrEqual(mailcluster.KV{Key: start}, func(kv mailcluster.KV) bool {
		if !strings.HasPrefix(kv.Key, prefix) {
			return false
		}
		out = append(out, kv)
		return limit <= 0 || len(out) < limit
	})
	return out
}

// Count returns the number of keys under prefix.
func (s *Snapshot) Count(prefix string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	s.tree.AscendGreaterOrEqual(mailcluster.KV{Key: prefix}, func(kv mailcluster.KV) bool {
		if !strings.HasPrefix(kv.Key, prefix) {
			return false
		}
		n++
		return true
	})
	return n
}

// Index returns the applied index.
func (s *Snapshot) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// All returns every key, for persisting the snapshot.
func (s *Snapshot) All() ([]mailcluster.KV, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]mailcluster.KV, 0, s.tree.Len())
	s.tree.Ascend(func(kv mailcluster.KV) bool { out = append(out, kv); return true })
	return out, s.index
}

// Apply sets and deletes keys at index and wakes the watchers concerned.
func (s *Snapshot) Apply(index uint64, set []mailcluster.KV, del []string) {
	s.mu.Lock()
	for _, kv := range set {
		s.tree.ReplaceOrInsert(kv)
	}
	for _, k := range del {
		s.tree.Delete(mailcluster.KV{Key: k})
	}
	s.setIndexLocked(index)
	s.mu.Unlock()
	keys := make([]string, 0, len(set)+len(del))
	for _, kv := range set {
		keys = append(keys, kv.Key)
	}
	s.wake(append(keys, del...))
}

// Replace swaps the whole content (a full sync) and wakes every watcher
// whose prefix saw a difference.
func (s *Snapshot) Replace(all []mailcluster.KV, index uint64) {
	next := btree.NewG(32, kvLess)
	for _, kv := range all {
		next.ReplaceOrInsert(kv)
	}
	s.mu.Lock()
	prev := s.tree
	s.tree = next
	s.index = 0
	s.setIndexLocked(index)
	s.mu.Unlock()
	var changed []string
	prev.Ascend(func(kv mailcluster.KV) bool {
		if n, ok := next.Get(kv); !ok || n.ModifyIndex != kv.ModifyIndex {
			changed = append(changed, kv.Key)
		}
		return true
	})
	next.Ascend(func(kv mailcluster.KV) bool {
		if _, ok := prev.Get(kv); !ok {
			changed = append(changed, kv.Key)
		}
		return true
	})
	s.wake(changed)
}

func (s *Snapshot) setIndexLocked(index uint64) {
	if index > s.index {
		s.index = index
		close(s.advance)
		s.advance = make(chan struct{})
	}
}

// WaitIndex blocks until the snapshot has applied index or ctx ends.
func (s *Snapshot) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.mu.RLock()
		cur, ch := s.index, s.advance
		s.mu.RUnlock()
		if cur >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Notify returns a coalescing channel for changes under prefix.
func (s *Snapshot) Notify(prefix string) (<-chan struct{}, func()) {
	w := &watch{prefix: prefix, ch: make(chan struct{}, 1)}
	s.watchMu.Lock()
	s.watches[w] = struct{}{}
	s.watchMu.Unlock()
	return w.ch, func() {
		s.watchMu.Lock()
		delete(s.watches, w)
		s.watchMu.Unlock()
	}
}

func (s *Snapshot) wake(keys []string) {
	if len(keys) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watches {
		for _, k := range keys {
			if strings.HasPrefix(k, w.prefix) {
				select {
				case w.ch <- struct{}{}:
				default:
				}
				break
			}
		}
	}
}
