package mailstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"mailcluster/mailstore"
	"mailcluster/service"
)

// A taker waiting for a lock file that another process of this host
// holds is woken by the file's removal, not by its timer: with the
// timer's pauses allowed to grow to an hour, it takes the lock once the
// holder releases it, woken by the notice; the directory's watch ends
// with the wait.
func TestLockWaiterWokenByRelease(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir, lk, path := wakeLocker(t)
	holder := startLockProc(t, dir, 5*time.Second)
	holder.wantLocked(t, path)

	wakes, timerBase := mailstore.LockWakes(), mailstore.LockTimerWakes()
	acquired := startTaker(t, ctx, lk)
	timerWakes := waitLongPause(t, timerBase)
	holder.release(t)
	l := mustAcquire(t, acquired, "the released lock")
	defer l.Unlock()
	if mailstore.LockWakes() == wakes || mailstore.LockTimerWakes() != timerWakes {
		t.Error("the taker got the lock by its timer, not woken by the release")
	}
	if pid := lockHolder(path); pid != os.Getpid() {
		t.Errorf("lock file names pid %d, want this process %d", pid, os.Getpid())
	}
	if n := mailstore.LockWatches(); n != 0 {
		t.Errorf("%d lock directories still watched after the wait", n)
	}
}

// A taker waiting for a lock file whose holder (a process of this host)
// dies is woken by the kernel's release of the holder's lock on the file
// (the file itself stays): it breaks the dead holder's lock at once, not
// at its timer's next try.
func TestLockWaiterWokenByHoldersDeath(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir, lk, path := wakeLocker(t)
	holder := startLockProc(t, dir, 5*time.Second)
	holder.wantLocked(t, path)

	timerBase := mailstore.LockTimerWakes()
	acquired := startTaker(t, ctx, lk)
	timerWakes := waitLongPause(t, timerBase)
	wakes := mailstore.LockWakes()
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	l := mustAcquire(t, acquired, "the dead holder's lock")
	defer l.Unlock()
	if mailstore.LockWakes() == wakes || mailstore.LockTimerWakes() != timerWakes {
		t.Error("the taker got the lock by its timer, not woken by the holder's death")
	}
	if got := lockHolder(path); got != os.Getpid() {
		t.Errorf("lock file names pid %d, want this process %d", got, os.Getpid())
	}
	for range holder.lines {
	}
}

// A holder that let its OFD lock go while its lock file stays is
// exiting (a holder that lets go removes its file first): the taker waits
// for its exit and breaks its lock then, not at its timer's next try,
// however long the exit takes.
func TestLockWaiterWokenByDyingHoldersExit(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	_, lk, path := wakeLocker(t)
	holder := exec.Command("sleep", "60")
	if err := holder.Start(); err != nil {
		t.Skip("no sleep(1) to run:", err)
	}
	reaped := make(chan struct{})
	go func() { holder.Wait(); close(reaped) }()
	t.Cleanup(func() { holder.Process.Kill(); <-reaped })
	// The lock file names the holder; this test keeps the file's OFD
	// lock for it (an OFD lock belongs to the open file, not the process).
	content := fmt.Sprintf("%s %d %s %s token\n", mailstore.Hostname, holder.Process.Pid, time.Now().UTC().Format(time.RFC3339), lockAddress)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	mailstore.OFDHold(f)

	timerBase := mailstore.LockTimerWakes()
	acquired := startTaker(t, ctx, lk)
	timerWakes := waitLongPause(t, timerBase)
	wakes := mailstore.LockWakes()
	f.Close() // the OFD lock goes; the file and its holder stay
	time.Sleep(300 * time.Millisecond)
	select {
	case <-acquired:
		t.Fatal("the taker took the lock of a holder still alive")
	default:
	}
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	l := mustAcquire(t, acquired, "the dead holder's lock")
	defer l.Unlock()
	if mailstore.LockWakes() < wakes+2 || mailstore.LockTimerWakes() != timerWakes {
		t.Errorf("the taker got the lock by its timer (%d timer wakes, %d other wakes), not woken by the holder's exit",
			mailstore.LockTimerWakes()-timerWakes, mailstore.LockWakes()-wakes)
	}
}

// wakeLocker returns a locker in a new directory whose takers wait up to
// a minute and try again on their timer only hourly (so a wake tells
// what woke them), and the path of lockAddress's lock file.
func wakeLocker(t *testing.T) (dir string, lk *mailstore.Locker, path string) {
	dir = t.TempDir()
	lk = &mailstore.Locker{Dir: dir, Wait: 60 * time.Second, LocalRetry: time.Hour}
	return dir, lk, lk.LockPath(lockAddress)
}

// startTaker starts a taker of lockAddress's lock and returns what it
// gets (nil when it fails).
func startTaker(t *testing.T, ctx context.Context, lk *mailstore.Locker) <-chan *mailstore.Lock {
	acquired := make(chan *mailstore.Lock, 1)
	go func() {
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Errorf("waiting taker: %v", err)
		}
		acquired <- l
	}()
	return acquired
}

// mustAcquire returns the lock the taker got within 30 s.
func mustAcquire(t *testing.T, acquired <-chan *mailstore.Lock, what string) *mailstore.Lock {
	t.Helper()
	select {
	case l := <-acquired:
		if l == nil {
			t.FailNow()
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("the taker did not get %s", what)
	}
	return nil
}

// waitLongPause waits until the waiting taker (it tried, failed, and
// waits) has been woken by its timer 11 times since base (its pauses,
// from 1 ms doubling, have reached 1 s) and returns the count then: its
// next pause, just begun, lasts about
// 2 s, so a wake within that time is not its timer's, however loaded
// the machine (a fixed sleep could end just before a timer wake).
func waitLongPause(t *testing.T, base int64) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := mailstore.LockTimerWakes(); n >= base+11 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the taker's timer woke it %d times in 30 s, want 11", mailstore.LockTimerWakes()-base)
		}
		time.Sleep(time.Millisecond)
	}
}

// A lock file whose holder has exited but is not reaped yet (a zombie,
// which kill(pid, 0) still finds) is stale: it is broken at once.
func TestLockOfZombieHolderBroken(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip("no true(1) to run:", err)
	}
	t.Cleanup(func() { cmd.Wait() })
	pid := cmd.Process.Pid
	stat := "/proc/" + strconv.Itoa(pid) + "/stat"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			t.Skip("no /proc here:", err)
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never became a zombie")
		}
	}
	dir := t.TempDir()
	lk := &mailstore.Locker{Dir: dir, Wait: 2 * time.Second}
	content := fmt.Sprintf("%s %d %s %s token\n", mailstore.Hostname, pid, time.Now().UTC().Format(time.RFC3339), lockAddress)
	if err := os.WriteFile(lk.LockPath(lockAddress), []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	l, err := lk.Lock(service.SystemContext(context.Background(), "test"), lockAddress)
	if err != nil {
		t.Fatalf("the zombie's lock was not broken: %v", err)
	}
	l.Unlock()
}
