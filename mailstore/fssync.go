package mailstore

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// SyncMethod is how a delivery makes its message file and its entry in
// new/ durable before it is acknowledged.
type SyncMethod int

const (
	// SyncAuto (the default): on a file system whose whole-file-system
	// sync is known to make everything written before it durable (ext2,
	// ext3, ext4 and XFS on Linux: see FileSystemSyncer), concurrent
	// deliveries share one such sync and one flush of the disk's cache;
	// elsewhere (NFS, FUSE, other systems) SyncFiles.
	SyncAuto SyncMethod = iota
	// SyncFiles: every message file is fsynced on its own, and each
	// new/ directory it was linked into (a directory's sync is shared by
	// the deliveries waiting for it). A file system shared with
	// programs that leave much unwritten data behind is better synced
	// this way: a whole-file-system sync writes their data too.
	SyncFiles
)

// ParseSyncMethod reads "auto" or "file" (the --mail-sync flag).
func ParseSyncMethod(s string) (SyncMethod, error) {
	switch s {
	case "auto", "":
		return SyncAuto, nil
	case "file":
		return SyncFiles, nil
	}
	return 0, fmt.Errorf("mailstore: sync method %q: use auto or file", s)
}

// FileSystemSyncer is an optional ability of an FS (the os file system has
// it on Linux): one call makes everything written to a file system
// durable. Deliveries onto such a file system then skip the fsync of
// each message file and of each new/ directory: the deliveries waiting
// at one time share one SyncFileSystem (group commit), and each then
// asks Written for the outcome of its own file's writes.
type FileSystemSyncer interface {
	// FileSystem returns the identity of the file system holding dir,
	// and whether SyncFileSystem makes it durable (false: deliveries
	// there sync file by file).
	FileSystem(dir string) (id uint64, whole bool, err error)
	// SyncFileSystem makes every file written and every directory entry
	// made on file system id (which holds dir) before the call durable,
	// and returns an error when any write to that file system failed
	// since the previous call, whoever made it.
	SyncFileSystem(id uint64, dir string) error
	// Written returns the error of the writes of f's data (already
	// written by a SyncFileSystem), waiting for them if they still run.
	Written(f File) error
}

// fsSyncs are the whole-file-system syncs of a Store.
type fsSyncs struct {
	groups DirSyncs // keyed by "fs:<id>"
	// failures counts the syncs that failed. A failed sync may have
	// been writing the data of deliveries that wait for a later sync
	// (a sync writes everything dirty, and reports a failure once): a
	// delivery fails when any sync failed while it was under way.
	failures atomic.Uint64
	seen     sync.Map // id -> true once logged
}

// wholeFS returns the Store's FileSystemSyncer and the identity of the
// file system holding dir when deliveries there share whole-file-system
// syncs; ok is false where they sync file by file.
func (s *Store) wholeFS(dir string) (w FileSystemSyncer, id uint64, ok bool) {
	if s.syncMethod != SyncAuto {
		return nil, 0, false
	}
	w, ok = s.fs.(FileSystemSyncer)
	if !ok {
		return nil, 0, false
	}
	id, whole, err := w.FileSystem(dir)
	if err != nil || !whole {
		return nil, 0, false
	}
	if _, logged := s.fsyncs.seen.LoadOrStore(id, true); !logged {
		s.log.Info("mailstore: deliveries share file-system syncs", "dir", dir, "device", id)
	}
	return w, id, true
}

// syncFileSystem makes what was written to file system id (holding dir)
// durable, sharing the sync with the deliveries waiting for it at the
// time; failed is the Store's count of failed syncs when the caller's
// delivery began.
func (s *Store) syncFileSystem(w FileSystemSyncer, id uint64, dir string, failed uint64) error {
	err := s.fsyncs.groups.Sync("fs:"+strconv.FormatUint(id, 10), func(string) error {
		err := w.SyncFileSystem(id, dir)
		if err != nil {
			s.fsyncs.failures.Add(1)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: sync the file system of %s: %w", dir, err)
	}
	if s.fsyncs.failures.Load() != failed {
		return fmt.Errorf("mailstore: sync the file system of %s: a sync failed while the delivery was under way", dir)
	}
	return nil
}
