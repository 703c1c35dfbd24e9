package kvstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailcluster"
	"mailcluster/kvstore"
)

// MustOpenState opens a state at path (a fresh temp file when "") and
// closes it when the test ends.
func MustOpenState(tb testing.TB, path string, o kvstore.StateOptions) *kvstore.State {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "snapshot.db")
	}
	s, err := kvstore.OpenState(path, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func kv(key, value string, index uint64) mailcluster.KV {
	return mailcluster.KV{Key: key, Value: []byte(value), ModifyIndex: index}
}

func mustApply(tb testing.TB, s *kvstore.State, index uint64, set []mailcluster.KV, del []string, meta map[string][]byte) {
	tb.Helper()
	if err := s.Apply(index, set, del, meta); err != nil {
		tb.Fatal(err)
	}
}

func keysOf(kvs []mailcluster.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// checkCounts compares the maintained counts with a scan of the keys.
func checkCounts(tb testing.TB, s interface {
	Count(string) int
	List(string, string, int) []mailcluster.KV
}, want map[string]int) {
	tb.Helper()
	for prefix, n := range want {
		if got := s.Count(prefix); got != n {
			tb.Errorf("Count(%q) = %d, want %d", prefix, got, n)
		}
		if got := len(s.List(prefix, "", 0)); got != n {
			tb.Errorf("len(List(%q)) = %d, want %d", prefix, got, n)
		}
	}
}

func TestStateGetList(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{})
	mustApply(t, s, 3, []mailcluster.KV{
		kv("accounts/d/u1", "1", 1), kv("accounts/d/u2", "2", 2), kv("accounts/d/u3", "3", 3),
		kv("accounts/dd/x", "x", 3), kv("domains/d", "D", 1),
	}, nil, nil)
	t.Run("Get", func(t *testing.T) {
		got, ok := s.Get("accounts/d/u2")
		if !ok || string(got.Value) != "2" || got.ModifyIndex != 2 || got.Key != "accounts/d/u2" {
			t.Fatalf("Get = %+v %v", got, ok)
		}
		got.Value[0] = 'X' // a copy: changing it changes nothing stored
		if again, _ := s.Get("accounts/d/u2"); string(again.Value) != "2" {
			t.Fatalf("the value returned by Get aliases the store: %q", again.Value)
		}
		if _, ok := s.Get("accounts/d/none"); ok {
			t.Fatal("Get of a missing key found it")
		}
	})
	t.Run("List", func(t *testing.T) {
		if got := fmt.Sprint(keysOf(s.List("accounts/d/", "", 0))); got != "[accounts/d/u1 accounts/d/u2 accounts/d/u3]" {
			t.Fatalf("List = %s", got)
		}
		if got := fmt.Sprint(keysOf(s.List("accounts/d/", "accounts/d/u1", 1))); got != "[accounts/d/u2]" {
			t.Fatalf("page = %s", got)
		}
		if got := s.List("accounts/d/", "accounts/d/u3", 10); len(got) != 0 {
			t.Fatalf("page after the last = %v", keysOf(got))
		}
		if got := fmt.Sprint(keysOf(s.List("accounts/d", "", 0))); got != "[accounts/d/u1 accounts/d/u2 accounts/d/u3 accounts/dd/x]" {
			t.Fatalf("List without slash = %s", got)
		}
		if got := len(s.List("", "", 0)); got != 5 {
			t.Fatalf("List of everything = %d keys", got)
		}
	})
}

func TestStateCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot.db")
	s, err := kvstore.OpenState(path, kvstore.StateOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Run("Create", func(t *testing.T) {
		mustApply(t, s, 1, []mailcluster.KV{
			kv("accounts/a.com/u1", "", 1), kv("accounts/a.com/u2", "", 1), kv("accounts/b.com/u1", "", 1),
			kv("domains/a.com", "", 1), kv("settings/f/s/k", "", 1), kv("dir/", "", 1),
		}, nil, nil)
		checkCounts(t, s, map[string]int{"accounts/": 3, "accounts/a.com/": 2, "accounts/b.com/": 1, "domains/": 1,
			"settings/": 1, "settings/f/": 1, "settings/f/s/": 1, "dir/": 1, "accounts/a.com/u": 2, "": 6, "none/": 0})
	})
	t.Run("Overwrite", func(t *testing.T) {
		mustApply(t, s, 2, []mailcluster.KV{kv("accounts/a.com/u1", "new", 2), kv("domains/a.com", "new", 2)}, nil, nil)
		checkCounts(t, s, map[string]int{"accounts/": 3, "accounts/a.com/": 2, "domains/": 1, "": 6})
	})
	t.Run("Delete", func(t *testing.T) {
		mustApply(t, s, 3, nil, []string{"accounts/a.com/u1", "accounts/b.com/u1", "accounts/missing/x", "domains/none"}, nil)
		checkCounts(t, s, map[string]int{"accounts/": 1, "accounts/a.com/": 1, "accounts/b.com/": 0, "accounts/missing/": 0, "domains/": 1, "": 4})
	})
	t.Run("SameKeySetAndDeleted", func(t *testing.T) {
		// set and del of one Apply: the deletes come last.
		mustApply(t, s, 4, []mailcluster.KV{kv("accounts/c.com/u", "", 4)}, []string{"accounts/c.com/u"}, nil)
		checkCounts(t, s, map[string]int{"accounts/": 1, "accounts/c.com/": 0})
	})
	t.Run("Reopen", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := MustOpenState(t, path, kvstore.StateOptions{})
		if s2.Index() != 4 {
			t.Fatalf("index after reopen = %d", s2.Index())
		}
		checkCounts(t, s2, map[string]int{"accounts/": 1, "accounts/a.com/": 1, "domains/": 1, "settings/f/s/": 1, "": 4})
	})
}

