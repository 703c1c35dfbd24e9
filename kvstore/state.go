package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"mailcluster"
)

// File format of a state (compatible with files written before counts
// existed: those hold only "kv" and "meta"/"index", and get their counts
// built when they are opened):
//
//	kv      key -> 8-byte modify index (big endian) + value
//	meta    "index" -> 8-byte applied index; "counts" -> the index the
//	        counts were last maintained at (counts are rebuilt at open
//	        when it differs from "index", e.g. after a writer that did not
//	        maintain them)
//	counts  "dir/" -> 8-byte number of keys under it, for every ancestor
//	        prefix ending in "/" of every key (no entry for zero)
//	aux     small named values kept with the state (State.Meta)
var (
	bucketCounts = []byte("counts")
	bucketAux    = []byte("aux")
	keyCounts    = []byte("counts")
)

// StateOptions are the settings of OpenState; the zero value is a state
// whose every Apply is synced to disk.
type StateOptions struct {
	// NoSync turns off bbolt's fsync per transaction: for a cluster
	// node's snapshot, which can be rebuilt from Consul (a damaged file is
	// removed and rebuilt by the caller).
	NoSync bool
}

// State is a node's local copy of the replicated state, kept in a bbolt
// file that serves every read: nothing but the watchers and the index is
// held in memory. Every Apply is one bbolt transaction, so readers see a
// change set entirely or not at all; a List is one read transaction, a
// consistent view. The number of keys under every prefix ending in "/" is
// maintained with the keys, so Count of such a prefix is O(1).
//
// A full re-sync goes through Rebuild: the new content is written into a
// file beside the state while the state keeps serving the old one, and
// Commit swaps the files.
//
// State is safe for concurrent use.
type State struct {
	path string
	opts StateOptions

	wmu sync.Mutex   // serialises writers with the swap of a Rebuild
	mu  sync.RWMutex // guards db: read-held by every transaction, write-held to swap or close
	db  *bolt.DB

	rebuilding bool // under wmu

	idxMu   sync.Mutex
	index   uint64
	advance chan struct{} // closed and replaced whenever index grows

	watchMu sync.Mutex
	watches map[*watch]struct{}

	cache pointCache // recent Gets, dropped key by key as writes change them
}

// pointCache holds the result of recent Gets (found or not), so that the
// hot keys of every request (the caller's account, its domain, usage) do
// not each open a bbolt read transaction. A write drops the keys it
// changed after its commit and bumps gen; a Get that read the file stores
// its result only if no write happened meanwhile (gen unchanged), so the
// cache never holds a value older than the file's. A swap of the file
// (Rebuild.Commit) and Close drop everything.
type pointCache struct {
	mu      sync.Mutex
	gen     uint64
	writing int // writes between begin and end: no Get may store then
	m       map[string]cachedKV
	counts  map[string]int              // maintained counts by prefix; every write drops them all
	lists   map[string][]mailcluster.KV // short List results; every write drops them all
}

// pointCacheListLen is the longest List result kept (a read of a few
// records, such as an account's memberships, not a page of a listing).
const pointCacheListLen = 32

func (c *pointCache) list(key string) ([]mailcluster.KV, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kvs, ok := c.lists[key]
	return kvs, c.gen, ok
}

func (c *pointCache) putList(key string, kvs []mailcluster.KV, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.writing > 0 {
		return
	}
	if c.lists == nil || len(c.lists) >= 1024 {
		c.lists = make(map[string][]mailcluster.KV, 64)
	}
	c.lists[key] = kvs
}

func (c *pointCache) count(prefix string) (int, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.counts[prefix]
	return n, c.gen, ok
}

func (c *pointCache) putCount(prefix string, n int, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.writing > 0 {
		return
	}
	if c.counts == nil || len(c.counts) >= pointCacheEntries {
		c.counts = make(map[string]int, 64)
	}
	c.counts[prefix] = n
}

