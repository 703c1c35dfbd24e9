package mailstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
// next holder's lock alone. Takers of one process queue in memory, and a
// held file passes from one to the next without being removed (see
// Lock.Unlock); a taker waiting for another process's lock says so with a
// wait marker file beside the lock, so that the holder's process lets it
// go first, and waits for the holder to let go (an OFD lock the holder
// keeps on its file, see ofdWait; and the file's removal, see watchName),
// trying again on a timer only in case neither tells.
type Locker struct {
	Dir string
	// StaleAfter is the age after which an unrefreshed lock is stale; 0 means 2 minutes.
	StaleAfter time.Duration
	// Wait bounds how long Lock waits for a busy lock; 0 means 10 s.
	Wait time.Duration
	// Linger keeps a released lock file, when no taker waits for it,
	// for this long, so that the next taker of this process (the same
	// sender's next message to the mailbox) takes it without creating a
	// file; 0: the file is removed at once. A taker of another process
	// ends the linger with its wait marker, seen at the release or within
	// 5 ms during the linger. A linger counts as a handover (the file is
	// removed after maxHandovers or maxHandoverTime, as when handed over).
	// See ReleaseLingering.
	Linger time.Duration
	// LocalRetry bounds the pause between the tries of a taker waiting
	// for a lock file held by another process of this host, whose
	// removal wakes the taker at once (inotify): the tries on the timer
	// only make up for a lost notice; 0 means 1 s. A lock held on
	// another host (of which the shared file system tells nothing) is
	// tried again with a backoff of at most 50 ms.
	LocalRetry time.Duration
}

// ErrLockBusy is returned when a lock stays held past Locker.Wait.
var ErrLockBusy = errors.New("mailstore: mailbox is locked by another process")

// ErrLockLost is returned by Unlock when the lock was broken while held
// (its file was not refreshed for StaleAfter).
var ErrLockLost = errors.New("mailstore: lock was broken while held")

var hostname, _ = os.Hostname()

// Lock is a held lock file.
type Lock struct {
	path   string
	file   *lockFile
	done   bool
	linger time.Duration // Locker.Linger
}

// lockFile is a lock file this process created and holds: handed from
// one holder to the next while takers of this process queue for it (see
// Unlock), refreshed by a timer from its creation to its removal.
type lockFile struct {
	path    string
	content string      // what the lock file holds; a random token tells it from any later lock file
	f       *os.File    // kept open while held, so that its inode is not reused
	info    os.FileInfo // of f: the lock is still ours while path names this file
	created time.Time
	handed  int        // handovers since it was created
	mu      sync.Mutex // held by a refresh; stopped is set under it
	timer   *time.Timer
	stopped bool
}

// Bounds of the handovers of one lock file between takers of this
// process: then it is removed (as when nobody waits here), so that other
// nodes get their turn.
const (
	maxHandovers    = 64
	maxHandoverTime = time.Second
	// yieldToOthers is how long the next taker of this process waits
	// before it tries to create a lock file that its predecessor removed
	// for a waiter of another process: longer than the longest pause
	// between the tries of a waiting taker (50 ms).
	yieldToOthers = 60 * time.Millisecond
	// lingerPoll is how often a lingering lock file's holder looks for
	// the wait marker of a taker of another process.
	lingerPoll = 5 * time.Millisecond
)

// local queues the lock takers of this process per lock file, so that
// they wait on a channel rather than poll the file; only one of them at a
// time competes for the file with other nodes, and a held file passes
// from one to the next without being removed and created again.
var local = &localLocks{m: map[string]*localLock{}}

type localLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch     chan struct{}
	refs   int
	file   *lockFile   // handed over by the last holder, for the next one
	yield  bool        // the last holder removed the file for a taker of another process
	linger *time.Timer // file lingers: removed when it fires, unless taken
}