func TestStateMeta(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot.db")
	s, err := kvstore.OpenState(path, kvstore.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Meta("feed"); v != nil {
		t.Fatalf("unset meta = %q", v)
	}
	mustApply(t, s, 1, []mailcluster.KV{kv("domains/a", "", 1)}, nil, map[string][]byte{"feed": []byte("e1/7"), "other": []byte("x")})
	if v := s.Meta("feed"); string(v) != "e1/7" {
		t.Fatalf("meta = %q", v)
	}
	// A failed Apply (an empty key) writes none of its meta, keys or index.
	if err := s.Apply(9, []mailcluster.KV{kv("domains/b", "", 9), kv("", "", 9)}, nil, map[string][]byte{"feed": []byte("e1/9")}); err == nil {
		t.Fatal("an Apply with an empty key succeeded")
	}
	if _, ok := s.Get("domains/b"); ok || string(s.Meta("feed")) != "e1/7" || s.Index() != 1 || s.Count("domains/") != 1 {
		t.Fatalf("a failed Apply left traces: meta %q index %d", s.Meta("feed"), s.Index())
	}
	mustApply(t, s, 2, nil, nil, map[string][]byte{"other": nil, "feed": []byte("e1/8")})
	s.Close()
	s = MustOpenState(t, path, kvstore.StateOptions{})
	if v := s.Meta("feed"); string(v) != "e1/8" {
		t.Fatalf("meta after reopen = %q", v)
	}
	if v := s.Meta("other"); v != nil {
		t.Fatalf("deleted meta = %q", v)
	}
}

func TestStateIndex(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	done := make(chan error, 1)
	go func() { done <- s.WaitIndex(context.Background(), 5) }()
	mustApply(t, s, 5, []mailcluster.KV{kv("domains/a", "", 5)}, nil, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitIndex not woken by Apply")
	}
	t.Run("NeverDown", func(t *testing.T) {
		mustApply(t, s, 3, []mailcluster.KV{kv("domains/b", "", 3)}, nil, nil)
		if s.Index() != 5 {
			t.Fatalf("index = %d after an Apply at a lower index", s.Index())
		}
		if _, ok := s.Get("domains/b"); !ok {
			t.Fatal("the keys of an Apply at a lower index were not written")
		}
	})
	t.Run("ErrCancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.WaitIndex(ctx, 6); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitIndex beyond the index = %v", err)
		}
		if err := s.WaitIndex(ctx, 5); err != nil {
			t.Fatalf("WaitIndex of a reached index = %v", err)
		}
	})
}

