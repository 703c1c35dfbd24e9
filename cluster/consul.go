package cluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/kvstore"

	"github.com/hashicorp/consul/api"
	bolterrors "go.etcd.io/bbolt/errors"

	"mailcluster"
)

// ConsulStore is the Store of a cluster node: Consul KV under
// mailcluster/<cluster>/, replicated through the change feed (feed.go).
// Reads are served by the node's local state (a bbolt file, kvstore.State)
// and never touch Consul, so a node restarted while Consul is unreachable
// serves its last known state. Writes are group-committed Consul
// transactions fenced by check-session on the primary key (commit.go).
type ConsulStore struct {
	client *api.Client
	prefix string
	state  *kvstore.State
	log    *slog.Logger

	// Session returns the session that holds the primary key while this
	// node is primary, "" otherwise. Required for writes.
	Session func() string
	// WaitTime bounds one blocking query; 0 means 30 s.
	WaitTime time.Duration
	// ApplyTimeout bounds how long Txn waits for the local state to apply
	// a committed write it could not apply at once; 0 means 5 s. After it,
	// the write is acknowledged anyway (it is committed) and a warning is
	// logged.
	ApplyTimeout time.Duration
	// CommitTimeout bounds one group commit, finding out the outcome of a
	// transaction whose answer was lost included; 0 means 15 s.
	CommitTimeout time.Duration
	// FeedRetain is how long the primary keeps feed entries; 0 means 15
	// minutes. A node further behind re-syncs from a full read.
	FeedRetain time.Duration
	// FeedMaxEntries bounds the number of feed entries kept; 0 means 20,000.
	FeedMaxEntries int
	// OutsideCheckEvery is how often at most the primary looks whether
	// the prefix changed outside mailcluster; 0 means 1 s.
	OutsideCheckEvery time.Duration
	// ReconcileEvery is how often the primary compares all of Consul's
	// content with its own state, whatever the index says; 0 means 10
	// minutes.
	ReconcileEvery time.Duration

	// Events, when set, receives "replication-applied" entries (at most
	// every 10 s while changes are applied), re-syncs and writes found
	// made outside mailcluster.
	Events mailcluster.ClusterLog

	watchErrors    atomic.Uint64 // failed blocking queries
	bytesRead      atomic.Uint64 // keys and values read from Consul by replication
	entriesApplied atomic.Uint64
	resyncs        atomic.Uint64
	external       atomic.Uint64 // writes found made outside mailcluster
	commits        commitLog     // indexes of this node's recent commits
	ownEpoch       atomic.Value  // string: the epoch this node started as primary

	applyMu sync.Mutex // orders applying entries and re-syncs
	posMu   sync.Mutex
	posCh   chan struct{} // closed when the position moves

	// commitMu is held while a batch is committed, until its commit is
	// recorded and applied (the check for changes made outside mailcluster
	// waits for it).
	commitMu sync.Mutex
	reqs     chan *writeReq
	stop     chan struct{}
	stopped  chan struct{}
	// Owned by the committer goroutine:
	head      *headState
	pruneRing []prunePoint
	pruneFrom uint64
	pruning   []uint64

	// Test hooks (export_test.go): called before each transaction is sent,
	// and after each entry is applied locally.
	beforeCommit func()
	onApply      func(epoch string, seq uint64)

	synced   chan struct{} // closed once the state first caught up with Consul
	syncOnce sync.Once

	mu          sync.Mutex
	lastContact time.Time // the last successful answer of Consul
	failing     bool
	applied     int       // keys applied since the last log entry
	lastLogged  time.Time // of the last replication-applied entry
	closeOnce   sync.Once
}

var (
	_ mailcluster.Store        = (*ConsulStore)(nil)
	_ mailcluster.SharedGetter = (*ConsulStore)(nil)
)

// OpenConsulStore opens the node's local state at statePath (created if
// missing; a damaged file is set aside and rebuilt from Consul) and starts
// the committer. Run must be called to follow Consul.
func OpenConsulStore(client *api.Client, cluster, statePath string, log *slog.Logger) (*ConsulStore, error) {
	st, err := kvstore.OpenState(statePath, kvstore.StateOptions{NoSync: true})
	if err != nil && !errors.Is(err, bolterrors.ErrTimeout) {
		if _, serr := os.Stat(statePath); serr == nil {
			aside := statePath + ".damaged"
			log.Warn("the local copy of the replicated state cannot be opened; setting it aside and re-reading it from consul", "path", statePath, "err", err)
			if rerr := os.Rename(statePath, aside); rerr == nil {
				st, err = kvstore.OpenState(statePath, kvstore.StateOptions{NoSync: true})
			}
		}
	}
	if err != nil {
		return nil, err
	}
	s := &ConsulStore{client: client, prefix: KeyPrefix(cluster), state: st, log: log,
		posCh: make(chan struct{}), synced: make(chan struct{}), reqs: make(chan *writeReq, 256), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.commitLoop()
	return s, nil
}

// KeyPrefix returns the Consul KV prefix of a cluster.
func KeyPrefix(cluster string) string { return "mailcluster/" + cluster + "/" }

// Close stops the committer and closes the local state.
func (s *ConsulStore) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.stopped
	return s.state.Close()
}

