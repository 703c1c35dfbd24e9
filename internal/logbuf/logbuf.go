// Package logbuf lets a busy process write its log lines with fewer
// system calls: lines are handed to a writer goroutine, which writes
// everything that arrived since its last write in one call. A line that
// arrives while nothing is being written is written at once, so a quiet
// process logs as it would unbuffered; under load (an access log line
// per request) the lines of many requests share one write, gathered for
// at most a millisecond.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// maxPending bounds the bytes waiting to be written: a Write beyond it
// waits for the writer goroutine (a log that cannot keep up slows the
// process rather than growing without bound or losing lines).
const maxPending = 1 << 20

// gather is how long the writer goroutine waits for more lines when
// lines kept arriving during its last write: the most a line waits
// beyond the write before it.
const gather = time.Millisecond

// Writer is an io.Writer for log lines; see the package comment. It is
// safe for concurrent use. Close writes what is pending and stops it.
type Writer struct {
	out     io.Writer
	mu      sync.Mutex
	cond    *sync.Cond // signals the goroutine (work or close) and writers waiting for room
	pending []byte
	closed  bool
	done    chan struct{}
	err     error // the first write error, for Close
}

// New returns a Writer writing to out.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Write queues p (one or more whole log lines) and returns at once,
// unless maxPending bytes are already waiting. After Close it writes p
// directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for !w.closed && len(w.pending) >= maxPending {
		w.cond.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.cond.Broadcast()
	w.mu.Unlock()
	return len(p), nil
}

// run writes what is pending, in one call per batch.
func (w *Writer) run() {
	defer close(w.done)
	var spare []byte
	busy := false
	w.mu.Lock()
	for {
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.pending) == 0 && w.closed {
			w.mu.Unlock()
			return
		}
		if busy && !w.closed && len(w.pending) < maxPending/2 {
			// Lines are streaming: gather for a moment so that many
			// share the write.
			w.mu.Unlock()
			time.Sleep(gather)
			w.mu.Lock()
		}
		batch := w.pending
		w.pending, spare = spare[:0], nil
		w.cond.Broadcast() // room for waiting writers
		w.mu.Unlock()
		_, err := w.out.Write(batch)
		w.mu.Lock()
		// Busy: more lines came while this batch was written.
		busy = len(w.pending) > 0
		if err != nil && w.err == nil {
			w.err = err
		}
		if cap(batch) <= 64<<10 {
			spare = batch
		} else {
			spare = nil
		}
	}
}

// Close writes what is pending and returns the first write error; later
// Writes go straight to the underlying writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