type cachedKV struct {
	kv mailcluster.KV
	ok bool
}

// Bounds of the point cache: entries, and the largest value kept.
const (
	pointCacheEntries = 8192
	pointCacheValue   = 16 << 10
)

func (c *pointCache) get(key string) (cachedKV, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, c.gen, ok
}

func (c *pointCache) put(key string, e cachedKV, gen uint64) {
	if len(e.kv.Value) > pointCacheValue {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.writing > 0 {
		return
	}
	if c.m == nil || len(c.m) >= pointCacheEntries {
		c.m = make(map[string]cachedKV, 256)
	}
	c.m[key] = e
}

// begin starts a write that changes keys: they leave the cache, and no
// Get stores what it read until end (a Get that read the file before the
// commit must not store an old value after a reader saw the new one).
func (c *pointCache) begin(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing++
	c.gen++
	c.counts, c.lists = nil, nil
	for _, k := range keys {
		delete(c.m, k)
	}
}

// end ends a write begun with begin.
func (c *pointCache) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing--
	c.gen++
}

// drop forgets keys (all of them when all is set).
func (c *pointCache) drop(keys []string, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.counts, c.lists = nil, nil // a change of any key changes counts and listings
	if all {
		c.m = nil
		return
	}
	for _, k := range keys {
		delete(c.m, k)
	}
}

var errClosed = errors.New("kvstore: state is closed")

// OpenState opens (or creates) the state file at path. An existing file
// keeps its content; counts missing or out of date are built here.
func OpenState(path string, o StateOptions) (*State, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: o.NoSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("kvstore: open %s: %w", path, err)
	}
	var index uint64
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		index, err = prepareTx(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("kvstore: prepare %s: %w", path, err)
	}
	return &State{path: path, opts: o, db: db, index: index, advance: make(chan struct{}), watches: map[*watch]struct{}{}}, nil
}

// prepareTx creates the buckets and rebuilds the counts unless they were
// maintained up to the stored index. It returns the stored index.
func prepareTx(tx *bolt.Tx) (uint64, error) {
	for _, name := range [][]byte{bucketKV, bucketMeta, bucketCounts, bucketAux} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	meta := tx.Bucket(bucketMeta)
	index := getUint(meta.Get(keyIndex))
	if c := meta.Get(keyCounts); len(c) == 8 && getUint(c) == index {
		return index, nil
	}
	if err := buildCounts(tx); err != nil {
		return 0, err
	}
	return index, meta.Put(keyCounts, putUint(index))
}

// buildCounts replaces the counts bucket by counts of a scan of the keys.
func buildCounts(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketCounts); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return err
	}
	counts, err := tx.CreateBucket(bucketCounts)
	if err != nil {
		return err
	}
	acc := map[string]uint64{} // one entry per directory, not per key
	err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		if len(v) < 8 {
			return fmt.Errorf("record %q is damaged", k)
		}
		forAncestors(string(k), func(p string) { acc[p]++ })
		return nil
	})
	if err != nil {
		return err
	}
	for p, n := range acc {
		if err := counts.Put([]byte(p), putUint(n)); err != nil {
			return err
		}
	}
	return nil
}

// forAncestors calls f with every prefix of key that ends in "/" (the key
// itself included when it ends in "/").
func forAncestors(key string, f func(prefix string)) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			f(key[:i+1])
		}
	}
}

