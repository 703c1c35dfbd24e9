package mailstore

import "os"

// LockPath exports the path of an address's lock file to the tests.
func (l *Locker) LockPath(address string) string { return l.path(address) }

// RemoveIfSame exports the removal of a lock file that a breaker judged
// stale with the content judged, to the tests.
func (l *Locker) RemoveIfSame(address, judged string) bool {
	return removeIfSame(l.path(address), judged)
}

// Hostname is the host name lock files record.
var Hostname = hostname

// LockWakes returns how many times a waiting taker was woken by a lock
// file's removal or release; LockTimerWakes, by its timer.
func LockWakes() int64 { return lockWakes.Load() }

func LockTimerWakes() int64 { return lockTimerWakes.Load() }

// LockWatches returns how many lock directories are watched.
func LockWatches() int {
	lockWatches.mu.Lock()
	defer lockWatches.mu.Unlock()
	return len(lockWatches.m)
}

// OFDHold takes a lock file's OFD lock as its holder does.
func OFDHold(f *os.File) { ofdHold(f) }
