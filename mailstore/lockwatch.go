package mailstore

import (
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// A taker waiting for a lock file that another process of this host
// holds is woken by the file's removal (inotify, through fsnotify), not
// by trying again on a timer; it still tries on a long timer in case a
// notice is lost. A file system shared between hosts tells nothing of
// another host's changes, so a taker waiting for another host's lock
// keeps trying with a short backoff (see Locker.Lock).

// lockWatch watches one lock directory for as long as a taker of this
// process waits on a file in it.
type lockWatch struct {
	dir  string
	w    *fsnotify.Watcher
	refs int // guarded by lockWatches.mu
	mu   sync.Mutex
	subs map[string]map[chan struct{}]bool // file name -> waiting takers
}

// lockWakes counts the wakes of waiting takers by a notice or a release,
// lockTimerWakes those by their timer (tests).
var lockWakes, lockTimerWakes atomic.Int64

var lockWatches = struct {
	mu sync.Mutex
	m  map[string]*lockWatch
}{m: map[string]*lockWatch{}}

// watchName returns a channel that receives (at most one notice kept)
// whenever the file name in dir is removed, renamed away or created, and
// the function that ends the watch. The channel is nil when dir cannot
// be watched (no inotify instance left, or a system without one): the
// caller then tries on its timer alone.
func watchName(dir, name string) (<-chan struct{}, func()) {
	lockWatches.mu.Lock()
	lw := lockWatches.m[dir]
	if lw == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			lockWatches.mu.Unlock()
			return nil, func() {}
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			lockWatches.mu.Unlock()
			return nil, func() {}
		}
		lw = &lockWatch{dir: dir, w: w, subs: map[string]map[chan struct{}]bool{}}
		lockWatches.m[dir] = lw
		go lw.run()
	}
	lw.refs++
	lockWatches.mu.Unlock()
	ch := make(chan struct{}, 1)
	lw.mu.Lock()
	if lw.subs[name] == nil {
		lw.subs[name] = map[chan struct{}]bool{}
	}
	lw.subs[name][ch] = true
	lw.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			lw.mu.Lock()
			delete(lw.subs[name], ch)
			if len(lw.subs[name]) == 0 {
				delete(lw.subs, name)
			}
			lw.mu.Unlock()
			lockWatches.mu.Lock()
			lw.refs--
			if lw.refs == 0 {
				delete(lockWatches.m, dir)
				lw.w.Close()
			}
			lockWatches.mu.Unlock()
		})
	}
}

// run passes the watcher's events to the takers waiting on their file,
// until the watcher is closed. A lost notice (the kernel's queue
// overflowed) wakes every taker.
func (lw *lockWatch) run() {
	for {
		select {
		case ev, ok := <-lw.w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Create) {
				lw.notify(filepath.Base(ev.Name))
			}
		case _, ok := <-lw.w.Errors:
			if !ok {
				return
			}
			lw.notify("")
		}
	}
}

// notify wakes the takers waiting on name ("": every taker).
func (lw *lockWatch) notify(name string) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for n, chs := range lw.subs {
		if name != "" && n != name {
			continue
		}
		for ch := range chs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
