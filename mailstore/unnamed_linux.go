package mailstore

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// procFD tells whether /proc/self/fd is there: an unnamed file is linked
// through its entry there (linkat with AT_SYMLINK_FOLLOW, which needs no
// privilege, unlike AT_EMPTY_PATH).
var procFD = sync.OnceValue(func() bool {
	st, err := os.Stat("/proc/self/fd")
	return err == nil && st.IsDir()
})

// refusing are the file systems (by device) that refused O_TMPFILE:
// nothing is tried there again. any is set once one refused, so that a
// machine where every file system can pays no stat for the check.
var refusing struct {
	any  atomic.Bool
	mu   sync.Mutex
	devs map[uint64]bool
}

// refuses reports whether dir is on a file system that refused O_TMPFILE.
func refuses(dir string) bool {
	if !refusing.any.Load() {
		return false
	}
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return false // the open will tell
	}
	refusing.mu.Lock()
	defer refusing.mu.Unlock()
	return refusing.devs[uint64(st.Dev)]
}

// refused remembers that dir's file system refused O_TMPFILE.
func refused(dir string) {
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return
	}
	refusing.mu.Lock()
	defer refusing.mu.Unlock()
	if refusing.devs == nil {
		refusing.devs = map[uint64]bool{}
	}
	refusing.devs[uint64(st.Dev)] = true
	refusing.any.Store(true)
}

// CreateUnnamed opens an O_TMPFILE file (mode 0600) in dir. A file
// system that refuses it (EOPNOTSUPP: NFS and others; EISDIR or EINVAL:
// a kernel without O_TMPFILE) is remembered and answered
// errors.ErrUnsupported from then on, as is a system without /proc.
func (osFS) CreateUnnamed(dir string) (File, error) {
	if !procFD() || refuses(dir) {
		return nil, errors.ErrUnsupported
	}
	for {
		fd, err := syscall.Open(dir, unix.O_TMPFILE|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), dir), nil
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EOPNOTSUPP, syscall.EISDIR, syscall.EINVAL:
			refused(dir)
			return nil, errors.ErrUnsupported
		}
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
}

// LinkUnnamed links f's /proc/self/fd entry, followed, to newname.
func (osFS) LinkUnnamed(f File, newname string) error {
	of, ok := f.(*os.File)
	if !ok {
		return &os.LinkError{Op: "link", Old: f.Name(), New: newname, Err: errors.ErrUnsupported}
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: newname, Err: err}
	}
	var lerr error
	err = rc.Control(func(fd uintptr) {
		old := "/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10)
		for {
			lerr = unix.Linkat(unix.AT_FDCWD, old, unix.AT_FDCWD, newname, unix.AT_SYMLINK_FOLLOW)
			if lerr != syscall.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = lerr
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: newname, Err: err}
	}
	return nil
}
