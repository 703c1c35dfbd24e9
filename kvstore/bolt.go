package kvstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailcluster"
)

var (
	bucketKV   = []byte("kv")   // key -> 8-byte modify index + value
	bucketMeta = []byte("meta") // "index" -> 8-byte store index
	keyIndex   = []byte("index")
)

// BoltStore is the Store of a standalone node: a State file under the data
// dir that serves every read. Every Txn is one bbolt transaction, its
// compare-and-set checks made against the file under bbolt's single writer
// lock and synced to disk before it is answered, so an acknowledged write
// survives a crash. The node is always primary.
type BoltStore struct {
	st  *State
	log *slog.Logger
}

var (
	_ mailcluster.Store        = (*BoltStore)(nil)
	_ mailcluster.SharedGetter = (*BoltStore)(nil)
)

// OpenBoltStore opens (or creates) the bbolt file at path. A file written
// before counts were kept opens with its data (its counts are built here).
func OpenBoltStore(path string, log *slog.Logger) (*BoltStore, error) {
	st, err := OpenState(path, StateOptions{})
	if err != nil {
		return nil, err
	}
	return &BoltStore{st: st, log: log}, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.st.Close() }

// Get implements mailcluster.Store.
func (s *BoltStore) Get(key string) (mailcluster.KV, bool) { return s.st.Get(key) }

// GetShared implements mailcluster.SharedGetter.
func (s *BoltStore) GetShared(key string) (mailcluster.KV, bool) { return s.st.GetShared(key) }

// List implements mailcluster.Store.
func (s *BoltStore) List(prefix, after string, limit int) []mailcluster.KV {
	return s.st.List(prefix, after, limit)
}

// Count implements mailcluster.Store.
func (s *BoltStore) Count(prefix string) int { return s.st.Count(prefix) }

// Index implements mailcluster.Store.
func (s *BoltStore) Index() uint64 { return s.st.Index() }

// Notify implements mailcluster.Store.
func (s *BoltStore) Notify(prefix string) (<-chan struct{}, func()) { return s.st.Notify(prefix) }

// Txn implements mailcluster.Store: all ops or none, checked against the
// file (the source of truth) under bbolt's single writer lock, with the
// counts maintained in the same transaction.
func (s *BoltStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	if err := ValidateOps(ops); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The request was cancelled.")
	}
	index, err := s.st.update(func(_ *bolt.Tx, w *writer, stored uint64) (uint64, error) {
		index := stored + 1
		for i, op := range ops {
			var curIdx uint64
			if cur := w.kv.Get([]byte(op.Key)); len(cur) >= 8 {
				curIdx = binary.BigEndian.Uint64(cur[:8])
			}
			switch op.Verb {
			case mailcluster.OpCAS, mailcluster.OpDeleteCAS, mailcluster.OpCheck:
				if curIdx != op.Index {
					return 0, &mailcluster.Error{Code: mailcluster.ECONFLICT, Message: "The data was changed concurrently; try again.",
						Err: fmt.Errorf("kvstore: op %d on %q: index %d, want %d", i, op.Key, curIdx, op.Index)}
				}
			}
			var err error
			switch op.Verb {
			case mailcluster.OpSet, mailcluster.OpCAS:
				err = w.put(op.Key, index, op.Value)
			case mailcluster.OpDelete, mailcluster.OpDeleteCAS:
				err = w.del(op.Key)
			}
			if err != nil {
				return 0, err
			}
		}
		return index, nil
	})
	if err != nil {
		if mailcluster.ErrorCode(err) != mailcluster.EINTERNAL {
			return 0, err
		}
		return 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The state could not be written.", Err: fmt.Errorf("kvstore: bolt txn: %w", err)}
	}
	return index, nil
}

// ValidateOps checks a transaction's shape before anything is written.
func ValidateOps(ops []mailcluster.Op) error {
	if len(ops) == 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "Nothing to change.")
	}
	seen := make(map[string]bool, len(ops))
	for _, op := range ops {
		if op.Key == "" || len(op.Key) > 512 {
			return mailcluster.Errorf(mailcluster.EINVALID, "A key is empty or too long.")
		}
		if op.Verb < mailcluster.OpSet || op.Verb > mailcluster.OpCheck {
			return mailcluster.Errorf(mailcluster.EINVALID, "Unknown operation on %q.", op.Key)
		}
		if op.Verb != mailcluster.OpCheck {
			if seen[op.Key] {
				return mailcluster.Errorf(mailcluster.EINVALID, "Key %q is changed twice in one transaction.", op.Key)
			}
			seen[op.Key] = true
		}
	}
	return nil
}

// ReadStateValue reads one key of a bbolt state file that no process holds
// open (e.g. the state a node kept while it ran standalone); ok is false
// when the file or key does not exist.
func ReadStateValue(path, key string) (value []byte, ok bool, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, false, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, false, fmt.Errorf("kvstore: open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); len(v) >= 8 {
			value, ok = append([]byte(nil), v[8:]...), true
		}
		return nil
	})
	return value, ok, err
}