// Get implements mailcluster.Store.
func (s *ConsulStore) Get(key string) (mailcluster.KV, bool) { return s.state.Get(key) }

// GetShared implements mailcluster.SharedGetter.
func (s *ConsulStore) GetShared(key string) (mailcluster.KV, bool) { return s.state.GetShared(key) }

// List implements mailcluster.Store.
func (s *ConsulStore) List(prefix, after string, limit int) []mailcluster.KV {
	return s.state.List(prefix, after, limit)
}

// Count implements mailcluster.Store.
func (s *ConsulStore) Count(prefix string) int { return s.state.Count(prefix) }

// Index implements mailcluster.Store.
func (s *ConsulStore) Index() uint64 { return s.state.Index() }

// Notify implements mailcluster.Store.
func (s *ConsulStore) Notify(prefix string) (<-chan struct{}, func()) { return s.state.Notify(prefix) }

// WaitIndex blocks until the local state has applied index or ctx ends.
func (s *ConsulStore) WaitIndex(ctx context.Context, index uint64) error {
	return s.state.WaitIndex(ctx, index)
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

// Run follows the feed until ctx ends: it blocks on the head and applies
// the entries after the node's position (or re-syncs). On the primary it
// also watches for writes made outside mailcluster (external.go).
func (s *ConsulStore) Run(ctx context.Context) {
	wait := s.WaitTime
	if wait <= 0 {
		wait = 30 * time.Second
	}
	go s.watchOutside(ctx, wait)
	var waitIndex uint64
	backoff := 50 * time.Millisecond
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		s.watchErrors.Add(1)
		s.setFailing(true)
		s.log.Debug("following the change feed failed", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
		return true
	}
	for ctx.Err() == nil {
		h, _, ok, meta, err := s.readHead(ctx, &api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait})
		if err != nil {
			if !fail(err) {
				return
			}
			// Read at once when Consul is back, rather than block on the old
			// index until something changes.
			waitIndex = 0
			continue
		}
		if meta.LastIndex < waitIndex {
			waitIndex = 0 // Consul's index went back (a new cluster or a restore)
		} else {
			waitIndex = meta.LastIndex
		}
		if ok {
			if err := s.catchUp(ctx, h); err != nil {
				if !fail(err) {
					return
				}
				waitIndex = 0
				continue
			}
		}
		backoff = 50 * time.Millisecond
		s.setFailing(false)
		s.syncOnce.Do(func() { close(s.synced) })
		if s.Session != nil && s.Session() != "" {
			// The primary applies its own writes as it commits them; its
			// watch only looks out for a head moved by others, so it need
			// not wake for each of its own writes.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// WaitSynced waits until the local state has caught up with Consul once
// since the node started (the head read and every entry up to it applied,
// or a re-sync done), or ctx ends.
func (s *ConsulStore) WaitSynced(ctx context.Context) error {
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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

// Txn implements mailcluster.Store: the write joins the next group
// commit (commit.go), and is answered once committed and applied to the
// local state, or refused with a definite outcome.
func (s *ConsulStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	if err := kvstore.ValidateOps(ops); err != nil {
		return 0, err
	}
	if len(ops) > maxTxnOps {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A change of %d records is more than the %d one transaction may hold; split it.", len(ops), maxTxnOps)
	}
	size := 0
	for _, op := range ops {
		if notReplicated(op.Key) {
			return 0, mailcluster.Errorf(mailcluster.EINVALID, "Key %q is not part of the replicated state.", op.Key)
		}
		size += opSize(op.Key, op.Value)
	}
	if size > txnBudget {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A change of %d KiB is more than one transaction may hold; split it.", size>>10)
	}
	if s.Session == nil || s.Session() == "" {
		return 0, mailcluster.Errorf(mailcluster.EREADONLY, "This node is not the primary.")
	}
	return s.submit(ctx, &writeReq{ops: ops, size: size})
}

// submit queues r for the committer and waits for its answer. Once queued,
// a write is answered whatever happens to ctx, so that its outcome is known.
func (s *ConsulStore) submit(ctx context.Context, r *writeReq) (uint64, error) {
	r.done = make(chan writeResult, 1)
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The request was cancelled; nothing was changed.")
	case <-s.stop:
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The node is stopping; nothing was changed.")
	}
	res := <-r.done
	return res.index, res.err
}

// ReplicationStats are counters of the replication of one node.
type ReplicationStats struct {
	BytesRead      uint64 // keys and values read from Consul by replication
	EntriesApplied uint64 // feed entries applied to the local state
	Resyncs        uint64 // full re-reads of the state
	ExternalWrites uint64 // changes found made outside mailcluster
}

// Stats returns the replication counters. Safe for concurrent use.
func (s *ConsulStore) Stats() ReplicationStats {
	return ReplicationStats{BytesRead: s.bytesRead.Load(), EntriesApplied: s.entriesApplied.Load(),
		Resyncs: s.resyncs.Load(), ExternalWrites: s.external.Load()}
}
