//go:build !linux

package cluster

import "os"

// fdatasync syncs f (an fsync where fdatasync is not at hand).
func fdatasync(f *os.File) error { return f.Sync() }

// lockExclusive opens (or creates) the lock file at path; it takes no
// lock where flock(2) is not at hand.
func lockExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

// deviceOf is not known here: deliveries never count on a sync of the
// file system for the outbox.
func deviceOf(path string) uint64 { return 0 }
