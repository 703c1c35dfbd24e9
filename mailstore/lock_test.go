package mailstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster/mailstore"
	"mailcluster/service"
)

// The lock tests contend for one lock file across real processes: the
// test binary runs itself as a lock taker when envLockDir is set (see
// TestMain and lockTaker).
const (
	envLockDir  = "MAILSVC_TEST_LOCK_DIR"  // the lock directory of a taker process
	envLockWait = "MAILSVC_TEST_LOCK_WAIT" // its Locker.Wait
	lockAddress = "shared@example.com"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envLockDir); dir != "" {
		os.Exit(lockTaker(dir, os.Getenv(envLockWait)))
	}
	if root := os.Getenv(envCrashRoot); root != "" {
		os.Exit(appendCrasher(root, os.Getenv(envCrashLocks)))
	}
	os.Exit(m.Run())
}

// lockTaker is the body of a taker process. It takes the lock of
// lockAddress in dir and prints "locked PID", or "busy" when Locker.Wait
// passes first. Holding, it waits until its stdin closes (at most a
// minute), prints "intact" if the lock file still names this process or
// "broken" if not, releases the lock and prints "released" (or "lost" when
// Unlock says the lock was broken).
func lockTaker(dir, wait string) int {
	w, err := time.ParseDuration(wait)
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	lk := &mailstore.Locker{Dir: dir, Wait: w}
	l, err := lk.Lock(service.SystemContext(context.Background(), "test"), lockAddress)
	if errors.Is(err, mailstore.ErrLockBusy) {
		fmt.Println("busy")
		return 0
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("locked", os.Getpid())
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Minute):
	}
	if lockHolder(lk.LockPath(lockAddress)) == os.Getpid() {
		fmt.Println("intact")
	} else {
		fmt.Println("broken")
	}
	switch err := l.Unlock(); {
	case errors.Is(err, mailstore.ErrLockLost):
		fmt.Println("lost")
	case err != nil:
		fmt.Println("error", err)
		return 1
	default:
		fmt.Println("released")
	}
	return 0
}

// lockHolder returns the pid a lock file names (host pid time address),
// or -1 when there is no such file.
func lockHolder(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return -1
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(f[1])
	if f[0] != host || err != nil {
		return -1
	}
	return pid
}

// lockProc is a taker process started by startLockProc.
type lockProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startLockProc starts a taker process on dir with Locker.Wait wait; it
// is killed on cleanup if still running.
func startLockProc(t *testing.T, dir string, wait time.Duration) *lockProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envLockDir+"="+dir, envLockWait+"="+wait.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &lockProc{cmd: cmd, stdin: stdin, lines: make(chan string, 8)}
	waited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		<-waited
		if s := stderr.String(); s != "" {
			t.Logf("taker %d stderr: %s", cmd.Process.Pid, s)
		}
	})
	return p
}

// next returns the next line the process prints.
func (p *lockProc) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("taker %d exited without a line", p.cmd.Process.Pid)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("taker %d printed nothing for 30 s", p.cmd.Process.Pid)
	}
	return ""
}

// wantLine asserts the next line the process prints.
func (p *lockProc) wantLine(t *testing.T, want string) {
	t.Helper()
	if got := p.next(t); got != want {
		t.Fatalf("taker %d printed %q, want %q", p.cmd.Process.Pid, got, want)
	}
}

// wantLocked waits for the process to take the lock and checks that the
// lock file exists and names it.
func (p *lockProc) wantLocked(t *testing.T, path string) {
	t.Helper()
	p.wantLine(t, fmt.Sprintf("locked %d", p.cmd.Process.Pid))
	if got := lockHolder(path); got != p.cmd.Process.Pid {
		t.Fatalf("lock file %s names pid %d, want the holder %d", path, got, p.cmd.Process.Pid)
	}
}

// release closes the holder's stdin and checks that its lock was never
// broken while held.
func (p *lockProc) release(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	p.wantLine(t, "intact")
	p.wantLine(t, "released")
}