func TestStateNotify(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	mustApply(t, s, 1, []mailcluster.KV{kv("settings/f/s/k", "", 1)}, nil, nil)
	settings, stop1 := s.Notify("settings/")
	defer stop1()
	domains, stop2 := s.Notify("domains/")
	defer stop2()
	stopped, stop3 := s.Notify("domains/")
	stop3()
	// Wakes happen before Apply returns.
	mustApply(t, s, 2, []mailcluster.KV{kv("domains/x", "", 2)}, []string{"settings/f/s/none"}, nil)
	select {
	case <-domains:
	default:
		t.Fatal("no notification for a key under the prefix")
	}
	select {
	case <-settings:
		t.Fatal("notified for a key outside the prefix (or a delete of a missing key)")
	case <-stopped:
		t.Fatal("a stopped watch was notified")
	default:
	}
	mustApply(t, s, 3, nil, []string{"settings/f/s/k"}, nil)
	select {
	case <-settings:
	default:
		t.Fatal("no notification for a delete under the prefix")
	}
}

// sumWriters runs writers that move amounts between keys under "sum/" in
// multi-key Applies (the sum stays total) until stop is closed.
func sumWriters(t *testing.T, s *kvstore.State, keys int, stop <-chan struct{}, next *atomic.Uint64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, b := fmt.Sprintf("sum/k%02d", (i+w)%keys), fmt.Sprintf("sum/k%02d", (i*7+w+1)%keys)
				if a == b {
					continue
				}
				// One writer at a time reads and writes, so the transfer is exact.
				sumMu.Lock()
				va, vb := value(t, s, a), value(t, s, b)
				idx := next.Add(1)
				err := s.Apply(idx, []mailcluster.KV{
					kv(a, strconv.Itoa(va-3), idx), kv(b, strconv.Itoa(vb+3), idx),
				}, nil, nil)
				sumMu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return &wg
}

var sumMu sync.Mutex

func value(t *testing.T, s *kvstore.State, key string) int {
	got, _ := s.Get(key)
	n, err := strconv.Atoi(string(got.Value))
	if err != nil {
		t.Errorf("%s = %q", key, got.Value)
	}
	return n
}

func sumOf(t *testing.T, kvs []mailcluster.KV) int {
	total := 0
	for _, kv := range kvs {
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			t.Errorf("%s = %q", kv.Key, kv.Value)
		}
		total += n
	}
	return total
}

func seedSum(t *testing.T, s *kvstore.State, keys, each int, index uint64) {
	var set []mailcluster.KV
	for i := range keys {
		set = append(set, kv(fmt.Sprintf("sum/k%02d", i), strconv.Itoa(each), index))
	}
	mustApply(t, s, index, set, nil, nil)
}

func TestStateListConsistent(t *testing.T) {
	const keys = 20
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	seedSum(t, s, keys, 100, 1)
	var next atomic.Uint64
	next.Store(1)
	stop := make(chan struct{})
	writers := sumWriters(t, s, keys, stop, &next)
	deadline := time.Now().Add(20 * time.Second)
	reads, torn := 0, 0
	for (reads < 2000 || next.Load() < 1000) && time.Now().Before(deadline) {
		page := s.List("sum/", "", 0)
		if len(page) != keys {
			t.Fatalf("List saw %d keys", len(page))
		}
		if sumOf(t, page) != keys*100 {
			torn++
		}
		if s.Count("sum/") != keys {
			t.Fatal("count changed by overwrites")
		}
		reads++
	}
	close(stop)
	writers.Wait()
	if torn > 0 {
		t.Fatalf("%d of %d reads saw half of a multi-key Apply", torn, reads)
	}
	if next.Load() < 1000 {
		t.Fatalf("only %d writes ran alongside the reads", next.Load())
	}
	t.Logf("%d reads alongside %d writes", reads, next.Load()-1)
}

