package kvstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/testkv"
	"mailcluster/kvstore"

	"mailcluster"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestBoltStoreTxn(t *testing.T) {
	ctx := context.Background()
	s := testkv.MustOpenBoltStore(t, "")
	t.Run("OK", func(t *testing.T) {
		idx, err := s.Txn(ctx, []mailcluster.Op{
			{Verb: mailcluster.OpCAS, Key: "domains/a", Value: []byte("A")},
			{Verb: mailcluster.OpSet, Key: "domains/b", Value: []byte("B")},
		})
		if err != nil || idx != 1 || s.Index() != 1 {
			t.Fatalf("idx=%d err=%v index=%d", idx, err, s.Index())
		}
		kv, ok := s.Get("domains/a")
		if !ok || string(kv.Value) != "A" || kv.ModifyIndex != 1 {
			t.Fatalf("get = %+v %v", kv, ok)
		}
	})
	t.Run("ErrConflictAllOrNothing", func(t *testing.T) {
		before := s.Index()
		_, err := s.Txn(ctx, []mailcluster.Op{
			{Verb: mailcluster.OpSet, Key: "domains/c", Value: []byte("C")},
			{Verb: mailcluster.OpCAS, Key: "domains/a", Value: []byte("A2"), Index: 99},
		})
		if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			t.Fatalf("err = %v", err)
		}
		if _, ok := s.Get("domains/c"); ok || s.Index() != before {
			t.Fatal("a failed transaction was partly applied")
		}
		_, err = s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: "domains/a", Value: []byte("x"), Index: 0}})
		if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			t.Fatalf("create-if-absent on existing key: %v", err)
		}
		_, err = s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCheck, Key: "domains/zzz", Index: 5}})
		if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			t.Fatalf("check of missing key: %v", err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, ops := range [][]mailcluster.Op{
			nil,
			{{Verb: mailcluster.OpSet, Key: ""}},
			{{Verb: 42, Key: "k"}},
			{{Verb: mailcluster.OpSet, Key: "k"}, {Verb: mailcluster.OpDelete, Key: "k"}},
		} {
			if _, err := s.Txn(ctx, ops); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
				t.Errorf("ops %+v: err = %v", ops, err)
			}
		}
	})
	t.Run("DeleteCAS", func(t *testing.T) {
		kv, _ := s.Get("domains/b")
		if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: "domains/b", Index: kv.ModifyIndex + 1}}); mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			t.Fatalf("stale delete: %v", err)
		}
		if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: "domains/b", Index: kv.ModifyIndex}}); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Get("domains/b"); ok {
			t.Fatal("key still present")
		}
	})
}

func TestBoltStoreListAndPersist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := kvstore.OpenBoltStore(path, discard())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: fmt.Sprintf("accounts/d/u%d", i), Value: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: "accounts/e/x", Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	page := s.List("accounts/d/", "accounts/d/u1", 2)
	if len(page) != 2 || page[0].Key != "accounts/d/u2" || page[1].Key != "accounts/d/u3" {
		t.Fatalf("page = %+v", page)
	}
	if n := s.Count("accounts/d/"); n != 5 {
		t.Fatalf("count = %d", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := testkv.MustOpenBoltStore(t, path)
	if s2.Index() != 6 || s2.Count("accounts/") != 6 {
		t.Fatalf("after reopen: index %d count %d", s2.Index(), s2.Count("accounts/"))
	}
	kv, ok := s2.Get("accounts/d/u4")
	if !ok || kv.Value[0] != 4 || kv.ModifyIndex != 5 {
		t.Fatalf("after reopen: %+v", kv)
	}
}

func TestBoltStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	testkv.MustOpenBoltStore(t, path)
	start := time.Now()
	if _, err := kvstore.OpenBoltStore(path, discard()); err == nil {
		t.Fatal("a second open of the same file must fail")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("open did not time out")
	}
}

func TestNotify(t *testing.T) {
	ctx := context.Background()
	s := testkv.MustOpenBoltStore(t, "")
	ch, stop := s.Notify("settings/")
	defer stop()
	if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: "domains/x", Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("notified for a key outside the prefix")
	default:
	}
	if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: "settings/f/s/k", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification for a key under the prefix")
	}
}

func TestBoltStoreConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	s := testkv.MustOpenBoltStore(t, "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: "domains/race", Value: []byte("v")}}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d creators won, want exactly 1", wins)
	}
}

func TestBoltStoreCounts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := testkv.MustOpenBoltStore(t, path)
	txn := func(ops ...mailcluster.Op) {
		t.Helper()
		if _, err := s.Txn(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	txn(mailcluster.Op{Verb: mailcluster.OpCAS, Key: "accounts/a/u1"}, mailcluster.Op{Verb: mailcluster.OpSet, Key: "accounts/a/u2"}, mailcluster.Op{Verb: mailcluster.OpSet, Key: "accounts/b/u1"})
	txn(mailcluster.Op{Verb: mailcluster.OpSet, Key: "accounts/a/u2", Value: []byte("again")}) // overwrite
	txn(mailcluster.Op{Verb: mailcluster.OpDelete, Key: "accounts/b/u1"}, mailcluster.Op{Verb: mailcluster.OpDelete, Key: "accounts/b/none"})
	checkCounts(t, s, map[string]int{"accounts/": 2, "accounts/a/": 2, "accounts/b/": 0})

	t.Run("ErrConflictChangesNothing", func(t *testing.T) {
		w, stop := s.Notify("")
		defer stop()
		u1, _ := s.Get("accounts/a/u1")
		before, index := s.List("", "", 0), s.Index()
		_, err := s.Txn(ctx, []mailcluster.Op{
			{Verb: mailcluster.OpSet, Key: "accounts/c/new", Value: []byte("x")},
			{Verb: mailcluster.OpDelete, Key: "accounts/a/u2"},
			{Verb: mailcluster.OpCAS, Key: "accounts/a/u1", Value: []byte("y"), Index: u1.ModifyIndex + 1},
		})
		if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			t.Fatalf("err = %v", err)
		}
		if after := s.List("", "", 0); fmt.Sprint(after) != fmt.Sprint(before) || s.Index() != index {
			t.Fatalf("a conflicting Txn changed the state: %v -> %v", before, after)
		}
		checkCounts(t, s, map[string]int{"accounts/": 2, "accounts/a/": 2, "accounts/c/": 0})
		select {
		case <-w:
			t.Fatal("a conflicting Txn woke a watcher")
		default:
		}
		s.Close()
		s2 := testkv.MustOpenBoltStore(t, path)
		checkCounts(t, s2, map[string]int{"accounts/": 2, "accounts/a/": 2, "accounts/c/": 0})
		if s2.Index() != index {
			t.Fatalf("index after reopen = %d, want %d", s2.Index(), index)
		}
	})
}
