package cluster

import bolt "go.etcd.io/bbolt"

// SetCommitHooks sets the store's test hooks: before is called by the
// committer before each transaction is sent, applied after each feed entry
// applied to the local state (with its epoch and sequence number). Set
// them before the store is used.
func SetCommitHooks(s *ConsulStore, before func(), applied func(epoch string, seq uint64)) {
	s.beforeCommit = before
	s.onApply = applied
}

// QueuedWrites returns how many writes wait for the committer.
func QueuedWrites(s *ConsulStore) int { return len(s.reqs) }

// FeedPosition returns the local state's position in the feed.
func FeedPosition(s *ConsulStore) (epoch string, seq uint64) {
	p := s.pos()
	return p.Epoch, p.Seq
}

// OutboxCommits returns how many write transactions the outbox made.
func OutboxCommits(o *Outbox) int64 { return o.commits.Load() }

// CrashOutbox closes the outbox's file as a crash would: what the primary
// acknowledged and is still in the file stays there.
func CrashOutbox(o *Outbox) error { return o.db.Close() }

// OutboxFileDeltas returns how many deltas the outbox's file holds, sent
// or not.
func OutboxFileDeltas(o *Outbox) int {
	n := 0
	_ = o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	return n
}