func TestStateRebuild(t *testing.T) {
	const keys = 20
	path := filepath.Join(t.TempDir(), "snapshot.db")
	s := MustOpenState(t, path, kvstore.StateOptions{NoSync: true})
	// Old content: sum/ keys of 100 each, a domain and an account.
	seedSum(t, s, keys, 100, 1)
	mustApply(t, s, 50, []mailcluster.KV{kv("domains/old.com", "o", 2), kv("accounts/old.com/u", "u", 2), kv("settings/f/s/k", "same", 3)},
		nil, map[string][]byte{"feed": []byte("old")})

	// Readers check every view holds a whole content: the old sum until
	// the swap, the new one after it, never the old one again.
	stop := make(chan struct{})
	var swapped atomic.Bool
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sawNew := false
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				committed := swapped.Load()
				sum := sumOf(t, s.List("sum/", "", 0))
				reads.Add(1)
				switch {
				case sum == keys*200:
					sawNew = true
				case sum == keys*100 && !sawNew && !committed:
				default:
					t.Errorf("a reader saw sum %d (new seen %v, committed %v)", sum, sawNew, committed)
					return
				}
			}
		}()
	}
	t.Cleanup(func() {
		close(stop)
		readers.Wait()
	})

	settings, stop1 := s.Notify("settings/")
	defer stop1()
	domains, stop2 := s.Notify("domains/")
	defer stop2()
	accounts, stop3 := s.Notify("accounts/new.com/")
	defer stop3()
	sums, stop4 := s.Notify("sum/")
	defer stop4()

	if err := os.WriteFile(path+".rebuild", []byte("left over"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rebuild(); err == nil {
		t.Fatal("a second Rebuild started while one runs")
	}
	// New content, in pages: sum/ keys of 200 each, another domain.
	for p := 0; p < keys; p += 7 {
		var page []mailcluster.KV
		for i := p; i < min(p+7, keys); i++ {
			page = append(page, kv(fmt.Sprintf("sum/k%02d", i), "200", 60))
		}
		if err := r.Put(page); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Put([]mailcluster.KV{kv("domains/new.com", "n", 61), kv("accounts/new.com/a", "", 61), kv("accounts/new.com/b", "", 61), kv("settings/f/s/k", "same", 3)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(62, []mailcluster.KV{kv("accounts/new.com/c", "", 62)}, []string{"accounts/new.com/b"}); err != nil {
		t.Fatal(err)
	}
	// Until Commit the state serves the old content, and still takes writes.
	if _, ok := s.Get("domains/new.com"); ok {
		t.Fatal("rebuilt content visible before Commit")
	}
	if s.Count("accounts/old.com/") != 1 || s.Index() != 50 || string(s.Meta("feed")) != "old" {
		t.Fatal("old content changed before Commit")
	}
	mustApply(t, s, 51, []mailcluster.KV{kv("domains/old2.com", "", 51)}, nil, nil)
	select {
	case <-domains:
	default:
		t.Fatal("Apply during a rebuild woke no watcher")
	}
	waitReads(t, &reads, 50)

	if err := r.Commit(70, map[string][]byte{"feed": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	swapped.Store(true)
	if _, err := os.Stat(path + ".rebuild"); !os.IsNotExist(err) {
		t.Fatalf("rebuild file still there: %v", err)
	}
	if s.Index() != 70 || string(s.Meta("feed")) != "new" {
		t.Fatalf("after Commit: index %d meta %q", s.Index(), s.Meta("feed"))
	}
	if _, ok := s.Get("domains/old.com"); ok {
		t.Fatal("old content still served after Commit")
	}
	if got, ok := s.Get("domains/new.com"); !ok || string(got.Value) != "n" || got.ModifyIndex != 61 {
		t.Fatalf("new content after Commit: %+v %v", got, ok)
	}
	checkCounts(t, s, map[string]int{"sum/": keys, "domains/": 1, "accounts/": 2, "accounts/new.com/": 2, "accounts/old.com/": 0, "settings/f/s/": 1})
	for name, ch := range map[string]<-chan struct{}{"domains/": domains, "accounts/new.com/": accounts, "sum/": sums} {
		select {
		case <-ch:
		default:
			t.Errorf("watcher of %s not woken by a Commit that changed keys under it", name)
		}
	}
	select {
	case <-settings:
		t.Error("watcher of settings/ woken, though no key under it changed")
	default:
	}
	// Writes go to the new file, synced or not as the state was opened,
	// and a new Rebuild may start.
	mustApply(t, s, 71, []mailcluster.KV{kv("accounts/new.com/d", "", 71)}, nil, nil)
	if s.Count("accounts/new.com/") != 3 {
		t.Fatalf("count after an Apply on the rebuilt file = %d", s.Count("accounts/new.com/"))
	}
	r2, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Abort(); err != nil {
		t.Fatal(err)
	}
	waitReads(t, &reads, reads.Load()+50)
	close(stop)
	readers.Wait()
	stop = make(chan struct{})

	// The swapped file is the state's file: it reopens with the new content.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := MustOpenState(t, path, kvstore.StateOptions{})
	if s2.Index() != 71 || s2.Count("accounts/new.com/") != 3 || string(s2.Meta("feed")) != "new" {
		t.Fatalf("after reopen: index %d count %d", s2.Index(), s2.Count("accounts/new.com/"))
	}
}

func TestStateRebuildIndexDown(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	mustApply(t, s, 100, []mailcluster.KV{kv("domains/a", "a", 100)}, nil, nil)
	r, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put([]mailcluster.KV{kv("domains/a", "a", 10)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(10, nil); err != nil {
		t.Fatal(err)
	}
	if s.Index() != 10 {
		t.Fatalf("index = %d, want 10 (restored)", s.Index())
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitIndex(cancelled, 10); err != nil {
		t.Fatalf("WaitIndex(10) = %v", err)
	}
	if err := s.WaitIndex(cancelled, 11); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitIndex(11) at index 10 = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitIndex(context.Background(), 12) }()
	mustApply(t, s, 12, []mailcluster.KV{kv("domains/b", "", 12)}, nil, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitIndex not woken when the index grew again")
	}
	if s.Index() != 12 {
		t.Fatalf("index = %d", s.Index())
	}
}

func TestStateRebuildAbort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot.db")
	s := MustOpenState(t, path, kvstore.StateOptions{})
	mustApply(t, s, 5, []mailcluster.KV{kv("domains/a", "a", 5), kv("accounts/a/u", "", 5)}, nil, map[string][]byte{"feed": []byte("p")})
	w, stop := s.Notify("")
	defer stop()
	r, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put([]mailcluster.KV{kv("domains/b", "b", 9)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".rebuild"); !os.IsNotExist(err) {
		t.Fatalf("rebuild file left after Abort: %v", err)
	}
	if err := r.Commit(9, nil); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if _, ok := s.Get("domains/b"); ok || s.Index() != 5 || s.Count("domains/") != 1 || s.Count("accounts/a/") != 1 || string(s.Meta("feed")) != "p" {
		t.Fatal("Abort changed the state")
	}
	select {
	case <-w:
		t.Fatal("Abort woke a watcher")
	default:
	}
	if r, err = s.Rebuild(); err != nil {
		t.Fatalf("Rebuild after Abort: %v", err)
	}
	r.Abort()
}

func TestStateClosed(t *testing.T) {
	s, err := kvstore.OpenState(filepath.Join(t.TempDir(), "snapshot.db"), kvstore.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 1, []mailcluster.KV{kv("domains/a", "", 1)}, nil, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("domains/a"); ok || s.List("", "", 0) != nil || s.Count("domains/") != 0 {
		t.Fatal("a closed state served reads")
	}
	if err := s.Apply(2, []mailcluster.KV{kv("domains/b", "", 2)}, nil, nil); err == nil {
		t.Fatal("Apply on a closed state succeeded")
	}
	if _, err := s.Rebuild(); err == nil {
		t.Fatal("Rebuild on a closed state started")
	}
}

// waitReads waits until the readers have made n reads (bounded).
func waitReads(t *testing.T, reads *atomic.Int64, n int64) {
	t.Helper()
	for i := 0; reads.Load() < n; i++ {
		if i > 10000 {
			t.Fatalf("readers stalled at %d reads", reads.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// writeOldFormat writes a state file as it was before counts existed:
// bucket "kv" (8-byte index + value) and "meta" with "index" only.
func writeOldFormat(t *testing.T, path string, index uint64, kvs []mailcluster.KV) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		kvb, err := tx.CreateBucket([]byte("kv"))
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			rec := binary.BigEndian.AppendUint64(nil, kv.ModifyIndex)
			if err := kvb.Put([]byte(kv.Key), append(rec, kv.Value...)); err != nil {
				return err
			}
		}
		return meta.Put([]byte("index"), binary.BigEndian.AppendUint64(nil, index))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStateOldFormat(t *testing.T) {
	old := []mailcluster.KV{kv("accounts/a.com/u1", "1", 3), kv("accounts/a.com/u2", "2", 4), kv("accounts/b.com/u", "3", 5), kv("domains/a.com", "d", 2)}
	t.Run("BoltStore", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		writeOldFormat(t, path, 7, old)
		s, err := kvstore.OpenBoltStore(path, discard())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Index() != 7 {
			t.Fatalf("index = %d", s.Index())
		}
		if got, ok := s.Get("accounts/a.com/u2"); !ok || string(got.Value) != "2" || got.ModifyIndex != 4 {
			t.Fatalf("Get = %+v %v", got, ok)
		}
		checkCounts(t, s, map[string]int{"accounts/": 3, "accounts/a.com/": 2, "accounts/b.com/": 1, "domains/": 1})
		idx, err := s.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: "accounts/a.com/u1", Value: []byte("x"), Index: 3}})
		if err != nil || idx != 8 {
			t.Fatalf("Txn on an old file: %d %v", idx, err)
		}
	})
	t.Run("StaleCounts", func(t *testing.T) {
		// A file whose keys were changed by a writer that keeps no counts
		// (the index moved past the counts' index) gets them rebuilt.
		path := filepath.Join(t.TempDir(), "snapshot.db")
		s, err := kvstore.OpenState(path, kvstore.StateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, s, 7, old, nil, nil)
		s.Close()
		// As an earlier version wrote it: records and index only.
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			var rec [8]byte
			binary.BigEndian.PutUint64(rec[:], 8)
			if err := tx.Bucket([]byte("kv")).Put([]byte("accounts/c.com/u"), rec[:]); err != nil {
				return err
			}
			if err := tx.Bucket([]byte("kv")).Delete([]byte("accounts/a.com/u1")); err != nil {
				return err
			}
			return tx.Bucket([]byte("meta")).Put([]byte("index"), rec[:])
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s2 := MustOpenState(t, path, kvstore.StateOptions{})
		checkCounts(t, s2, map[string]int{"accounts/": 3, "accounts/a.com/": 1, "accounts/c.com/": 1})
	})
}
