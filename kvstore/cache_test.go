package kvstore_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"mailcluster"
	"mailcluster/kvstore"
)

// Gets served from the point cache never go back in time: while one
// writer counts a key up, concurrent readers see it only grow, and a Get
// after Apply returns sees that Apply's value (read your writes). The
// same holds for GetShared, whose value a Get's caller cannot change.
func TestStatePointCacheNeverStale(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	const n = 300
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for r := 0; r < 4; r++ {
		shared := r%2 == 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for !stop.Load() {
				get := s.Get
				if shared {
					get = s.GetShared
				}
				kv, ok := get("k")
				if !ok {
					continue
				}
				v, err := strconv.Atoi(string(kv.Value))
				if err != nil || v < last {
					errs <- "a reader saw " + strconv.Quote(string(kv.Value)) + " after " + strconv.Itoa(last)
					return
				}
				last = v
				if !shared {
					kv.Value[0] = 'x' // a Get caller's change must not reach the cache
				}
			}
		}()
	}
	for i := 1; i <= n; i++ {
		if err := s.Apply(uint64(i), []mailcluster.KV{{Key: "k", ModifyIndex: uint64(i), Value: []byte(strconv.Itoa(i))}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		kv, ok := s.Get("k")
		if !ok || string(kv.Value) != strconv.Itoa(i) || kv.ModifyIndex != uint64(i) {
			t.Fatalf("after Apply %d: Get = %q@%d %v", i, kv.Value, kv.ModifyIndex, ok)
		}
		if kv, ok := s.GetShared("k"); !ok || string(kv.Value) != strconv.Itoa(i) || kv.ModifyIndex != uint64(i) {
			t.Fatalf("after Apply %d: GetShared = %q@%d %v", i, kv.Value, kv.ModifyIndex, ok)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// A deletion is seen at once, and so is a key that did not exist.
	if _, ok := s.Get("new"); ok {
		t.Fatal("a missing key was found")
	}
	if err := s.Apply(n+1, []mailcluster.KV{{Key: "new", ModifyIndex: n + 1, Value: []byte("v")}}, []string{"k"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("k"); ok {
		t.Fatal("a deleted key is still found")
	}
	if _, ok := s.GetShared("k"); ok {
		t.Fatal("a deleted key is still found by GetShared")
	}
	if kv, ok := s.Get("new"); !ok || string(kv.Value) != "v" {
		t.Fatal("a key created after a miss was cached as missing")
	}
}

// A re-sync that swaps the file drops the whole cache.
func TestStatePointCacheRebuild(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	if err := s.Apply(1, []mailcluster.KV{{Key: "a", ModifyIndex: 1, Value: []byte("old")}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if kv, _ := s.Get("a"); string(kv.Value) != "old" {
		t.Fatal("setup")
	}
	r, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put([]mailcluster.KV{{Key: "a", ModifyIndex: 2, Value: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(2, nil); err != nil {
		t.Fatal(err)
	}
	if kv, _ := s.Get("a"); string(kv.Value) != "new" {
		t.Fatalf("after the swap Get = %q", kv.Value)
	}
}

// Counts served from the cache follow every write.
func TestStateCountCacheFollowsWrites(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	for i := 1; i <= 5; i++ {
		if got := s.Count("p/"); got != i-1 {
			t.Fatalf("Count before write %d = %d", i, got)
		}
		if err := s.Apply(uint64(i), []mailcluster.KV{{Key: "p/" + strconv.Itoa(i), ModifyIndex: uint64(i), Value: []byte("v")}}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(6, nil, []string{"p/1", "p/2"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Count("p/"); got != 3 {
		t.Fatalf("Count after deleting two = %d, want 3", got)
	}
}

// Short listings served from the cache follow every write, and a caller
// changing what it got does not change what the next one gets.
func TestStateListCacheFollowsWrites(t *testing.T) {
	s := MustOpenState(t, "", kvstore.StateOptions{NoSync: true})
	for i := 1; i <= 5; i++ {
		if got := s.List("p/", "", 0); len(got) != i-1 {
			t.Fatalf("List before write %d: %d keys", i, len(got))
		}
		if err := s.Apply(uint64(i), []mailcluster.KV{{Key: "p/" + strconv.Itoa(i), ModifyIndex: uint64(i), Value: []byte("v" + strconv.Itoa(i))}}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	got := s.List("p/", "", 0)
	got[0].Value[0] = 'x'
	if again := s.List("p/", "", 0); string(again[0].Value) != "v1" {
		t.Fatalf("a caller's change reached the cache: %q", again[0].Value)
	}
	if err := s.Apply(6, []mailcluster.KV{{Key: "p/1", ModifyIndex: 6, Value: []byte("new")}}, []string{"p/2"}, nil); err != nil {
		t.Fatal(err)
	}
	after := s.List("p/", "", 0)
	if len(after) != 4 || string(after[0].Value) != "new" || after[0].ModifyIndex != 6 {
		t.Fatalf("List after a change: %+v", after)
	}
	if page := s.List("p/", "p/3", 1); len(page) != 1 || page[0].Key != "p/4" {
		t.Fatalf("a page after p/3: %+v", page)
	}
}
