package cluster

import (
	"hash/crc32"
	"os"
	"time"
)

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

// OutboxSynced returns the last sequence number the outbox knows to be
// on disk, and the last one it gave.
func OutboxSynced(o *Outbox) (synced, last uint64) {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	return o.synced, o.lastSeq
}

// BreakOutbox marks the outbox's file as of unknown end (as after a
// failed write): the next write writes it anew first.
func BreakOutbox(o *Outbox) {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	o.file.broken = true
}

// CrashOutbox closes the outbox's file as a crash would: what the primary
// acknowledged and is still in the file stays there.
func CrashOutbox(o *Outbox) error {
	o.lock.Close()
	return o.file.close()
}

// OutboxFileDeltas returns how many deltas the outbox's file holds that
// it does not record as acknowledged (-1 when it cannot be read).
func OutboxFileDeltas(o *Outbox) int {
	data, err := os.ReadFile(o.path)
	if err != nil {
		return -1
	}
	st, _, err := parseLog(data)
	if err != nil {
		return -1
	}
	return len(st.deltas)
}

// BreakOutboxFile closes the outbox file's descriptor under it, so that
// the next append fails as a failing disk's would.
func BreakOutboxFile(o *Outbox) {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	o.file.f.Close()
}

// Crc32c is the records' checksum.
func Crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// MinPace is the shortest pause of the outbox's sender between two sends
// while reports stream in (a send's deltas came at StreamDeltas per
// MinPace or faster).
const (
	MinPace      = minPace
	StreamDeltas = streamDeltas
)

// Pace is the sender's pause after a send of n deltas that took took,
// window after the start of the send before it.
var Pace = pace

// SetPaceHook makes the outbox's sender tell f each pause it makes after
// a send of n deltas, before the pause. Set it before Run.
func SetPaceHook(o *Outbox, f func(n int, pause time.Duration)) { o.paced = f }
