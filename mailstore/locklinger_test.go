package mailstore_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"mailcluster/mailstore"
	"mailcluster/service"
)

// A released lock file lingers for Locker.Linger: taken again meanwhile
// it is the same file (created once: one random token); not taken, it is
// removed when the linger ends; ReleaseLingering removes it at once.
func TestLockLinger(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	lk := &mailstore.Locker{Dir: t.TempDir(), Wait: 5 * time.Second, Linger: 300 * time.Millisecond}
	path := lk.LockPath(lockAddress)
	contents := map[string]bool{}
	for range 5 {
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || lockHolder(path) != os.Getpid() {
			t.Fatalf("held lock file: %q %v", b, err)
		}
		contents[string(b)] = true
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("lock file gone at once after the unlock: %v", err)
		}
	}
	if len(contents) != 1 {
		t.Fatalf("%d lock files created for 5 locks taken within the linger, want 1", len(contents))
	}
	start := time.Now()
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("lingering lock file not removed 5 s after its release")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("lock file removed %v after its release, before the linger of 300 ms", d)
	}

	l, err := lk.Lock(ctx, lockAddress)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	mailstore.ReleaseLingering()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("lock file after ReleaseLingering: %v", err)
	}
	// The lock is free and works as before.
	if l, err = lk.Lock(ctx, lockAddress); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	mailstore.ReleaseLingering()
}

// mustLingerAfterUnlock takes and releases the lock of lockAddress, whose
// file must then linger.
func mustLingerAfterUnlock(t *testing.T, lk *mailstore.Locker) {
	t.Helper()
	l, err := lk.Lock(service.SystemContext(context.Background(), "test"), lockAddress)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if lockHolder(lk.LockPath(lockAddress)) != os.Getpid() {
		t.Fatal("the released lock file does not linger")
	}
}

// A taker of another process ends the linger of a released lock file
// with its wait marker: it gets the lock long before a linger of 10 s is
// over, and a taker here gets it after it.
func TestLockLingerOtherProcess(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir := t.TempDir()
	lk := &mailstore.Locker{Dir: dir, Wait: 20 * time.Second, Linger: 10 * time.Second}
	path := lk.LockPath(lockAddress)
	t.Cleanup(mailstore.ReleaseLingering)
	mustLingerAfterUnlock(t, lk)
	start := time.Now()
	other := startLockProc(t, dir, 20*time.Second)
	other.wantLocked(t, path)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the other process got the lock after %v: it waited for the linger", d)
	}
	other.release(t)
	l, err := lk.Lock(ctx, lockAddress)
	if err != nil {
		t.Fatal(err)
	}
	if lockHolder(path) != os.Getpid() {
		t.Fatal("lock taken here again does not name this process")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A lock file broken and taken by another host, while held or while it
// lingers, is not handed to the next taker of this process: the release
// says the lock was lost, the next taker waits for the other host's lock,
// and the other host's file is left as it is.
func TestLockLingerBroken(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	t.Cleanup(mailstore.ReleaseLingering)
	// takeOver replaces the lock file as another host does that broke it
	// and took the lock.
	takeOver := func(t *testing.T, path string) string {
		t.Helper()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		other := "otherhost 1 " + time.Now().UTC().Format(time.RFC3339) + " " + lockAddress + " token\n"
		if err := os.WriteFile(path, []byte(other), 0o640); err != nil {
			t.Fatal(err)
		}
		return other
	}
	wantOthers := func(t *testing.T, lk *mailstore.Locker, path, other string) {
		t.Helper()
		if l, err := lk.Lock(ctx, lockAddress); !errors.Is(err, mailstore.ErrLockBusy) {
			if err == nil {
				l.Unlock()
			}
			t.Fatalf("lock held by another host taken here: %v, want ErrLockBusy", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != other {
			t.Fatalf("the other host's lock file holds %q (%v)", b, err)
		}
	}
	t.Run("WhileHeld", func(t *testing.T) {
		lk := &mailstore.Locker{Dir: t.TempDir(), Wait: 100 * time.Millisecond, Linger: 10 * time.Second}
		path := lk.LockPath(lockAddress)
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Fatal(err)
		}
		other := takeOver(t, path)
		if err := l.Unlock(); !errors.Is(err, mailstore.ErrLockLost) {
			t.Fatalf("unlock of a broken lock: %v, want ErrLockLost", err)
		}
		wantOthers(t, lk, path, other)
	})
	t.Run("WhileLingering", func(t *testing.T) {
		lk := &mailstore.Locker{Dir: t.TempDir(), Wait: 100 * time.Millisecond, Linger: 10 * time.Second}
		path := lk.LockPath(lockAddress)
		mustLingerAfterUnlock(t, lk)
		wantOthers(t, lk, path, takeOver(t, path))
	})
}
