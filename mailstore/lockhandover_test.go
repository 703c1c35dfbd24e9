package mailstore_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailcluster/mailstore"
	"mailcluster/service"
)

// burst runs n takers of lockAddress in this process, each taking and
// releasing the lock rounds times (or until stop closes), holding it for
// hold. While holding, each checks that it is alone and that the lock
// file names this process, and records the file's content (a random
// token per created file).
type burst struct {
	mu       sync.Mutex
	contents map[string]int
	inside   atomic.Int32
	locks    atomic.Int32
	wg       sync.WaitGroup
}

func startBurst(t *testing.T, lk *mailstore.Locker, n, rounds int, hold time.Duration, stop <-chan struct{}) *burst {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	path := lk.LockPath(lockAddress)
	b := &burst{contents: map[string]int{}}
	for range n {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for range rounds {
				select {
				case <-stop:
					return
				default:
				}
				l, err := lk.Lock(ctx, lockAddress)
				if err != nil {
					t.Errorf("taker: %v", err)
					return
				}
				if b.inside.Add(1) != 1 {
					t.Error("two holders at once in this process")
				}
				content, err := os.ReadFile(path)
				if err != nil || lockHolder(path) != os.Getpid() {
					t.Errorf("held lock file %s: %q %v, want one naming this process", path, content, err)
				}
				b.mu.Lock()
				b.contents[string(content)]++
				b.mu.Unlock()
				b.locks.Add(1)
				time.Sleep(hold)
				b.inside.Add(-1)
				if err := l.Unlock(); err != nil {
					t.Errorf("unlock: %v", err)
				}
			}
		}()
	}
	return b
}

func TestLockHandover(t *testing.T) {
	// Takers of one process that queue for a lock pass the held lock
	// file from one to the next: far fewer files are created than locks
	// taken, every holder is alone and holds a file naming this process,
	// and the file is removed after the last.
	t.Run("FewerFiles", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir, Wait: 30 * time.Second}
		b := startBurst(t, lk, 16, 8, 200*time.Microsecond, nil)
		b.wg.Wait()
		if n := b.locks.Load(); n != 16*8 {
			t.Fatalf("%d locks taken, want %d", n, 16*8)
		}
		if len(b.contents) > 16*8/8 {
			t.Fatalf("%d lock files created for %d locks taken in turn: the lock was not handed over", len(b.contents), 16*8)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("files left in the lock dir: %v", left)
		}
		t.Logf("%d locks taken, %d lock files created", 16*8, len(b.contents))
	})

	// A taker in another process gets the lock while takers of this
	// process keep handing it over among themselves: it waits much less
	// than its Locker.Wait, its lock is intact while it holds it, and
	// takers here hold the lock again after it released it.
	t.Run("OtherProcessGetsTurn", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir, Wait: 30 * time.Second}
		path := lk.LockPath(lockAddress)
		stop := make(chan struct{})
		b := startBurst(t, lk, 4, 1<<20, 2*time.Millisecond, stop)
		// Registered before the other process's cleanup, so run after it
		// (a failure while the other holds the lock ends at once).
		t.Cleanup(func() {
			close(stop)
			b.wg.Wait()
		})
		for b.locks.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		other := startLockProc(t, dir, 3*time.Second)
		other.wantLocked(t, path)
		before := b.locks.Load()
		time.Sleep(50 * time.Millisecond)
		if got := b.locks.Load(); got != before {
			t.Fatalf("%d locks taken here while the other process held the lock", got-before)
		}
		other.release(t)
		deadline := time.Now().Add(10 * time.Second)
		for b.locks.Load() < before+20 {
			if time.Now().After(deadline) {
				t.Fatal("takers here did not get the lock back")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// The lock directory is made at the first lock that needs it, and made
// again when it was removed since.
func TestLockDirMadeWhenMissing(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir := filepath.Join(t.TempDir(), "a", "locks")
	lk := &mailstore.Locker{Dir: dir, Wait: time.Second}
	for round := range 2 {
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if lockHolder(lk.LockPath(lockAddress)) != os.Getpid() {
			t.Fatalf("round %d: no lock file naming this process", round)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
			t.Fatal(err)
		}
	}
}

// A held lock file's time is refreshed (every StaleAfter/4), also across
// handovers, and no longer once it is released.
func TestLockRefreshed(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir := t.TempDir()
	lk := &mailstore.Locker{Dir: dir, StaleAfter: 200 * time.Millisecond, Wait: 5 * time.Second}
	path := lk.LockPath(lockAddress)
	age := func() time.Duration {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return time.Since(st.ModTime())
	}
	l, err := lk.Lock(ctx, lockAddress)
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan *mailstore.Lock, 1)
	go func() {
		l2, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Error(err)
		}
		next <- l2
	}()
	time.Sleep(300 * time.Millisecond)
	if a := age(); a > 150*time.Millisecond {
		t.Fatalf("held lock file not refreshed for %v", a)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2 := <-next
	if l2 == nil {
		t.FailNow()
	}
	time.Sleep(300 * time.Millisecond)
	if a := age(); a > 150*time.Millisecond {
		t.Fatalf("lock file handed over not refreshed for %v", a)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("lock file left after the last unlock")
	}
}
