package mailstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Locker takes exclusive per-mailbox lock files in a directory on the
// shared path, so that nodes do not recount, move or fill a mailbox at the
// same time. A lock file records host, pid and time; it is refreshed while
// held, and a lock whose holder is gone (same host, dead pid) or whose file
// was not refreshed for StaleAfter is broken (renamed away atomically, so
// only one breaker wins; a breaker that finds it moved a newer, live lock
// puts it back). A holder only ever refreshes and removes its own file:
// after its lock was broken, Unlock returns ErrLockLost and leaves the
// next holder's lock alone.
type Locker struct {
	Dir string
	// StaleAfter is the age after which an unrefreshed lock is stale; 0 means 2 minutes.
	StaleAfter time.Duration
	// Wait bounds how long Lock waits for a busy lock; 0 means 10 s.
	Wait time.Duration
}

// ErrLockBusy is returned when a lock stays held past Locker.Wait.
var ErrLockBusy = errors.New("mailstore: mailbox is locked by another process")

// ErrLockLost is returned by Unlock when the lock was broken while held
// (its file was not refreshed for StaleAfter).
var ErrLockLost = errors.New("mailstore: lock was broken while held")

var hostname, _ = os.Hostname()

// Lock is a held lock file.
type Lock struct {
	path    string
	content string // what the lock file holds; a random token tells it from any later lock file
	stop    chan struct{}
	done    chan struct{}
}

// local queues the lock takers of this process per lock file, so that
// they wait on a channel rather than poll the file; only one of them at a
// time competes for the file with other nodes.
var local = &localLocks{m: map[string]*localLock{}}

type localLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch   chan struct{}
	refs int
}

func (l *localLocks) acquire(ctx context.Context, path string, deadline time.Time) error {
	l.mu.Lock()
	ll := l.m[path]
	if ll == nil {
		ll = &localLock{ch: make(chan struct{}, 1)}
		l.m[path] = ll
	}
	ll.refs++
	l.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ll.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		l.release(path, false)
		return ctx.Err()
	case <-t.C:
		l.release(path, false)
		return ErrLockBusy
	}
}

func (l *localLocks) release(path string, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.m[path]
	if held {
		<-ll.ch
	}
	ll.refs--
	if ll.refs == 0 {
		delete(l.m, path)
	}
}

func (l *Locker) path(address string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(address)))
	return filepath.Join(l.Dir, "mbox-"+hex.EncodeToString(sum[:10])+".lock")
}

// Lock takes the lock of a mailbox address, waiting while another holds
// it. The lock is refreshed in the background until Unlock.
func (l *Locker) Lock(ctx context.Context, address string) (*Lock, error) {
	if err := os.MkdirAll(l.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("mailstore: lock dir: %w", err)
	}
	path := l.path(address)
	wait := l.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	if err := local.acquire(ctx, path, deadline); err != nil {
		return nil, err
	}
	held := false
	defer func() {
		if !held {
			local.release(path, true)
		}
	}()
	delay := time.Millisecond
	content := fmt.Sprintf("%s %d %s %s %s\n", hostname, os.Getpid(), time.Now().UTC().Format(time.RFC3339), address, rand.Text())
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err == nil {
			_, werr := f.WriteString(content)
			cerr := f.Close()
			if werr != nil || cerr != nil {
				os.Remove(path)
				return nil, fmt.Errorf("mailstore: write lock %s: %w", path, errors.Join(werr, cerr))
			}
			lk := &Lock{path: path, content: content, stop: make(chan struct{}), done: make(chan struct{})}
			go lk.refresh(l.staleAfter() / 4)
			held = true
			return lk, nil
		}
		if !os.IsExist(err) {
			return nil, fmt.Errorf("mailstore: lock %s: %w", path, err)
		}
		if content, ok := l.stale(path); ok {
			removeIfSame(path, content)
			continue
		}
		if time.Now().After(deadline) {
			return nil, ErrLockBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

func (l *Locker) staleAfter() time.Duration {
	if l.StaleAfter <= 0 {
		return 2 * time.Minute
	}
	return l.StaleAfter
}

// stale reports whether the lock file's holder is gone, with the content
// it judged; false if the lock is live (or gone already: the next create
// will tell).
func (l *Locker) stale(path string) (content string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", false
	}
	content = string(b)
	if time.Since(st.ModTime()) > l.staleAfter() {
		return content, true
	}
	fields := strings.Fields(content)
	if len(fields) < 2 || fields[0] != hostname {
		return "", false
	}
	pid, err := strconv.Atoi(fields[1])
	if err != nil || pid <= 0 {
		return "", false
	}
	return content, syscall.Kill(pid, 0) == syscall.ESRCH
}

// holds reports whether the lock file at path still has content.
func holds(path, content string) bool {
	b, err := os.ReadFile(path)
	return err == nil && string(b) == content
}

// removeIfSame removes the lock file at path if it still has content
// (the random token in it tells a lock from any later one), and reports
// whether it did. The file is first moved aside (atomic:
// of several breakers only one rename succeeds); if what was moved is a
// newer lock (another breaker removed want and a taker made a new lock
// since), it is linked back (link does not replace: a lock made in the
// instant between is kept) and left alone.
func removeIfSame(path, content string) bool {
	aside := path + ".stale-" + rand.Text()[:8]
	if os.Rename(path, aside) != nil {
		return false
	}
	if b, err := os.ReadFile(aside); err == nil && string(b) != content {
		_ = os.Link(aside, path)
		os.Remove(aside)
		return false
	}
	os.Remove(aside)
	return true
}

func (lk *Lock) refresh(every time.Duration) {
	defer close(lk.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-lk.stop:
			return
		case now := <-t.C:
			if holds(lk.path, lk.content) {
				_ = os.Chtimes(lk.path, now, now)
			}
		}
	}
}

// Unlock releases the lock. It returns ErrLockLost, and leaves the lock
// file alone, if the lock was broken while held.
func (lk *Lock) Unlock() error {
	close(lk.stop)
	<-lk.done
	defer local.release(lk.path, true)
	if !removeIfSame(lk.path, lk.content) {
		return ErrLockLost
	}
	return nil
}