// acquire waits for the turn of this process's takers of path; it returns
// the lock file handed over by the previous holder if there is one, and
// whether the taker must first give takers of other processes a chance.
func (l *localLocks) acquire(ctx context.Context, path string, deadline time.Time) (*lockFile, bool, error) {
	l.mu.Lock()
	ll := l.m[path]
	if ll == nil {
		ll = &localLock{ch: make(chan struct{}, 1)}
		l.m[path] = ll
	}
	ll.refs++
	l.mu.Unlock()
	select {
	case ll.ch <- struct{}{}:
	default:
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case ll.ch <- struct{}{}:
		case <-ctx.Done():
			l.release(path, false)
			return nil, false, ctx.Err()
		case <-t.C:
			l.release(path, false)
			return nil, false, ErrLockBusy
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, yield := ll.file, ll.yield
	ll.file, ll.yield = nil, false
	if ll.linger != nil {
		ll.linger.Stop() // the end of the linger does nothing once a taker has it
		ll.linger = nil
	}
	return f, yield, nil
}

// keep ends the turn of f's holder, keeping f for the next taker of this
// process: it is handed over at once if one waits, else when one comes
// within d; then (unless taken) it is removed.
func (l *localLocks) keep(f *lockFile, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.m[f.path]
	ll.file = f
	if ll.refs == 1 {
		until := time.Now().Add(d)
		ll.linger = time.AfterFunc(min(d, lingerPoll), func() { l.lingerTick(f, until) })
	}
	<-ll.ch
	ll.refs--
}

// lingerTick ends the linger of f (the file is removed) when a taker of
// another process waits for it (its wait marker) or the linger is over,
// unless a taker here has f; else it looks again after lingerPoll.
func (l *localLocks) lingerTick(f *lockFile, until time.Time) {
	_, err := os.Stat(waitMarker(f.path))
	waiter := err == nil
	l.mu.Lock()
	ll := l.m[f.path]
	if ll == nil || ll.file != f || ll.refs > 0 {
		l.mu.Unlock()
		return
	}
	if !waiter && time.Now().Before(until) {
		ll.linger = time.AfterFunc(min(time.Until(until), lingerPoll), func() { l.lingerTick(f, until) })
		l.mu.Unlock()
		return
	}
	delete(l.m, f.path)
	l.mu.Unlock()
	_ = f.remove()
}

// ReleaseLingering removes at once every lock file of this process that
// lingers after its release (Locker.Linger), as a process does before it
// exits, so that other nodes need not wait for the files to turn stale.
func ReleaseLingering() {
	local.mu.Lock()
	var files []*lockFile
	for path, ll := range local.m {
		if ll.refs == 0 && ll.file != nil {
			if ll.linger != nil {
				ll.linger.Stop()
			}
			files = append(files, ll.file)
			delete(local.m, path)
		}
	}
	local.mu.Unlock()
	for _, f := range files {
		_ = f.remove()
	}
}

// handOver passes f to the next taker of this process waiting for its
// path and gives up this holder's turn; false (and nothing done) when
// nobody waits.
func (l *localLocks) handOver(f *lockFile) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.m[f.path]
	if ll.refs < 2 {
		return false
	}
	ll.file = f
	<-ll.ch
	ll.refs--
	return true
}

// release gives up a turn (held: the caller had it). A lock file handed
// over to takers that all gave up waiting meanwhile is removed.
func (l *localLocks) release(path string, held bool) {
	l.mu.Lock()
	ll := l.m[path]
	if held {
		<-ll.ch
	}
	ll.refs--
	var orphan *lockFile
	if ll.refs == 0 {
		delete(l.m, path)
		orphan = ll.file
	}
	l.mu.Unlock()
	if orphan != nil {
		_ = orphan.remove()
	}
}

// waiting reports whether another taker of this process waits for path.
func (l *localLocks) waiting(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[path].refs > 1
}

// yieldNext makes the next taker of path in this process wait before it
// creates the lock file again (see yieldToOthers).
func (l *localLocks) yieldNext(path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ll := l.m[path]; ll != nil && ll.refs > 1 {
		ll.yield = true
	}
}

func (l *Locker) path(address string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(address)))
	return filepath.Join(l.Dir, "mbox-"+hex.EncodeToString(sum[:10])+".lock")
}

// waitMarker is the file a taker that finds the lock held by another
// process keeps while it waits: a holder that sees it hands the lock to
// nobody in its own process, so that the waiter gets its turn.
func waitMarker(path string) string { return path + ".wait" }

