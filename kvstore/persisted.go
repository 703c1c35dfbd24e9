package kvstore

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailcluster"
)

// Persisted persists a node's snapshot of the replicated state in a
// bbolt file, so that a node restarted while Consul is unreachable still
// serves its last known state.
type Persisted struct{ db *bolt.DB }

// OpenPersisted opens (or creates) the file at path and returns what it
// holds and the index it was saved at.
//
// Deprecated: use OpenState.
func OpenPersisted(path string) (*Persisted, []mailcluster.KV, uint64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("kvstore: open %s: %w", path, err)
	}
	var all []mailcluster.KV
	var index uint64
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		all, index, err = loadBuckets(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, nil, 0, fmt.Errorf("kvstore: load %s: %w", path, err)
	}
	return &Persisted{db: db}, all, index, nil
}

// loadBuckets creates the buckets if needed and reads every record.
func loadBuckets(tx *bolt.Tx) ([]mailcluster.KV, uint64, error) {
	kvb, err := tx.CreateBucketIfNotExists(bucketKV)
	if err != nil {
		return nil, 0, err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return nil, 0, err
	}
	var index uint64
	if v := meta.Get(keyIndex); len(v) == 8 {
		index = binary.BigEndian.Uint64(v)
	}
	var all []mailcluster.KV
	err = kvb.ForEach(func(k, v []byte) error {
		if len(v) < 8 {
			return fmt.Errorf("record %q is damaged", k)
		}
		all = append(all, mailcluster.KV{Key: string(k), ModifyIndex: binary.BigEndian.Uint64(v[:8]), Value: append([]byte(nil), v[8:]...)})
		return nil
	})
	return all, index, err
}

// encodeRecord is the on-disk form of a value: 8-byte index, then value.
func encodeRecord(index uint64, value []byte) []byte {
	rec := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(rec, index)
	copy(rec[8:], value)
	return rec
}

func putIndex(meta *bolt.Bucket, index uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	return meta.Put(keyIndex, b[:])
}

// Save records one applied change set.
func (c *Persisted) Save(index uint64, set []mailcluster.KV, del []string) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		kvb := tx.Bucket(bucketKV)
		for _, kv := range set {
			if err := kvb.Put([]byte(kv.Key), encodeRecord(kv.ModifyIndex, kv.Value)); err != nil {
				return err
			}
		}
		for _, k := range del {
			if err := kvb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return putIndex(tx.Bucket(bucketMeta), index)
	})
}

// Close closes the file.
func (c *Persisted) Close() error { return c.db.Close() }
