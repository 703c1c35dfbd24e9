package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/kvstore"
	"mailcluster/schema"

	"github.com/hashicorp/consul/api"

	"mailcluster"
)

// maxTxnOps is Consul's limit of operations in one transaction, less the
// two that every write adds (check-session and meta/txn).
const maxTxnOps = 128 - 2

// ConsulStore is the Store of a cluster node: Consul KV under
// mailcluster/<cluster>/. One blocking query on the prefix feeds the
// in-memory snapshot that serves every read; the snapshot is persisted, so
// a node restarted while Consul is unreachable serves its last known state.
// Writes are Consul transactions fenced by check-session on the primary key.
type ConsulStore struct {
	client *api.Client
	prefix string
	snap   *kvstore.Snapshot
	cache  *kvstore.Persisted
	log    *slog.Logger

	// Session returns the session that holds the primary key while this
	// node is primary, "" otherwise. Required for writes.
	Session func() string
	// WaitTime bounds one blocking query; 0 means 30 s.
	WaitTime time.Duration
	// ApplyTimeout bounds how long Txn waits for the local snapshot to apply
	// a committed write; 0 means 5 s. After it, the write is acknowledged
	// anyway (it is committed) and a warning is logged.
	ApplyTimeout time.Duration

	// Events, when set, receives a "replication-applied" entry at most
	// every 10 s while changes are applied (index and number of keys).
	Events mailcluster.ClusterLog

	watchErrors atomic.Uint64 // failed blocking queries

	mu          sync.Mutex
	lastContact time.Time // the last successful answer of Consul
	failing     bool
	applied     int       // keys applied since the last log entry
	lastLogged  time.Time // of the last replication-applied entry
}

var _ mailcluster.Store = (*ConsulStore)(nil)

// OpenConsulStore loads the persisted snapshot from cachePath. Run must be
// called to follow Consul.
func OpenConsulStore(client *api.Client, cluster, cachePath string, log *slog.Logger) (*ConsulStore, error) {
	cache, all, index, err := kvstore.OpenPersisted(cachePath)
	if err != nil {
		return nil, err
	}
	s := &ConsulStore{client: client, prefix: KeyPrefix(cluster), snap: kvstore.NewSnapshot(), cache: cache, log: log}
	s.snap.Replace(all, index)
	return s, nil
}

// KeyPrefix returns the Consul KV prefix of a cluster.
func KeyPrefix(cluster string) string { return "mailcluster/" + cluster + "/" }

// Close closes the persisted snapshot.
func (s *ConsulStore) Close() error { return s.cache.Close() }

// Get implements mailcluster.Store.
func (s *ConsulStore) Get(key string) (mailcluster.KV, bool) { return s.snap.Get(key) }

// List implements mailcluster.Store.
func (s *ConsulStore) List(prefix, after string, limit int) []mailcluster.KV {
	return s.snap.List(prefix, after, limit)
}

// Count implements mailcluster.Store.
func (s *ConsulStore) Count(prefix string) int { return s.snap.Count(prefix) }

// Index implements mailcluster.Store.
func (s *ConsulStore) Index() uint64 { return s.snap.Index() }

// Notify implements mailcluster.Store.
func (s *ConsulStore) Notify(prefix string) (<-chan struct{}, func()) { return s.snap.Notify(prefix) }

// WaitIndex blocks until the snapshot has applied index or ctx ends.
func (s *ConsulStore) WaitIndex(ctx context.Context, index uint64) error {
	return s.snap.WaitIndex(ctx, index)
}

// Sync reports when Consul last answered the watch and whether the watch
// is failing now.
func (s *ConsulStore) Sync() (lastContact time.Time, failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastContact, s.failing
}

// Lag is how far behind Consul this node's snapshot may be: zero while the
// watch is connected, else the time since Consul last answered.
func (s *ConsulStore) Lag() time.Duration {
	last, failing := s.Sync()
	if !failing && !last.IsZero() {
		return 0
	}
	if last.IsZero() {
		return -1
	}
	return time.Since(last)
}

// WatchErrors returns how often the blocking query that follows the
// replicated state failed (each failure is followed by a retry). Safe for
// concurrent use.
func (s *ConsulStore) WatchErrors() uint64 { return s.watchErrors.Load() }

// Run follows the prefix with blocking queries until ctx ends.
func (s *ConsulStore) Run(ctx context.Context) {
	wait := s.WaitTime
	if wait <= 0 {
		wait = 30 * time.Second
	}
	var waitIndex uint64
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx)
		pairs, meta, err := s.client.KV().List(s.prefix, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.watchErrors.Add(1)
			s.setFailing(true)
			s.log.Debug("consul watch failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			// Read at once when Consul is back, rather than block on the old
			// index until something changes (the node would report lost
			// contact for up to the wait time).
			waitIndex = 0
			continue
		}
		backoff = 50 * time.Millisecond
		s.setFailing(false)
		if meta.LastIndex < waitIndex {
			waitIndex = 0 // Consul's index went back (a new cluster): resync
		} else {
			waitIndex = meta.LastIndex
		}
		if err := s.apply(pairs, meta.LastIndex); err != nil {
			s.log.Error("persisting the snapshot", "err", err)
		}
	}
}