func getUint(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putUint(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// decodeKV copies a stored record out of bbolt's memory.
func decodeKV(k, v []byte) (mailcluster.KV, bool) {
	if len(v) < 8 {
		return mailcluster.KV{}, false
	}
	return mailcluster.KV{Key: string(k), ModifyIndex: binary.BigEndian.Uint64(v[:8]), Value: bytes.Clone(v[8:])}, true
}

// view runs f in a read transaction of the current file.
func (s *State) view(f func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errClosed
	}
	return s.db.View(f)
}

// Get returns one key, copied out of the file (or out of the point
// cache of recent Gets).
func (s *State) Get(key string) (mailcluster.KV, bool) {
	kv, ok := s.GetShared(key)
	kv.Value = bytes.Clone(kv.Value)
	return kv, ok
}

// GetShared is Get without the copy: the Value is the point cache's own
// and must be neither modified nor kept (mailcluster.SharedGetter).
func (s *State) GetShared(key string) (mailcluster.KV, bool) {
	e, gen, hit := s.cache.get(key)
	if hit {
		return e.kv, e.ok
	}
	var kv mailcluster.KV
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		kv, ok = decodeKV([]byte(key), tx.Bucket(bucketKV).Get([]byte(key)))
		return nil
	})
	if err == nil {
		s.cache.put(key, cachedKV{kv: kv, ok: ok}, gen)
	}
	return kv, ok
}

// List returns the keys under prefix in key order, after the key "after"
// (exclusive), at most limit (<=0: all), from one read transaction.
func (s *State) List(prefix, after string, limit int) []mailcluster.KV {
	ck := prefix + "\x00" + after + "\x00" + strconv.Itoa(limit)
	kvs, gen, ok := s.cache.list(ck)
	if ok {
		return cloneKVs(kvs)
	}
	var out []mailcluster.KV
	err := s.view(func(tx *bolt.Tx) error {
		out = listTx(tx, prefix, after, limit)
		return nil
	})
	if err == nil && len(out) <= pointCacheListLen {
		s.cache.putList(ck, cloneKVs(out), gen)
	}
	return out
}

// cloneKVs copies kvs and their values.
func cloneKVs(kvs []mailcluster.KV) []mailcluster.KV {
	if kvs == nil {
		return nil
	}
	out := make([]mailcluster.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = mailcluster.KV{Key: kv.Key, ModifyIndex: kv.ModifyIndex, Value: bytes.Clone(kv.Value)}
	}
	return out
}

func listTx(tx *bolt.Tx, prefix, after string, limit int) []mailcluster.KV {
	start := prefix
	if after >= start {
		start = after + "\x00"
	}
	var out []mailcluster.KV
	p := []byte(prefix)
	c := tx.Bucket(bucketKV).Cursor()
	for k, v := c.Seek([]byte(start)); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if kv, ok := decodeKV(k, v); ok {
			out = append(out, kv)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
	}
	return out
}

