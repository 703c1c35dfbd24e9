package mailstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"mailcluster/mailstore"
	"mailcluster/service"
)

// dirEvents watches a directory for entries created, deleted and moved
// (inotify: the kernel queues each event while the call that makes it
// runs, so that what a call did is known when it returns).
type dirEvents struct{ fd int }

func watchDir(t *testing.T, dir string) *dirEvents {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	return &dirEvents{fd: fd}
}

// names returns the names of the entries of the events queued so far.
func (d *dirEvents) names(t *testing.T) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(d.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			out = append(out, string(bytes.TrimRight(name, "\x00")))
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// The release of a lock that was broken and taken by another host leaves
// that host's lock file where it is: it is not moved aside to be looked
// at and linked back, since a taker could create the lock file in
// between, and the other host's file would then be removed while it holds
// the lock.
func TestUnlockLeavesOthersLockFile(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	lk := &mailstore.Locker{Dir: t.TempDir(), Wait: 100 * time.Millisecond}
	path := lk.LockPath(lockAddress)
	l, err := lk.Lock(ctx, lockAddress)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other := "otherhost 1 " + time.Now().UTC().Format(time.RFC3339) + " " + lockAddress + " token\n"
	if err := os.WriteFile(path, []byte(other), 0o640); err != nil {
		t.Fatal(err)
	}
	ev := watchDir(t, lk.Dir)
	if err := l.Unlock(); !errors.Is(err, mailstore.ErrLockLost) {
		t.Fatalf("unlock of a broken lock: %v, want ErrLockLost", err)
	}
	if names := ev.names(t); len(names) != 0 {
		t.Fatalf("the unlock of a broken lock changed the lock directory: %q (the lock file is %s)", names, filepath.Base(path))
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != other {
		t.Fatalf("the other host's lock file holds %q (%v)", b, err)
	}
}
