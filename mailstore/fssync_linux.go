package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

var _ FileSystemSyncer = osFS{}

// Magic numbers of statfs(2)'s f_type.
const (
	ext4Magic = 0xEF53 // ext2, ext3 and ext4
	xfsMagic  = 0x58465342
)

// WholeSyncType reports whether syncfs(2) followed by a cache flush makes
// everything written before it durable on a file system of this type
// (statfs's f_type): true for ext2/3/4 (syncfs writes every dirty inode's
// data, then the block device's dirty metadata, and waits for all of it)
// and XFS (syncfs forces the log). Not for NFS (whose syncfs does not
// reach the server's disk the way its fsync does), FUSE (whose daemon
// need not sync) and the rest, which sync file by file.
func WholeSyncType(fsType int64) bool {
	return fsType == ext4Magic || fsType == xfsMagic
}

// fsHandles are the directories held open, one per file system (by
// device), through which the file systems are synced. syncfs(2) reports
// a write error of the file system once per open file, to the first
// sync on it after the error: one file held open from the first sync on
// sees every error since, whoever else syncs.
var fsHandles struct {
	mu  sync.Mutex
	fds map[uint64]*os.File
}

// FileSystem returns the device of dir's file system and whether its type
// is one WholeSyncType accepts.
func (osFS) FileSystem(dir string) (uint64, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, false, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	var sf unix.Statfs_t
	for {
		err := unix.Statfs(dir, &sf)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return 0, false, &fs.PathError{Op: "statfs", Path: dir, Err: err}
		}
	}
	return uint64(st.Dev), WholeSyncType(int64(sf.Type)), nil
}

// SyncFileSystem calls syncfs(2) on the file system, then fdatasync(2) on
// the directory held open for it, which flushes the disk's cache once
// more: on ext4 without a journal (and ext2) syncfs flushes the cache
// before it waits for the metadata it wrote (inodes, directory blocks),
// so these could still sit in the cache when it returns.
func (osFS) SyncFileSystem(id uint64, dir string) error {
	f, err := fsHandle(id, dir)
	if err != nil {
		return err
	}
	fd := int(f.Fd())
	for {
		err = unix.Syncfs(fd)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "syncfs", Path: f.Name(), Err: err}
	}
	for {
		err = unix.Fdatasync(fd)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil && err != unix.EINVAL {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// fsHandle returns the directory held open for file system id, opening
// dir (on it) the first time.
func fsHandle(id uint64, dir string) (*os.File, error) {
	fsHandles.mu.Lock()
	defer fsHandles.mu.Unlock()
	if f := fsHandles.fds[id]; f != nil {
		return f, nil
	}
	f, err := openFile(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || uint64(st.Dev) != id {
		f.Close()
		return nil, fmt.Errorf("mailstore: %s is no longer on file system %d", dir, id)
	}
	if fsHandles.fds == nil {
		fsHandles.fds = map[uint64]*os.File{}
	}
	fsHandles.fds[id] = f
	return f, nil
}

// Written waits for the writes of f's data that are under way and returns
// the first write error of f's data not reported yet
// (sync_file_range(2) with SYNC_FILE_RANGE_WAIT_AFTER reports it, as an
// fsync would, without writing anything more or flushing a cache).
func (osFS) Written(f File) error {
	of, ok := f.(*os.File)
	if !ok {
		return errors.New("mailstore: not an os file")
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Control(func(fd uintptr) {
		for {
			werr = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			if werr != unix.EINTR {
				return
			}
		}
	})
	if err == nil && werr != nil {
		err = &fs.PathError{Op: "sync_file_range", Path: of.Name(), Err: werr}
	}
	return err
}