// Count returns the number of keys under prefix: O(1) for a non-empty
// prefix ending in "/", a scan otherwise.
func (s *State) Count(prefix string) int {
	maintained := prefix != "" && strings.HasSuffix(prefix, "/")
	var gen uint64
	if maintained {
		var n int
		var ok bool
		if n, gen, ok = s.cache.count(prefix); ok {
			return n
		}
	}
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		if maintained {
			n = int(getUint(tx.Bucket(bucketCounts).Get([]byte(prefix))))
			return nil
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if maintained && err == nil {
		s.cache.putCount(prefix, n, gen)
	}
	return n
}

// Index returns the applied index.
func (s *State) Index() uint64 {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	return s.index
}

// Meta returns the named value kept with the state, nil if unset.
func (s *State) Meta(name string) []byte {
	var out []byte
	_ = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAux).Get([]byte(name)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out
}

// WaitIndex blocks until the state has applied index or ctx ends.
func (s *State) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.idxMu.Lock()
		cur, ch := s.index, s.advance
		s.idxMu.Unlock()
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

// setIndex records the applied index; waiters are woken only when it grows.
func (s *State) setIndex(index uint64, allowDown bool) {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	switch {
	case index > s.index:
		s.index = index
		close(s.advance)
		s.advance = make(chan struct{})
	case allowDown:
		s.index = index
	}
}

// Notify returns a channel that receives (coalesced) after each applied
// change to a key under prefix, and a func that stops it.
func (s *State) Notify(prefix string) (<-chan struct{}, func()) {
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

func (s *State) wake(keys []string) {
	if len(keys) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watches {
		for _, k := range keys {
			if strings.HasPrefix(k, w.prefix) {
				w.signal()
				break
			}
		}
	}
}

func (w *watch) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// writer changes the keys of one write transaction and keeps the counts.
type writer struct {
	kv, counts *bolt.Bucket // counts nil: not maintained (a rebuild counts at Commit)
	changed    []string
}

func newWriter(tx *bolt.Tx) *writer {
	return &writer{kv: tx.Bucket(bucketKV), counts: tx.Bucket(bucketCounts)}
}

func (w *writer) put(key string, index uint64, value []byte) error {
	k := []byte(key)
	if w.kv.Get(k) == nil {
		if err := w.count(key, 1); err != nil {
			return err
		}
	}
	w.changed = append(w.changed, key)
	return w.kv.Put(k, encodeRecord(index, value))
}

func (w *writer) del(key string) error {
	k := []byte(key)
	if w.kv.Get(k) == nil {
		return nil
	}
	if err := w.count(key, -1); err != nil {
		return err
	}
	w.changed = append(w.changed, key)
	return w.kv.Delete(k)
}

func (w *writer) count(key string, delta int) error {
	if w.counts == nil {
		return nil
	}
	var err error
	forAncestors(key, func(p string) {
		if err != nil {
			return
		}
		n := int64(getUint(w.counts.Get([]byte(p)))) + int64(delta)
		if n <= 0 {
			err = w.counts.Delete([]byte(p))
		} else {
			err = w.counts.Put([]byte(p), putUint(uint64(n)))
		}
	})
	return err
}

func (w *writer) applyKVs(set []mailcluster.KV, del []string) error {
	for _, kv := range set {
		if kv.Key == "" {
			return errors.New("empty key")
		}
		if err := w.put(kv.Key, kv.ModifyIndex, kv.Value); err != nil {
			return err
		}
	}
	for _, k := range del {
		if k == "" {
			continue
		}
		if err := w.del(k); err != nil {
			return err
		}
	}
	return nil
}

// storeIndex writes the applied index and marks the counts as maintained
// up to it.
func storeIndex(tx *bolt.Tx, index uint64) error {
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyIndex, putUint(index)); err != nil {
		return err
	}
	return meta.Put(keyCounts, putUint(index))
}

func putMeta(tx *bolt.Tx, meta map[string][]byte) error {
	aux := tx.Bucket(bucketAux)
	for name, v := range meta {
		if name == "" {
			return errors.New("empty meta name")
		}
		var err error
		if v == nil {
			err = aux.Delete([]byte(name))
		} else {
			err = aux.Put([]byte(name), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// update runs f in one write transaction of the current file. f returns
// the index to store (kept at the stored one if smaller); after the
// commit the index advances and the watchers of the changed keys wake.
func (s *State) update(f func(tx *bolt.Tx, w *writer, stored uint64) (uint64, error)) (uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0, errClosed
	}
	var index uint64
	var changed []string
	began := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		stored := getUint(tx.Bucket(bucketMeta).Get(keyIndex))
		w := newWriter(tx)
		var err error
		if index, err = f(tx, w, stored); err != nil {
			return err
		}
		index = max(index, stored)
		changed = w.changed
		if !began {
			// Before the commit: the changed keys leave the cache, and no
			// Get stores what it read until the commit is over.
			s.cache.begin(changed)
			began = true
		}
		return storeIndex(tx, index)
	})
	if began {
		s.cache.end()
	}
	if err != nil {
		return 0, err
	}
	s.setIndex(index, false)
	s.wake(changed)
	return index, nil
}

// Apply writes set and del, the meta values (a nil value deletes one) and
// index in one bbolt transaction, then advances Index (if larger) and
// wakes the watchers of the changed keys. Readers see all of it or none.
// Each KV of set is stored with its own ModifyIndex.
func (s *State) Apply(index uint64, set []mailcluster.KV, del []string, meta map[string][]byte) error {
	_, err := s.update(func(tx *bolt.Tx, w *writer, _ uint64) (uint64, error) {
		if err := w.applyKVs(set, del); err != nil {
			return 0, err
		}
		return index, putMeta(tx, meta)
	})
	if err != nil {
		return fmt.Errorf("kvstore: apply %d: %w", index, err)
	}
	return nil
}

// Close closes the file. Reads afterwards find nothing; writes fail.
func (s *State) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	s.cache.drop(nil, true)
	return err
}

// Rebuild is a full re-sync of a State in progress: records go into a new
// file beside the state (its path + ".rebuild") while the state keeps
// serving its current content. Commit swaps the files; Abort removes the
// new one. Only one Rebuild of a State runs at a time; its methods are
// called from one goroutine.
type Rebuild struct {
	s    *State
	db   *bolt.DB
	path string
	done bool
}

// Rebuild starts a full re-sync into a new file beside the state (any file
// left over by an earlier one is removed first). The State keeps serving
// its current content, and Apply keeps working on it, until Commit.
func (s *State) Rebuild() (*Rebuild, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.rebuilding {
		return nil, errors.New("kvstore: a rebuild is already in progress")
	}
	s.mu.RLock()
	closed := s.db == nil
	s.mu.RUnlock()
	if closed {
		return nil, errClosed
	}
	path := s.path + ".rebuild"
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kvstore: rebuild: %w", err)
	}
	// Synced once, at Commit.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("kvstore: rebuild: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := prepareTx(tx); return err }); err != nil {
		db.Close()
		os.Remove(path)
		return nil, fmt.Errorf("kvstore: rebuild: %w", err)
	}
	s.rebuilding = true
	return &Rebuild{s: s, db: db, path: path}, nil
}