// Lock takes the lock of a mailbox address, waiting while another holds
// it. The lock is refreshed in the background until Unlock.
func (l *Locker) Lock(ctx context.Context, address string) (*Lock, error) {
	path := l.path(address)
	wait := l.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	handed, yield, err := local.acquire(ctx, path, deadline)
	if err != nil {
		return nil, err
	}
	if handed != nil {
		if handed.ours() {
			return &Lock{path: path, file: handed, linger: l.Linger}, nil
		}
		// Broken while it lingered, and taken by another process: the
		// lock is taken anew below.
		handed.drop()
	}
	held := false
	defer func() {
		if !held {
			local.release(path, true)
		}
	}()
	if yield {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(yieldToOthers, time.Until(deadline))):
		}
	}
	delay := time.Millisecond
	content := fmt.Sprintf("%s %d %s %s %s\n", hostname, ownPID, time.Now().UTC().Format(time.RFC3339), address, rand.Text())
	waiting := false
	defer func() {
		if waiting {
			os.Remove(waitMarker(path))
		}
	}()
	madeDir := false
	var wake <-chan struct{} // notices of the lock file's removal (see watchName)
	watched := false
	var released <-chan struct{} // closed when the holder releases its file (see ofdWait)
	var exited <-chan struct{}   // closed when a dying holder has exited (see exitWait)
	dying := false               // the holder's OFD lock went while its file stayed
	for {
		f, err := openFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if errors.Is(err, fs.ErrNotExist) && !madeDir {
			// The lock directory is made when first needed (and again
			// if it was removed), not checked at every lock.
			madeDir = true
			if err := os.MkdirAll(l.Dir, 0o750); err != nil {
				return nil, fmt.Errorf("mailstore: lock dir: %w", err)
			}
			continue
		}
		if err == nil {
			lf, err := newLockFile(f, path, content)
			if err != nil {
				return nil, err
			}
			ofdHold(f)
			lf.startRefresh(l.staleAfter() / 4)
			held = true
			return &Lock{path: path, file: lf, linger: l.Linger}, nil
		}
		if !os.IsExist(err) {
			return nil, fmt.Errorf("mailstore: lock %s: %w", path, err)
		}
		content, stale := l.stale(path)
		if stale {
			removeIfSame(path, content)
			continue
		}
		if time.Now().After(deadline) {
			return nil, ErrLockBusy
		}
		if !watched {
			// Watch the file before waiting, then look once more: it
			// may have gone before the watch began.
			watched = true
			var stop func()
			wake, stop = watchName(l.Dir, filepath.Base(path))
			defer stop()
			if wake != nil {
				continue
			}
		}
		// Tell the holder that a taker waits (again at every try: a
		// holder that yields removes the marker).
		if m, err := os.OpenFile(waitMarker(path), os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			m.Close()
			waiting = true
		}
		if released == nil {
			released = ofdWait(path)
		}
		if released == nil && dying && exited == nil {
			// The holder let its OFD lock go and its file is still
			// there: it is exiting; the file is stale once it is gone.
			if pid := localHolder(content); pid > 0 {
				exited = exitWait(pid)
			}
		}
		dying = false
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-wake:
			t.Stop()
			lockWakes.Add(1)
		case <-released:
			t.Stop()
			lockWakes.Add(1)
			released = nil // the next wait is on the file as it is then
			dying = true
		case <-exited:
			t.Stop()
			lockWakes.Add(1)
			exited = nil
		case <-t.C:
			lockTimerWakes.Add(1)
		}
		if wake != nil && holderHost(content) == hostname {
			delay = min(delay*2, l.localRetry())
		} else {
			delay = min(delay*2, 50*time.Millisecond)
		}
	}
}

func (l *Locker) localRetry() time.Duration {
	if l.LocalRetry <= 0 {
		return time.Second
	}
	return l.LocalRetry
}

// holderHost returns the host a lock file's content names.
func holderHost(content string) string {
	host, _, _ := strings.Cut(content, " ")
	return host
}

// newLockFile writes content to the lock file f just created at path.
func newLockFile(f *os.File, path, content string) (*lockFile, error) {
	_, err := f.WriteString(content)
	var info os.FileInfo
	if err == nil {
		info, err = f.Stat()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("mailstore: write lock %s: %w", path, err)
	}
	return &lockFile{path: path, content: content, f: f, info: info, created: time.Now()}, nil
}

// ownPID is the id of this process, as lock files and unique names record it.
var ownPID = os.Getpid()

func (l *Locker) staleAfter() time.Duration {
	if l.StaleAfter <= 0 {
		return 2 * time.Minute
	}
	return l.StaleAfter
}

