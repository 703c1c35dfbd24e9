package mailstore

// LockPath exports the path of an address's lock file to the tests.
func (l *Locker) LockPath(address string) string { return l.path(address) }

// RemoveIfSame exports the removal of a lock file that a breaker judged
// stale with the content judged, to the tests.
func (l *Locker) RemoveIfSame(address, judged string) bool {
	return removeIfSame(l.path(address), judged)
}