func (r *Rebuild) write(f func(w *writer) error) error {
	if r.done {
		return errors.New("kvstore: rebuild is finished")
	}
	return r.db.Update(func(tx *bolt.Tx) error {
		// Pages mostly come in key order: fill the pages.
		kv := tx.Bucket(bucketKV)
		kv.FillPercent = 0.9
		return f(&writer{kv: kv})
	})
}

// Put adds records to the new file (a page of a paged read; called any
// number of times).
func (r *Rebuild) Put(kvs []mailcluster.KV) error {
	if err := r.write(func(w *writer) error { return w.applyKVs(kvs, nil) }); err != nil {
		return fmt.Errorf("kvstore: rebuild put: %w", err)
	}
	return nil
}

// Apply replays on the new file the changes made while the pages were
// read. index is given for symmetry with State.Apply; the new file's index
// is the one passed to Commit.
func (r *Rebuild) Apply(index uint64, set []mailcluster.KV, del []string) error {
	if err := r.write(func(w *writer) error { return w.applyKVs(set, del) }); err != nil {
		return fmt.Errorf("kvstore: rebuild apply %d: %w", index, err)
	}
	return nil
}

// Commit writes index and meta (the new file holds only the meta given
// here), counts the new file's keys (one scan), syncs it, renames it over
// the state's file and makes the State serve it through the handle
// already open on it (the file is not reopened; later writes are synced
// as StateOptions.NoSync says). Changes applied to the State during the
// rebuild are replaced by the new content. The watchers of every prefix under which a key
// differs between the old and the new content are woken (a merge walk of
// both files, O(n)). Index may go down here (a restored Consul snapshot):
// WaitIndex callers are only woken when it grows. Commit blocks the
// State's writers, not its readers, while it runs; readers wait only for
// the swap itself.
func (r *Rebuild) Commit(index uint64, meta map[string][]byte) error {
	if r.done {
		return errors.New("kvstore: rebuild is finished")
	}
	s := r.s
	err := r.db.Update(func(tx *bolt.Tx) error {
		if err := putMeta(tx, meta); err != nil {
			return err
		}
		if err := buildCounts(tx); err != nil {
			return err
		}
		return storeIndex(tx, index)
	})
	if err == nil {
		err = r.db.Sync()
	}
	if err != nil {
		r.Abort()
		return fmt.Errorf("kvstore: rebuild commit: %w", err)
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	// The watchers present now are woken by the walk; any added meanwhile
	// are woken unconditionally after the swap.
	s.watchMu.Lock()
	before := make(map[*watch]bool, len(s.watches))
	for w := range s.watches {
		before[w] = true
	}
	s.watchMu.Unlock()
	woken := map[*watch]bool{}
	err = s.view(func(old *bolt.Tx) error {
		return r.db.View(func(next *bolt.Tx) error {
			diffTx(old, next, func(key string) bool {
				for w := range before {
					if !woken[w] && strings.HasPrefix(key, w.prefix) {
						woken[w] = true
					}
				}
				return len(woken) < len(before)
			})
			return nil
		})
	})
	if err != nil {
		r.abortLocked()
		return fmt.Errorf("kvstore: rebuild commit: %w", err)
	}

	s.mu.Lock()
	if s.db == nil {
		s.mu.Unlock()
		r.abortLocked()
		return fmt.Errorf("kvstore: rebuild commit: %w", errClosed)
	}
	if err := os.Rename(r.path, s.path); err != nil {
		s.mu.Unlock()
		r.abortLocked()
		return fmt.Errorf("kvstore: rebuild commit: %w", err)
	}
	syncDir(filepath.Dir(s.path))
	old := s.db
	r.db.NoSync = s.opts.NoSync
	s.db = r.db
	s.cache.drop(nil, true)
	s.mu.Unlock()
	r.done = true
	s.rebuilding = false
	closeErr := old.Close()

	s.setIndex(index, true)
	s.watchMu.Lock()
	for w := range s.watches {
		if woken[w] || !before[w] {
			w.signal()
		}
	}
	s.watchMu.Unlock()
	if closeErr != nil {
		return fmt.Errorf("kvstore: rebuild commit: close old file: %w", closeErr)
	}
	return nil
}

// diffTx walks the keys of two files in order and calls f with every key
// present in only one or stored differently; it stops when f returns false.
func diffTx(a, b *bolt.Tx, f func(key string) bool) {
	ca, cb := a.Bucket(bucketKV).Cursor(), b.Bucket(bucketKV).Cursor()
	ka, va := ca.First()
	kb, vb := cb.First()
	for ka != nil || kb != nil {
		var key []byte
		switch c := compareKeys(ka, kb); {
		case c < 0:
			key = ka
			ka, va = ca.Next()
		case c > 0:
			key = kb
			kb, vb = cb.Next()
		default:
			if !bytes.Equal(va, vb) {
				key = ka
			}
			ka, va = ca.Next()
			kb, vb = cb.Next()
		}
		if key != nil && !f(string(key)) {
			return
		}
	}
}

// compareKeys orders keys with nil (an ended cursor) last.
func compareKeys(a, b []byte) int {
	switch {
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Abort removes the new file; the State is untouched. It may be called
// after Commit (it does nothing then).
func (r *Rebuild) Abort() error {
	if r.done {
		return nil
	}
	r.s.wmu.Lock()
	defer r.s.wmu.Unlock()
	return r.abortLocked()
}

// abortLocked is Abort with the State's writer lock held.
func (r *Rebuild) abortLocked() error {
	if r.done {
		return nil
	}
	r.done = true
	r.s.rebuilding = false
	err := r.db.Close()
	if rerr := os.Remove(r.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("kvstore: rebuild abort: %w", err)
	}
	return nil
}

// watch is one Notify registration.
type watch struct {
	prefix string
	ch     chan struct{}
}

// encodeRecord is the on-disk form of a value: 8-byte index, then value.
func encodeRecord(index uint64, value []byte) []byte {
	rec := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(rec, index)
	copy(rec[8:], value)
	return rec
}