// stale reports whether the lock file's holder is gone, with the content
// it judged (also when live); false if the lock is live (or gone already:
// the next create will tell).
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
	pid := localHolder(content)
	if pid == 0 {
		return content, false
	}
	return content, syscall.Kill(pid, 0) == syscall.ESRCH || zombie(pid)
}

// localHolder returns the process id a lock file's content names when it
// names this host, else 0.
func localHolder(content string) int {
	fields := strings.Fields(content)
	if len(fields) < 2 || fields[0] != hostname {
		return 0
	}
	pid, err := strconv.Atoi(fields[1])
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
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

// startRefresh refreshes the lock file's time every period until
// stopRefresh (a timer, not a goroutine waiting for it).
func (lf *lockFile) startRefresh(every time.Duration) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	lf.timer = time.AfterFunc(every, func() {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		if lf.stopped {
			return
		}
		if holds(lf.path, lf.content) {
			now := time.Now()
			_ = os.Chtimes(lf.path, now, now)
		}
		lf.timer.Reset(every)
	})
}

// stopRefresh stops the refresh; a refresh running meanwhile has ended
// when it returns.
func (lf *lockFile) stopRefresh() {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	lf.stopped = true
	lf.timer.Stop()
}

// ours reports whether the lock file at path is still this one (not
// broken and replaced): the same file, which cannot be another while f
// keeps it open.
func (lf *lockFile) ours() bool {
	st, err := os.Stat(lf.path)
	return err == nil && os.SameFile(st, lf.info)
}

// drop stops the refresh of a lock file that was broken (another's file
// has its path now) and closes it, leaving the path alone.
func (lf *lockFile) drop() {
	lf.stopRefresh()
	lf.f.Close()
}

// remove stops the refresh and removes the lock file; ErrLockLost, and
// the file left alone, if it was broken while held. A file at path that
// is not this one is not even moved aside to be looked at: a taker could
// create the lock file before it is linked back, and the file, another
// holder's, would be lost.
func (lf *lockFile) remove() error {
	lf.stopRefresh()
	defer lf.f.Close()
	if !lf.ours() || !removeOwn(lf.path, lf.info) {
		return ErrLockLost
	}
	return nil
}

// removeOwn is removeIfSame for the holder of the lock file: what it
// moved aside is its own file when it is the file the holder keeps open
// (one stat instead of reading it back).
func removeOwn(path string, own os.FileInfo) bool {
	aside := path + ".stale-" + rand.Text()[:8]
	if os.Rename(path, aside) != nil {
		return false
	}
	if st, err := os.Stat(aside); err == nil && !os.SameFile(st, own) {
		_ = os.Link(aside, path)
		os.Remove(aside)
		return false
	}
	os.Remove(aside)
	return true
}

// Unlock releases the lock. It returns ErrLockLost, and leaves the lock
// file alone, if the lock was broken while held. While other takers of
// this process wait for the same lock, the lock file is handed to the
// next of them instead of being removed and created again, up to
// maxHandovers times in a row or for maxHandoverTime, and never while a
// taker of another process waits (its wait marker exists): then the file
// is removed and the next taker here lets the other go first. With
// Locker.Linger, a file nobody here waits for is kept for the next taker
// as if handed over, under the same bounds. A file broken while held is
// neither handed over nor kept, and a taker given a file that was broken
// while it lingered takes the lock anew.
func (lk *Lock) Unlock() error {
	if lk.done {
		return nil
	}
	lk.done = true
	lf := lk.file
	if lf.handed < maxHandovers && time.Since(lf.created) < maxHandoverTime {
		if local.waiting(lf.path) {
			if _, err := os.Stat(waitMarker(lf.path)); err == nil {
				os.Remove(waitMarker(lf.path))
				local.yieldNext(lf.path)
			} else if lf.ours() {
				lf.handed++
				if local.handOver(lf) {
					return nil
				}
				lf.handed--
			}
		} else if lk.linger > 0 {
			// Nobody here waits: the file lingers for the next taker,
			// unless a taker of another process waits for it or it was
			// broken while held.
			if _, err := os.Stat(waitMarker(lf.path)); err != nil && lf.ours() {
				lf.handed++
				local.keep(lf, lk.linger)
				return nil
			}
		}
	}
	defer local.release(lf.path, true)
	return lf.remove()
}