func (s *ConsulStore) setFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !failing {
		s.lastContact = time.Now()
	}
	if failing != s.failing {
		if failing {
			s.log.Warn("lost contact with consul; serving the last known state read-only")
		} else {
			s.log.Info("in contact with consul")
		}
	}
	s.failing = failing
}

// apply makes the snapshot equal to pairs at index.
func (s *ConsulStore) apply(pairs api.KVPairs, index uint64) error {
	seen := make(map[string]bool, len(pairs))
	var set []mailcluster.KV
	for _, p := range pairs {
		key := strings.TrimPrefix(p.Key, s.prefix)
		if key == "" || strings.HasSuffix(key, "/") {
			continue
		}
		seen[key] = true
		cur, ok := s.snap.Get(key)
		if ok && cur.ModifyIndex == p.ModifyIndex && bytes.Equal(cur.Value, p.Value) {
			continue
		}
		set = append(set, mailcluster.KV{Key: key, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	var del []string
	for _, kv := range s.snap.List("", "", 0) {
		if !seen[kv.Key] {
			del = append(del, kv.Key)
		}
	}
	if index < s.snap.Index() {
		// Consul's state is older than ours (e.g. a rebuilt dev agent): take it whole.
		all := make([]mailcluster.KV, 0, len(pairs))
		for _, p := range pairs {
			if key := strings.TrimPrefix(p.Key, s.prefix); key != "" && !strings.HasSuffix(key, "/") {
				all = append(all, mailcluster.KV{Key: key, Value: p.Value, ModifyIndex: p.ModifyIndex})
			}
		}
		s.snap.Replace(all, index)
		return s.cache.Save(index, all, del)
	}
	if len(set) == 0 && len(del) == 0 && index == s.snap.Index() {
		return nil
	}
	err := s.cache.Save(index, set, del)
	s.snap.Apply(index, set, del)
	s.logApplied(index, len(set)+len(del))
	return err
}

// logApplied records applied replication in the cluster log, throttled.
func (s *ConsulStore) logApplied(index uint64, keys int) {
	if s.Events == nil || keys == 0 {
		return
	}
	s.mu.Lock()
	s.applied += keys
	if time.Since(s.lastLogged) < 10*time.Second {
		s.mu.Unlock()
		return
	}
	n := s.applied
	s.applied, s.lastLogged = 0, time.Now()
	s.mu.Unlock()
	s.Events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventReplicationApplied, Message: "replicated changes applied to this node's snapshot",
		Fields: map[string]string{"index": strconv.FormatUint(index, 10), "keys": strconv.Itoa(n)}})
}

// Txn implements mailcluster.Store as one Consul transaction that starts
// with check-session on the primary key, so a deposed primary cannot write.
func (s *ConsulStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	if err := kvstore.ValidateOps(ops); err != nil {
		return 0, err
	}
	if len(ops) > maxTxnOps {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A change of %d records is more than the %d one transaction may hold; split it.", len(ops), maxTxnOps)
	}
	session := ""
	if s.Session != nil {
		session = s.Session()
	}
	if session == "" {
		return 0, mailcluster.Errorf(mailcluster.EREADONLY, "This node is not the primary.")
	}
	txn := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.prefix + schema.KeyPrimary, Session: session}}}
	for _, op := range ops {
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
		txn = append(txn, &api.TxnOp{KV: k})
	}
	stamp := fmt.Appendf(nil, `{"at":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.prefix + schema.KeyLastTxn, Value: stamp}})

	ok, resp, _, err := s.client.Txn().Txn(txn, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		// Not "nothing was changed": Consul may fail the call after the
		// change reached its log (e.g. "leadership lost while committing
		// log"), and such a change can still be committed later.
		return 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster state cannot be reached or did not confirm the change; it may or may not have been applied: read it back before retrying.", Err: fmt.Errorf("cluster: consul txn: %w", err)}
	}
	if !ok {
		for _, e := range resp.Errors {
			if e.OpIndex == 0 {
				return 0, &mailcluster.Error{Code: mailcluster.EREADONLY, Message: "This node is no longer the primary; nothing was changed.",
					Err: fmt.Errorf("cluster: fenced: %s", e.What)}
			}
		}
		var what []string
		for _, e := range resp.Errors {
			what = append(what, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
		return 0, &mailcluster.Error{Code: mailcluster.ECONFLICT, Message: "The data was changed concurrently; try again.",
			Err: errors.New("cluster: consul txn: " + strings.Join(what, "; "))}
	}
	var index uint64
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == s.prefix+schema.KeyLastTxn {
			index = r.KV.ModifyIndex
		}
	}
	timeout := s.ApplyTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	wctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.snap.WaitIndex(wctx, index); err != nil {
		s.log.Warn("a committed write is not yet visible in the local snapshot", "index", index)
	}
	return index, nil
}
