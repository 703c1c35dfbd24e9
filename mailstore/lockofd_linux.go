package mailstore

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A lock file's holder also holds an open file description lock (OFD,
// fcntl F_OFD_SETLK) on it for as long as it holds the file, which the
// kernel releases when the holder closes the file, removes it (see
// lockFile.remove) or dies; a file system shared between hosts that
// carries such locks (NFS does, through its lock protocol) releases it
// too when the holder's host is gone. A taker waiting for another
// process's lock waits for that release in the kernel (ofdWait) instead
// of trying again on a timer: it is woken when the holder lets the lock
// go, on any host, and at once when the holder dies.

// ofdHold takes the OFD write lock of a lock file just created (f is open
// for writing). A file system that has no such locks is left without:
// takers then wait on their timer.
func ofdHold(f *os.File) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	_ = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// ofdWait returns a channel closed once the holder of the lock file at
// path, as it is now, releases its OFD lock (the file was removed, or its
// holder died), or at once when the file is gone already; nil (the
// caller's timer decides) when the file has no OFD lock to wait for (a
// holder on a file system without such locks, or one that has not taken
// it yet). The wait runs in its own goroutine, which ends when the
// holder lets go even if the caller gave up before.
func ofdWait(path string) <-chan struct{} {
	ch := make(chan struct{})
	f, err := os.Open(path)
	if err != nil {
		close(ch)
		return ch
	}
	probe := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &probe); err != nil || probe.Type == unix.F_UNLCK {
		f.Close()
		return nil
	}
	go func() {
		defer f.Close()
		lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
		for {
			err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, &lk)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return // no such locks here: the caller's timer decides
			}
			break
		}
		close(ch)
	}()
	return ch
}

// zombie reports whether process pid has exited and waits to be reaped
// (its lock file's holder is gone: its OFD lock was released at its exit).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// exitWaitBound bounds how long exitWait waits for a process to exit.
const exitWaitBound = 2 * time.Second

// exitWait returns a channel closed once process pid has exited (pidfd),
// or nil when that cannot be known (no pidfd here, or no such process).
// A taker uses it when the holder's OFD lock was released while its lock
// file stayed: the holder is dying (a holder that lets go removes its
// file first), and the file is stale only once its exit is complete. The
// wait ends by itself after exitWaitBound without closing the channel
// (the taker's timer decides then).
func exitWait(pid int) <-chan struct{} {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	ch := make(chan struct{})
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := time.Now().Add(exitWaitBound)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return
			}
			n, err := unix.Poll(fds, int(left.Milliseconds())+1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && n > 0 {
				close(ch)
			}
			return
		}
	}()
	return ch
}
