package mailstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// appendQueue holds the APPENDs of a folder whose messages are written
// and synced in tmp/, waiting to be given a UID and placed into cur/. One
// goroutine at a time places them, in batches (group commit): a batch
// takes the account's lock once, gives its messages their UIDs in one
// write and sync of the UID log, renames them into cur/, and lets the
// lock go; the sync of cur/, which it shares with concurrent ones, ends
// before any of its APPENDs returns. APPENDs that arrive while a batch is
// under way make the next one.
type appendQueue struct {
	mu      sync.Mutex
	running bool
	waiting []*appendReq
}

// appendReq is one APPEND waiting in an appendQueue.
type appendReq struct {
	ctx   context.Context
	tmp   string // the message, written and synced
	size  int64
	flags string
	date  time.Time

	// Set by the batch before done is closed.
	validity, uid uint32
	dst           string // the message's file once placed
	err           error
	done          chan struct{}
}

// place gives the message of r its UID and places it (see appendQueue),
// and returns once it is durable or failed.
func (f *Folder) place(r *appendReq) {
	r.done = make(chan struct{})
	q := &f.v.appends
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	if !q.running {
		q.running = true
		go f.runAppends(q)
	}
	q.mu.Unlock()
	<-r.done
}

// runAppends places batches until none waits.
func (f *Folder) runAppends(q *appendQueue) {
	for {
		q.mu.Lock()
		batch := q.waiting
		q.waiting = nil
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		f.appendBatch(batch)
	}
}

// batchContext returns a context done when the contexts of every request
// of a batch are: the batch gives up waiting for the lock only when
// nobody waits for it any more.
func batchContext(batch []*appendReq) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(batch)))
	stops := make([]func() bool, 0, len(batch))
	for _, r := range batch {
		stops = append(stops, context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// appendBatch places a batch: under the account's lock, the quota is
// checked with the batch's sizes (as for deliveries), the UIDs are given
// in the UID log (or, when the log is long, in a new snapshot of the
// map), synced, and the messages renamed into cur/; then cur/ is synced
// (without the lock, in its own goroutine) before the requests are done.
func (f *Folder) appendBatch(batch []*appendReq) {
	ctx, stop := batchContext(batch)
	defer stop()
	var placed []*appendReq
	err := f.store.locked(ctx, f.acct, func() error {
		a := f.store.current(f.acct)
		var bytes, count int64
		var ok []*appendReq
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			if f.store.OverQuota(a, bytes+r.size, count+1) {
				r.err = &QuotaError{Address: a.Address()}
				continue
			}
			bytes, count = bytes+r.size, count+1
			ok = append(ok, r)
		}
		if len(ok) == 0 {
			return nil
		}
		// A new UID needs only the map (its UIDNEXT never goes back), not
		// a listing of the folder: files that others added without a UID
		// get theirs at the next reconcile (SELECT, a rescan), after
		// these. Without a map (new or damaged), the files are reconciled
		// first.
		m, st, err := f.readMapState(true)
		if err != nil {
			return &LocalError{Err: err}
		}
		if m == nil {
			if _, _, err = f.reconcile(); err != nil {
				return err
			}
			if m, st, err = f.readMapState(true); m == nil {
				if err == nil {
					err = errors.New("mailstore: UID map not readable after its write")
				}
				return &LocalError{Err: err}
			}
		}
		m = m.clone()
		var lines []byte
		keys := make([]string, len(ok))
		for i, r := range ok {
			keys[i] = uniqueName(r.size)
			u, err := m.add(keys[i])
			if err != nil {
				return err
			}
			r.validity, r.uid = m.validity, u
			lines = encodeLogLine(lines, m.validity, u, keys[i])
		}
		if st.logLines+len(ok) > foldLines(len(m.uids)-st.logLines-len(ok)) {
			err = f.writeMap(m)
		} else if st, err = f.appendLog(st, lines, len(ok)); err == nil {
			f.v.mu.Lock()
			f.v.mapCache, f.v.mapSt = m, st
			f.v.mu.Unlock()
		}
		if err != nil {
			return err
		}
		for i, r := range ok {
			dst := filepath.Join(f.dir, "cur", keys[i]+":2,"+r.flags)
			if err := f.store.fs.Rename(r.tmp, dst); err != nil {
				r.err = &LocalError{Err: err} // its UID has no file: dropped at the next reconcile
				continue
			}
			if !r.date.IsZero() {
				_ = os.Chtimes(dst, r.date, r.date) // the internal date
			}
			r.dst = dst
			placed = append(placed, r)
		}
		f.forgetFiles()
		return nil
	})
	if err != nil {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
			close(r.done)
		}
		return
	}
	for _, r := range batch {
		if r.dst == "" {
			close(r.done)
		}
	}
	if len(placed) == 0 {
		return
	}
	go func() {
		if err := f.store.syncs.Sync(filepath.Join(f.dir, "cur"), f.store.fs.SyncDir); err != nil {
			f.takeBack(placed)
			for _, r := range placed {
				r.err = &LocalError{Err: err}
			}
		}
		for _, r := range placed {
			close(r.done)
		}
	}()
}

// takeBack removes the messages of appends that fail after they were
// placed (cur/ could not be synced), under the folder's lock and by their
// key, so that a change of flags made meanwhile (a rename) does not keep
// one; their UIDs are dropped at the next reconcile. When the lock cannot
// be had they are removed without it.
func (f *Folder) takeBack(placed []*appendReq) {
	remove := func() error {
		des, err := os.ReadDir(filepath.Join(f.dir, "cur"))
		if err != nil {
			return err
		}
		for _, r := range placed {
			key, _, _ := strings.Cut(filepath.Base(r.dst), ":")
			for _, de := range des {
				if n := de.Name(); n == key || strings.HasPrefix(n, key+":") {
					os.Remove(filepath.Join(f.dir, "cur", n))
				}
			}
		}
		f.forgetFiles()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rerr error
	if err := f.store.locked(ctx, f.acct, func() error { rerr = remove(); return nil }); err != nil {
		f.store.log.Error("mailstore: taking back failed appends without the folder's lock", "folder", f.dir, "err", err)
		rerr = remove()
	}
	if rerr != nil {
		for _, r := range placed {
			os.Remove(r.dst)
		}
		f.forgetFiles()
	}
}
