package logbuf_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/logbuf"
)

// countingWriter records what it got and how many calls it took; each
// call can be made slow.
type countingWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
	delay time.Duration
}

func (c *countingWriter) Write(p []byte) (int, error) {
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.buf.Write(p)
}

func (c *countingWriter) snapshot() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.calls
}

// Every line arrives, whole and in each writer's order, and lines written
// while a write is in progress share the next write.
func TestEveryLineInOrderFewerWrites(t *testing.T) {
	out := &countingWriter{delay: 2 * time.Millisecond}
	w := logbuf.New(out)
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if _, err := fmt.Fprintf(w, "g%d line %d\n", g, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, calls := out.snapshot()
	all := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(all) != writers*lines {
		t.Fatalf("%d lines arrived, want %d", len(all), writers*lines)
	}
	next := make([]int, writers)
	for _, l := range all {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("torn line %q", l)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	if calls >= writers*lines/4 {
		t.Fatalf("%d lines took %d writes; lines that wait while a write runs share the next", writers*lines, calls)
	}
}

// A line written while nothing else is is written at once, not held for
// company.
func TestQuietLineWrittenAtOnce(t *testing.T) {
	out := &countingWriter{}
	w := logbuf.New(out)
	defer w.Close()
	fmt.Fprintln(w, "alone")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := out.snapshot(); got == "alone\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone line was not written within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// Writes after Close go straight through.
func TestWriteAfterClose(t *testing.T) {
	out := &countingWriter{}
	w := logbuf.New(out)
	fmt.Fprintln(w, "before")
	w.Close()
	fmt.Fprintln(w, "after")
	if got, _ := out.snapshot(); got != "before\nafter\n" {
		t.Fatalf("got %q", got)
	}
}
