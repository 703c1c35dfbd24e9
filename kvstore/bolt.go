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

// BoltStore is the Store of a standalone node: a bbolt file under the data
// dir, loaded into an in-memory snapshot at open. Every Txn is one bbolt
// transaction, synced to disk before it is applied to the snapshot, so an
// acknowledged write survives a crash. The node is always primary.
type BoltStore struct {
	db   *bolt.DB
	snap *Snapshot
	log  *slog.Logger
}

var _ mailcluster.Store = (*BoltStore)(nil)

// OpenBoltStore opens (or creates) the bbolt file at path.
func OpenBoltStore(path string, log *slog.Logger) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("kvstore: open %s: %w", path, err)
	}
	s := &BoltStore{db: db, snap: NewSnapshot(), log: log}
	err = db.Update(func(tx *bolt.Tx) error {
		all, index, err := loadBuckets(tx)
		if err != nil {
			return err
		}
		s.snap.Replace(all, index)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("kvstore: load %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Get implements mailcluster.Store.
func (s *BoltStore) Get(key string) (mailcluster.KV, bool) { return s.snap.Get(key) }

// List implements mailcluster.Store.
func (s *BoltStore) List(prefix, after string, limit int) []mailcluster.KV {
	return s.snap.List(prefix, after, limit)
}

// Count implements mailcluster.Store.
func (s *BoltStore) Count(prefix string) int { return s.snap.Count(prefix) }

// Index implements mailcluster.Store.
func (s *BoltStore) Index() uint64 { return s.snap.Index() }

// Notify implements mailcluster.Store.
func (s *BoltStore) Notify(prefix string) (<-chan struct{}, func()) { return s.snap.Notify(prefix) }

// Txn implements mailcluster.Store: all ops or none, checked against the
// file (the source of truth) under bbolt's single writer lock.
func (s *BoltStore) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	if err := ValidateOps(ops); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The request was cancelled.")
	}
	var index uint64
	var changes []mailcluster.KV
	var deletes []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		kvb, meta := tx.Bucket(bucketKV), tx.Bucket(bucketMeta)
		if v := meta.Get(keyIndex); len(v) == 8 {
			index = binary.BigEndian.Uint64(v)
		}
		index++
		for i, op := range ops {
			cur := kvb.Get([]byte(op.Key))
			var curIdx uint64
			if len(cur) >= 8 {
				curIdx = binary.BigEndian.Uint64(cur[:8])
			}
			switch op.Verb {
			case mailcluster.OpCAS, mailcluster.OpDeleteCAS, mailcluster.OpCheck:
				if curIdx != op.Index {
					return &mailcluster.Error{Code: mailcluster.ECONFLICT, Message: "The data was changed concurrently; try again.",
						Err: fmt.Errorf("kvstore: op %d on %q: index %d, want %d", i, op.Key, curIdx, op.Index)}
				}
			}
			switch op.Verb {
			case mailcluster.OpSet, mailcluster.OpCAS:
				if err := kvb.Put([]byte(op.Key), encodeRecord(index, op.Value)); err != nil {
					return err
				}
				changes = append(changes, mailcluster.KV{Key: op.Key, Value: append([]byte(nil), op.Value...), ModifyIndex: index})
			case mailcluster.OpDelete, mailcluster.OpDeleteCAS:
				if cur != nil {
					if err := kvb.Delete([]byte(op.Key)); err != nil {
						return err
					}
					deletes = append(deletes, op.Key)
				}
			}
		}
		return putIndex(meta, index)
	})
	if err != nil {
		if mailcluster.ErrorCode(err) != mailcluster.EINTERNAL {
			return 0, err
		}
		return 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The state could not be written.", Err: fmt.Errorf("kvstore: bolt txn: %w", err)}
	}
	s.snap.Apply(index, changes, deletes)
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
