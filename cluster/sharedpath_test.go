package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/internal/testkv"
	"mailcluster/schema"
)

// fakeClock is a clock that moves only when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestSharedPathCache: within the cache window Verify answers from the
// cache without touching the file system (the probe file removed under it
// changes nothing); once the window has passed it checks again; a new probe
// token is checked at once.
func TestSharedPathCache(t *testing.T) {
	ctx := context.Background()
	st := testkv.MustOpenBoltStore(t, "")
	dir := t.TempDir()
	primary := &cluster.SharedPath{Dir: dir, Node: "n1", Store: st}
	if err := primary.EnsureProbe(ctx); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, ".mailcluster-probe")
	if _, err := os.Stat(probe); err != nil {
		t.Fatalf("the primary wrote no probe file: %v", err)
	}

	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// CacheFor is left at zero: the default window of 5 s.
	node := &cluster.SharedPath{Dir: dir, Node: "n2", Store: st, Now: clock.Now}
	verify := func(wantOK bool, when string) string {
		t.Helper()
		ok, detail := node.Verify()
		if ok != wantOK {
			t.Fatalf("%s: Verify = %v (%s), want %v", when, ok, detail, wantOK)
		}
		return detail
	}
	verify(true, "first check")

	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	verify(true, "probe removed, same instant")
	clock.Advance(5*time.Second - time.Millisecond)
	verify(true, "probe removed, just inside the window")

	clock.Advance(time.Millisecond)
	if detail := verify(false, "probe removed, window passed"); !strings.Contains(detail, "not readable") {
		t.Errorf("detail %q does not say the probe is unreadable", detail)
	}

	// The failing answer is cached the same way.
	if err := primary.EnsureProbe(ctx); err != nil {
		t.Fatal(err)
	}
	verify(false, "probe back, same instant")
	clock.Advance(5 * time.Second)
	verify(true, "probe back, window passed")

	// A new token (the primary wrote a new probe) is checked at once: the
	// node's old answer was for the old token.
	if _, err := st.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.KeySharedProbe, Value: []byte("another-token")}}); err != nil {
		t.Fatal(err)
	}
	if detail := verify(false, "new token, same instant"); !strings.Contains(detail, "not the primary's") {
		t.Errorf("detail %q does not say the probe file is another one", detail)
	}

	// An explicit window replaces the default.
	short := &cluster.SharedPath{Dir: dir, Node: "n3", Store: st, Now: clock.Now, CacheFor: time.Second}
	if ok, _ := short.Verify(); ok {
		t.Fatal("Verify = true with a probe file that does not match the token")
	}
	if err := os.WriteFile(probe, []byte("another-token\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, _ := short.Verify(); ok {
		t.Fatal("the answer changed within the 1 s window")
	}
	clock.Advance(time.Second)
	if ok, detail := short.Verify(); !ok {
		t.Fatalf("after the 1 s window Verify = false (%s)", detail)
	}
}