func TestLockAcrossProcesses(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")

	// A lock held by a live process of another node is not broken: a
	// taker in a third process gives up busy, one in this process gets
	// the lock only after the holder was told to release it, and the
	// holder finds its lock file intact when it releases.
	t.Run("LiveLockSurvives", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir, Wait: 30 * time.Second}
		path := lk.LockPath(lockAddress)
		holder := startLockProc(t, dir, 5*time.Second)
		holder.wantLocked(t, path)

		var mu sync.Mutex
		var events []string
		event := func(e string) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
		acquired := make(chan *mailstore.Lock, 1)
		go func() {
			l, err := lk.Lock(ctx, lockAddress)
			if err != nil {
				t.Errorf("waiting taker: %v", err)
				acquired <- nil
				return
			}
			event("acquired here")
			acquired <- l
		}()
		// The other process tries the live lock (at least once: the busy
		// answer comes only after a try) and must give up.
		other := startLockProc(t, dir, 300*time.Millisecond)
		other.wantLine(t, "busy")
		if got := lockHolder(path); got != holder.cmd.Process.Pid {
			t.Fatalf("after a busy taker, the lock file names pid %d, want the holder %d", got, holder.cmd.Process.Pid)
		}

		event("release asked")
		holder.release(t)
		l := <-acquired
		if l == nil {
			t.FailNow()
		}
		defer l.Unlock()
		mu.Lock()
		got := strings.Join(events, ", ")
		mu.Unlock()
		if got != "release asked, acquired here" {
			t.Fatalf("events: %s; want the waiting taker to get the lock only after the holder released it", got)
		}
		if pid := lockHolder(path); pid != os.Getpid() {
			t.Fatalf("lock file names pid %d, want this process %d", pid, os.Getpid())
		}
	})

	// A holder killed with SIGKILL leaves its lock file behind: its pid
	// no longer exists, so the lock is stale. Three takers in three
	// processes race for it: exactly one breaks it and holds it, intact,
	// until it releases; the other two find the new lock live and give up.
	t.Run("StaleDeadHolderBrokenOnce", func(t *testing.T) {
		dir := t.TempDir()
		path := (&mailstore.Locker{Dir: dir}).LockPath(lockAddress)
		dead := startLockProc(t, dir, 5*time.Second)
		dead.wantLocked(t, path)
		pid := dead.cmd.Process.Pid
		if err := dead.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The process is gone (reaped) once its output ends.
		for range dead.lines {
		}
		for i := 0; syscall.Kill(pid, 0) != syscall.ESRCH; i++ {
			if i == 1000 {
				t.Fatalf("killed holder %d still exists", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := lockHolder(path); got != pid {
			t.Fatalf("the killed holder's lock file names pid %d, want %d", got, pid)
		}

		takers := make([]*lockProc, 3)
		for i := range takers {
			takers[i] = startLockProc(t, dir, 2*time.Second)
		}
		var winner *lockProc
		busy := 0
		for _, p := range takers {
			switch l := p.next(t); l {
			case "busy":
				busy++
			case fmt.Sprintf("locked %d", p.cmd.Process.Pid):
				if winner != nil {
					t.Fatalf("takers %d and %d both hold the lock", winner.cmd.Process.Pid, p.cmd.Process.Pid)
				}
				winner = p
			default:
				t.Fatalf("taker %d printed %q", p.cmd.Process.Pid, l)
			}
		}
		if winner == nil || busy != 2 {
			t.Fatalf("%d busy takers and winner %v; want exactly one holder", busy, winner != nil)
		}
		if got := lockHolder(path); got != winner.cmd.Process.Pid {
			t.Fatalf("lock file names pid %d, want the winner %d", got, winner.cmd.Process.Pid)
		}
		winner.release(t)
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("lock file after release: %v", err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("files left in the lock dir: %v", left)
		}
	})

	// A lock file not refreshed for StaleAfter is stale even while its
	// holder exists (a hung node: here a stopped process): it is broken.
	// The holder finds it broken when it resumes, and its Unlock says the
	// lock was lost and leaves the new holder's lock file alone.
	t.Run("StaleOldBroken", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir, Wait: 5 * time.Second, StaleAfter: time.Minute}
		path := lk.LockPath(lockAddress)
		hung := startLockProc(t, dir, 5*time.Second)
		hung.wantLocked(t, path)
		if err := hung.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		past := time.Now().Add(-time.Hour)
		if err := os.Chtimes(path, past, past); err != nil {
			t.Fatalf("the held lock file: %v", err)
		}
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Fatalf("lock not refreshed for an hour was not broken: %v", err)
		}
		if pid := lockHolder(path); pid != os.Getpid() {
			t.Fatalf("lock file names pid %d, want this process %d", pid, os.Getpid())
		}
		if err := hung.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		hung.stdin.Close()
		hung.wantLine(t, "broken")
		hung.wantLine(t, "lost")
		if pid := lockHolder(path); pid != os.Getpid() {
			t.Fatalf("after the old holder's unlock, the lock file names pid %d, want this process %d", pid, os.Getpid())
		}
		if err := l.Unlock(); err != nil {
			t.Fatalf("unlock of the new holder: %v", err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("files left in the lock dir: %v", left)
		}
	})
	// A holder whose lock file was broken and taken by another (here: the
	// file replaced by another lock's content) removes nothing on Unlock
	// and says the lock was lost.
	t.Run("UnlockLeavesNewerLock", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir}
		path := lk.LockPath(lockAddress)
		l, err := lk.Lock(ctx, lockAddress)
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		newer := fmt.Sprintf("%s 1 2026-01-01T00:00:00Z %s OTHERTOKEN\n", host, lockAddress)
		if err := os.Remove(path); err != nil {
			t.Fatalf("the held lock file: %v", err)
		}
		if err := os.WriteFile(path, []byte(newer), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); !errors.Is(err, mailstore.ErrLockLost) {
			t.Fatalf("unlock of a broken lock: %v, want ErrLockLost", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != newer {
			t.Fatalf("the newer lock file after the old holder's unlock: %q %v", b, err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 {
			t.Fatalf("files in the lock dir: %v, want only the newer lock", left)
		}
	})
	// A breaker that judged a stale lock file but comes second (another
	// breaker removed it and a taker holds a new lock since) moves the
	// new, live lock aside: it puts it back, and the holder finds its lock
	// intact.
	t.Run("LateBreakerPutsLiveLockBack", func(t *testing.T) {
		dir := t.TempDir()
		lk := &mailstore.Locker{Dir: dir}
		path := lk.LockPath(lockAddress)
		holder := startLockProc(t, dir, 5*time.Second)
		holder.wantLocked(t, path)
		judged := fmt.Sprintf("otherhost 1 2026-01-01T00:00:00Z %s OLDTOKEN\n", lockAddress)
		if lk.RemoveIfSame(lockAddress, judged) {
			t.Fatal("a live lock was removed as the stale one judged before")
		}
		if pid := lockHolder(path); pid != holder.cmd.Process.Pid {
			t.Fatalf("lock file names pid %d, want the holder %d", pid, holder.cmd.Process.Pid)
		}
		holder.release(t)
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("files left in the lock dir: %v", left)
		}
	})
}
func TestLocker(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	dir := t.TempDir()
	lk := &mailstore.Locker{Dir: dir, Wait: 100 * time.Millisecond}
	t.Run("Exclusive", func(t *testing.T) {
		l, err := lk.Lock(ctx, "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lk.Lock(ctx, "a@example.com"); !errors.Is(err, mailstore.ErrLockBusy) {
			t.Fatalf("second lock: %v", err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		l2, err := lk.Lock(ctx, "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		l2.Unlock()
	})
	t.Run("StaleDeadPID", func(t *testing.T) {
		l, err := lk.Lock(ctx, "b@example.com")
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "mbox-*.lock"))
		l.Unlock()
		host, _ := os.Hostname()
		// A lock left by a process of this host that no longer exists.
		cmd := []byte(host + " 999999999 2026-01-01T00:00:00Z b@example.com\n")
		if len(files) == 0 {
			t.Fatal("no lock file seen")
		}
		if err := os.WriteFile(files[0], cmd, 0o640); err != nil {
			t.Fatal(err)
		}
		l3, err := lk.Lock(ctx, "b@example.com")
		if err != nil {
			t.Fatalf("stale lock not broken: %v", err)
		}
		l3.Unlock()
	})
	t.Run("StaleOld", func(t *testing.T) {
		old := &mailstore.Locker{Dir: dir, Wait: 100 * time.Millisecond, StaleAfter: 50 * time.Millisecond}
		l, err := old.Lock(ctx, "c@example.com")
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "mbox-*.lock"))
		if len(files) == 0 {
			t.Fatal("the held lock's file was not found: the stale case below would prove nothing")
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		// another host's lock that is not refreshed any more
		for _, f := range files {
			os.WriteFile(f, []byte("otherhost 1 2026-01-01T00:00:00Z c@example.com\n"), 0o640)
			past := time.Now().Add(-time.Hour)
			os.Chtimes(f, past, past)
		}
		l2, err := old.Lock(ctx, "c@example.com")
		if err != nil {
			t.Fatalf("old lock not broken: %v", err)
		}
		l2.Unlock()
	})
	t.Run("InProcessQueue", func(t *testing.T) {
		// Takers in one process queue without polling, and all get it in turn.
		q := &mailstore.Locker{Dir: dir, Wait: 5 * time.Second}
		var wg sync.WaitGroup
		var mu sync.Mutex
		inside := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := q.Lock(ctx, "d@example.com")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 {
					t.Error("two holders at once")
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				l.Unlock()
			}()
		}
		wg.Wait()
	})
}
