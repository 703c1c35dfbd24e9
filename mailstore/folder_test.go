package mailstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

var bg = context.Background()

func testMessage(i int) string {
	return fmt.Sprintf("From: a@remote.test\r\nTo: alice@example.com\r\nSubject: message %d\r\n\r\nbody %d\r\n", i, i)
}

// mustFolder returns a folder of alice on store s (creating it unless INBOX).
func mustFolder(t testing.TB, e *storeEnv, s *mailstore.Store, name string) *mailstore.Folder {
	t.Helper()
	fs, err := s.Folders(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Folder(name)
	if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
		if err := fs.Create(bg, name); err != nil {
			t.Fatal(err)
		}
		f, err = fs.Folder(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustSync(t *testing.T, f *mailstore.Folder) *mailstore.Snapshot {
	t.Helper()
	snap, err := f.Sync(bg)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func mustAppend(t *testing.T, f *mailstore.Folder, i int, flags string) uint32 {
	t.Helper()
	_, uid, err := f.Append(bg, strings.NewReader(testMessage(i)), flags, time.Time{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func uidsOf(snap *mailstore.Snapshot) []uint32 {
	var out []uint32
	for _, m := range snap.Messages {
		out = append(out, m.UID)
	}
	return out
}

// files lists the files of a folder's sub-directory.
func files(t *testing.T, f *mailstore.Folder, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(f.Dir(), sub))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// TestDeliveredMessageGetsOneUID: a message delivered to new/ gets its UID
// the first time any node looks, the same on every node, moves to cur/,
// and keeps its UID across restarts (new Stores over the same files).
func TestDeliveredMessageGetsOneUID(t *testing.T) {
	e := mustStoreEnv(t)
	n1, n2 := e.node(t, mailstore.Options{}), e.node(t, mailstore.Options{})
	for i := range 3 {
		if err := n1.Deliver(bg, []*mailcluster.Account{e.alice}, nil, strings.NewReader(testMessage(i)), 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	f1, f2 := mustFolder(t, e, n1, "INBOX"), mustFolder(t, e, n2, "inbox")
	var wg sync.WaitGroup
	snaps := make([]*mailstore.Snapshot, 2)
	for i, f := range []*mailstore.Folder{f1, f2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := f.Sync(bg)
			if err != nil {
				t.Error(err)
				return
			}
			snaps[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if got := uidsOf(snaps[0]); fmt.Sprint(got) != "[1 2 3]" || fmt.Sprint(uidsOf(snaps[1])) != "[1 2 3]" {
		t.Fatalf("UIDs seen by the two nodes: %v and %v, want [1 2 3] on both", got, uidsOf(snaps[1]))
	}
	if snaps[0].UIDValidity != snaps[1].UIDValidity || snaps[0].UIDNext != 4 {
		t.Fatalf("validity %d/%d, next %d", snaps[0].UIDValidity, snaps[1].UIDValidity, snaps[0].UIDNext)
	}
	for i, m := range snaps[0].Messages {
		if m.Key != snaps[1].Messages[i].Key {
			t.Fatalf("UID %d names %s on one node and %s on the other", m.UID, m.Key, snaps[1].Messages[i].Key)
		}
	}
	if n := files(t, f1, "new"); len(n) != 0 {
		t.Fatalf("new/ still holds %v after the messages were seen", n)
	}
	for _, name := range files(t, f1, "cur") {
		if !strings.HasSuffix(name, ":2,") {
			t.Fatalf("cur/ file %q has no Maildir info", name)
		}
	}
	// A restart: new Stores, same UIDs and validity.
	snap := mustSync(t, mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX"))
	if fmt.Sprint(uidsOf(snap)) != "[1 2 3]" || snap.UIDValidity != snaps[0].UIDValidity {
		t.Fatalf("after a restart: UIDs %v validity %d", uidsOf(snap), snap.UIDValidity)
	}
}

// TestUIDsNeverReused: two nodes append and deliver concurrently to one
// folder; every message gets a distinct UID, every node agrees, and UIDs
// of expunged messages are not given again.
func TestUIDsNeverReused(t *testing.T) {
	e := mustStoreEnv(t)
	nodes := []*mailstore.Store{e.node(t, mailstore.Options{}), e.node(t, mailstore.Options{})}
	const per = 8
	var mu sync.Mutex
	given := map[uint32]bool{}
	var wg sync.WaitGroup
	for n, s := range nodes {
		f := mustFolder(t, e, s, "INBOX")
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if w == 1 {
						// Deliveries by SMTP, which give no UID.
						if err := s.Deliver(bg, []*mailcluster.Account{e.alice}, nil, strings.NewReader(testMessage(i)), 1<<20); err != nil {
							t.Error(err)
						}
						if _, err := f.Sync(bg); err != nil {
							t.Error(err)
						}
						continue
					}
					_, uid, err := f.Append(bg, strings.NewReader(testMessage(100*n+i)), "", time.Time{}, 1<<20)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if given[uid] {
						t.Errorf("UID %d given twice", uid)
					}
					given[uid] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a := mustSync(t, mustFolder(t, e, nodes[0], "INBOX"))
	b := mustSync(t, mustFolder(t, e, nodes[1], "INBOX"))
	if len(a.Messages) != 4*per || fmt.Sprint(uidsOf(a)) != fmt.Sprint(uidsOf(b)) {
		t.Fatalf("node 1 sees %d messages %v, node 2 %v; want %d, the same", len(a.Messages), uidsOf(a), uidsOf(b), 4*per)
	}
	seen := map[uint32]bool{}
	for _, m := range a.Messages {
		if seen[m.UID] {
			t.Fatalf("UID %d twice in %v", m.UID, uidsOf(a))
		}
		seen[m.UID] = true
	}
	// Expunge the highest UIDs; the next append gets a new one.
	f := mustFolder(t, e, nodes[1], "INBOX")
	top := a.Messages[len(a.Messages)-2:]
	tops := []uint32{top[0].UID, top[1].UID}
	if _, err := f.SetFlags(bg, tops, mailstore.FlagsAdd, "T"); err != nil {
		t.Fatal(err)
	}
	removed, err := f.Expunge(bg, tops)
	if err != nil || fmt.Sprint(removed) != fmt.Sprint(tops) {
		t.Fatalf("expunge %v: removed %v, %v", tops, removed, err)
	}
	uid := mustAppend(t, mustFolder(t, e, nodes[0], "INBOX"), 999, "")
	if uid <= tops[1] || uid != a.UIDNext {
		t.Fatalf("UID after expunging %v: %d, want UIDNEXT %d", tops, uid, a.UIDNext)
	}
}

// TestFlagsInFileNames: flags are the info of the file name, as other
// Maildir tools read them.
func TestFlagsInFileNames(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	f := mustFolder(t, e, s, "INBOX")
	uid := mustAppend(t, f, 1, "S")
	want := func(flags string) {
		t.Helper()
		names := files(t, f, "cur")
		if len(names) != 1 || !strings.HasSuffix(names[0], ":2,"+flags) {
			t.Fatalf("cur/ holds %v, want one file ending in :2,%s", names, flags)
		}
		snap := mustSync(t, mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX"))
		if len(snap.Messages) != 1 || snap.Messages[0].Flags != flags || snap.Messages[0].UID != uid {
			t.Fatalf("another node sees %+v, want UID %d flags %q", snap.Messages, uid, flags)
		}
	}
	want("S")
	for _, tc := range []struct {
		op      mailstore.FlagOp
		letters string
		want    string
	}{
		{mailstore.FlagsAdd, "FR", "FRS"},
		{mailstore.FlagsRemove, "S", "FR"},
		{mailstore.FlagsSet, "T", "T"},
		{mailstore.FlagsSet, "", ""},
	} {
		got, err := f.SetFlags(bg, []uint32{uid, 77}, tc.op, tc.letters)
		if err != nil || len(got) != 1 || got[uid] != tc.want {
			t.Fatalf("SetFlags(%v, %q) = %v, %v; want %q for UID %d only", tc.op, tc.letters, got, err, tc.want, uid)
		}
		want(tc.want)
	}
}

// TestAppendRefused: over the quota, too large, or on a failing disk, an
// append leaves nothing in the folder, reports no usage, and gives no
// UID that a later message could get again.
func TestAppendRefused(t *testing.T) {
	e := mustStoreEnv(t)
	ffs := newFaultFS(mailstore.OSFS)
	s := e.node(t, mailstore.Options{FS: ffs})
	f := mustFolder(t, e, s, "Drafts")
	first := mustAppend(t, f, 0, "")
	size := int64(len(testMessage(0)))
	e.setQuota(size+10, 0)
	last := first
	check := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(fmt.Sprintf("%T %v", err, err), want) {
			t.Fatalf("append: %T %v, want %s", err, err, want)
		}
		if names := files(t, f, "cur"); len(names) != 1 {
			t.Fatalf("cur/ after the refused append: %v", names)
		}
		if names := files(t, f, "new"); len(names) != 0 {
			t.Fatalf("new/ after the refused append: %v", names)
		}
		if names := files(t, f, "tmp"); len(names) != 0 {
			t.Fatalf("tmp/ after the refused append: %v", names)
		}
		if b, m := e.rep.Pending("example.com", "alice"); b != size || m != 1 {
			t.Fatalf("usage after the refused append: %d bytes %d messages, want %d and 1", b, m, size)
		}
		snap := mustSync(t, f)
		if len(snap.Messages) != 1 || snap.Messages[0].UID != first {
			t.Fatalf("folder after the refused append: %+v", snap.Messages)
		}
		e.setQuota(0, 0)
		ffs.set("", "")
		uid := mustAppend(t, f, 1, "")
		if uid <= last {
			t.Fatalf("UID %d after the refusal, not above %d", uid, last)
		}
		last = uid
		f.SetFlags(bg, []uint32{uid}, mailstore.FlagsAdd, "T")
		f.Expunge(bg, []uint32{uid})
	}
	t.Run("OverQuota", func(t *testing.T) {
		_, _, err := f.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 1<<20)
		var qe *mailstore.QuotaError
		if !errors.As(err, &qe) || qe.Address != "alice@example.com" {
			t.Fatalf("over quota: %v", err)
		}
		check(t, err, "QuotaError")
	})
	t.Run("TooLarge", func(t *testing.T) {
		_, _, err := f.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 10)
		if !errors.Is(err, mailstore.ErrTooLarge) {
			t.Fatalf("too large: %v", err)
		}
		check(t, err, "too large")
	})
	for _, op := range []string{"write", "sync", "rename", "syncdir"} {
		t.Run("Fail"+op, func(t *testing.T) {
			sub := filepath.Join(f.Dir(), "tmp", ".append")
			switch op {
			case "rename", "syncdir":
				sub = filepath.Join(f.Dir(), "cur")
			}
			ffs.set(op, sub)
			_, _, err := f.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 1<<20)
			var le *mailstore.LocalError
			if !errors.As(err, &le) {
				t.Fatalf("%s failing: %v", op, err)
			}
			check(t, err, "LocalError")
		})
	}
	t.Run("FailLogWrite", func(t *testing.T) {
		logPath := filepath.Join(f.Dir(), mailstore.UIDLogFile)
		if err := os.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.Mkdir(logPath, 0o750); err != nil { // not writable as a file
			t.Fatal(err)
		}
		_, _, err := f.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 1<<20)
		if err := os.Remove(logPath); err != nil {
			t.Fatal(err)
		}
		check(t, err, "LocalError")
	})
	t.Run("FailMapWrite", func(t *testing.T) {
		// Lines of another UIDVALIDITY count toward the log's length: the
		// next append folds the log into a new snapshot, whose rename fails.
		var stale []byte
		for i := range 100 {
			stale = fmt.Appendf(stale, "1 %d 1.M1P1Q%d.stale\n", i+1, i)
		}
		if err := os.WriteFile(filepath.Join(f.Dir(), mailstore.UIDLogFile), stale, 0o640); err != nil {
			t.Fatal(err)
		}
		ffs.set("rename", mailstore.UIDFile)
		_, _, err := f.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 1<<20)
		check(t, err, "LocalError")
	})
}

// Environment of the crash test's child process.
const (
	envCrashRoot  = "MAILSTORE_TEST_CRASH_ROOT"
	envCrashLocks = "MAILSTORE_TEST_CRASH_LOCKS"
)

// appendCrasher is the child of TestAppendCrash: it appends a message to
// alice's INBOX with a file system whose rename into cur/ prints
// "renaming" and then waits forever, for its parent to kill it.
func appendCrasher(root, locks string) int {
	alice := &mailcluster.Account{Domain: "example.com", Mailbox: "alice", MailboxPath: filepath.Join(root, "example.com", "alice")}
	d := &fakeDir{accounts: map[string]*mailcluster.Account{"alice@example.com": alice}, usage: map[string]mailcluster.Usage{},
		settings: map[string]string{
			mailcluster.SectionDirectories + "/" + mailcluster.KeyMailboxRoot: root,
			mailcluster.SectionDirectories + "/" + mailcluster.KeyLockFiles:   locks,
		}}
	hit := make(chan string, 1)
	ffs := newFaultFS(mailstore.OSFS)
	ffs.op, ffs.substr, ffs.block, ffs.hit = "rename", filepath.Join(alice.MailboxPath, "cur"), make(chan struct{}), hit
	s := mailstore.NewStore(d, &fakeRep{}, nil, mailstore.Options{FS: ffs})
	fs, err := s.Folders(alice)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	f, err := fs.Folder("INBOX")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go func() {
		<-hit
		fmt.Println("renaming")
	}()
	_, _, err = f.Append(bg, strings.NewReader(testMessage(42)), "S", time.Time{}, 1<<20)
	fmt.Println("returned", err)
	return 1
}

// TestAppendCrash kills a process in the middle of an APPEND (its UID
// recorded, the message synced in tmp/ but not yet in cur/): the folder
// shows no message, the lock the process held is broken, and the UID it
// had taken is never given again.
func TestAppendCrash(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	f := mustFolder(t, e, s, "INBOX")
	before := mustAppend(t, f, 1, "")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashRoot+"="+e.root, envCrashLocks+"="+e.locks)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "renaming" {
		t.Fatalf("child said %q (%v)", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The UID log the child wrote holds the UID it took ("<uidvalidity>
	// <uid> <name>"), for a message that never arrived.
	b, err := os.ReadFile(filepath.Join(f.Dir(), mailstore.UIDLogFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	taken, _ := strconv.ParseUint(strings.Fields(lines[len(lines)-1])[1], 10, 32)
	if uint32(taken) <= before {
		t.Fatalf("the child's UID log %q holds no new UID", b)
	}
	snap := mustSync(t, f)
	if fmt.Sprint(uidsOf(snap)) != fmt.Sprint([]uint32{before}) {
		t.Fatalf("after the crash the folder holds %v, want only %d", uidsOf(snap), before)
	}
	if names := files(t, f, "cur"); len(names) != 1 {
		t.Fatalf("cur/ after the crash: %v", names)
	}
	uid := mustAppend(t, f, 2, "")
	if uid <= uint32(taken) {
		t.Fatalf("UID %d given after the crash, not above %d that the crashed append took", uid, taken)
	}
}

// TestCopyMove: copies count toward usage, keep flags and dates, and get
// UIDs in the destination (reported in source order); a move changes no
// usage and keeps the file.
func TestCopyMove(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	inbox, archive := mustFolder(t, e, s, "INBOX"), mustFolder(t, e, s, "Archive")
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	var uids []uint32
	for i := range 3 {
		_, uid, err := inbox.Append(bg, strings.NewReader(testMessage(i)), "F", date, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	b0, m0 := e.rep.Pending("example.com", "alice")
	_, src, dst, err := inbox.CopyTo(bg, []uint32{uids[2], uids[0], 999}, archive)
	if err != nil || fmt.Sprint(src) != fmt.Sprint([]uint32{uids[0], uids[2]}) || fmt.Sprint(dst) != "[1 2]" {
		t.Fatalf("copy: %v -> %v, %v", src, dst, err)
	}
	if b, m := e.rep.Pending("example.com", "alice"); m != m0+2 || b <= b0 {
		t.Fatalf("usage after copying 2: %d bytes %d messages (before %d, %d)", b, m, b0, m0)
	}
	snap := mustSync(t, archive)
	for _, m := range snap.Messages {
		if m.Flags != "F" || !archive.InternalDate(m).Equal(date) {
			t.Fatalf("copy %+v lost its flags or date", m)
		}
	}
	b1, m1 := e.rep.Pending("example.com", "alice")
	_, src, dst, err = inbox.MoveTo(bg, []uint32{uids[1]}, archive)
	if err != nil || fmt.Sprint(src) != fmt.Sprint([]uint32{uids[1]}) || fmt.Sprint(dst) != "[3]" {
		t.Fatalf("move: %v -> %v, %v", src, dst, err)
	}
	if b, m := e.rep.Pending("example.com", "alice"); b != b1 || m != m1 {
		t.Fatalf("a move changed usage: %d %d, was %d %d", b, m, b1, m1)
	}
	if got := uidsOf(mustSync(t, inbox)); fmt.Sprint(got) != fmt.Sprint([]uint32{uids[0], uids[2]}) {
		t.Fatalf("INBOX after the move: %v", got)
	}
	if got := uidsOf(mustSync(t, archive)); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("Archive after the move: %v", got)
	}
	e.setQuota(1, 0)
	if _, _, _, err := inbox.CopyTo(bg, []uint32{uids[0]}, archive); !errors.As(err, new(*mailstore.QuotaError)) {
		t.Fatalf("copy over quota: %v", err)
	}
	if got := uidsOf(mustSync(t, archive)); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("Archive after the refused copy: %v", got)
	}
}

// TestFolders: create, list, rename, subscribe, delete; default folders;
// names in modified UTF-7 on disk; usage counts every folder.
func TestFolders(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	fs, err := s.Folders(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.EnsureDefaults(bg); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		t.Helper()
		l, err := fs.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range l {
			s := f.Name
			if f.SpecialUse != "" {
				s += " " + f.SpecialUse
			}
			if f.Subscribed {
				s += " sub"
			}
			out = append(out, s)
		}
		return strings.Join(out, ", ")
	}
	if got, want := list(), `INBOX sub, Drafts \Drafts sub, Junk \Junk sub, Sent \Sent sub, Trash \Trash sub`; got != want {
		t.Fatalf("after the first login: %s, want %s", got, want)
	}
	for _, name := range []string{"Entwürfe", "Projects", "Projects.2024"} {
		if err := fs.Create(bg, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(e.alice.MailboxPath, ".Entw&APw-rfe", "cur")); err != nil {
		t.Fatalf("folder directory in modified UTF-7: %v", err)
	}
	for _, tc := range []struct{ name, code string }{
		{"Projects", mailcluster.ECONFLICT}, {"inbox", mailcluster.ECONFLICT}, {"a..b", mailcluster.EINVALID},
		{".x", mailcluster.EINVALID}, {"a/b", mailcluster.EINVALID}, {"x\ty", mailcluster.EINVALID}, {"", mailcluster.EINVALID},
	} {
		if err := fs.Create(bg, tc.name); mailcluster.ErrorCode(err) != tc.code {
			t.Fatalf("create %q: %v, want %s", tc.name, err, tc.code)
		}
	}
	p := mustFolder(t, e, s, "Projects.2024")
	uid := mustAppend(t, p, 1, "")
	if err := fs.Subscribe(bg, "Projects.2024", true); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(bg, "Projects", "Work"); err != nil {
		t.Fatal(err)
	}
	if got, want := list(), `INBOX sub, Drafts \Drafts sub, Entwürfe, Junk \Junk sub, Sent \Sent sub, Trash \Trash sub, Work, Work.2024 sub`; got != want {
		t.Fatalf("after the rename: %s, want %s", got, want)
	}
	w := mustFolder(t, e, s, "Work.2024")
	if got := uidsOf(mustSync(t, w)); fmt.Sprint(got) != fmt.Sprint([]uint32{uid}) {
		t.Fatalf("renamed folder's UIDs: %v", got)
	}
	if err := fs.Rename(bg, "Work", "Sent"); mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
		t.Fatalf("rename onto Sent: %v", err)
	}
	mustAppend(t, mustFolder(t, e, s, "INBOX"), 2, "")
	md, err := s.MailboxDir(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	if b, m, err := md.Count(); err != nil || m != 2 || b != int64(len(testMessage(1))+len(testMessage(2))) {
		t.Fatalf("count over every folder: %d bytes %d messages %v", b, m, err)
	}
	_, m0 := e.rep.Pending("example.com", "alice")
	if err := fs.Delete(bg, "Work.2024"); err != nil {
		t.Fatal(err)
	}
	if _, m := e.rep.Pending("example.com", "alice"); m != m0-1 {
		t.Fatalf("usage after deleting a folder with 1 message: %d messages, was %d", m, m0)
	}
	if err := fs.Delete(bg, "INBOX"); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := fs.Delete(bg, "Nothing"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
		t.Fatalf("delete a missing folder: %v", err)
	}
	if _, err := w.Sync(bg); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
		t.Fatalf("sync of a deleted folder: %v", err)
	}
	// Deleted and created again: a new UIDVALIDITY, even within a second.
	old := mustSync(t, mustFolder(t, e, s, "Junk")).UIDValidity
	if err := fs.Delete(bg, "Junk"); err != nil {
		t.Fatal(err)
	}
	if v := mustSync(t, mustFolder(t, e, s, "Junk")).UIDValidity; v <= old {
		t.Fatalf("UIDVALIDITY of a folder created again: %d, was %d", v, old)
	}
}

// TestHub: deliveries and folder changes are published under the
// folder's directory.
func TestHub(t *testing.T) {
	e := mustStoreEnv(t)
	hub := mailstore.NewHub()
	s := e.node(t, mailstore.Options{Hub: hub})
	inbox := mustFolder(t, e, s, "INBOX")
	notices, cancel := hub.Subscribe(inbox.Dir())
	defer cancel()
	wait := func(what string) {
		t.Helper()
		select {
		case <-notices:
		case <-time.After(10 * time.Second):
			t.Fatalf("no notice after %s", what)
		}
	}
	if err := s.Deliver(bg, []*mailcluster.Account{e.alice}, nil, strings.NewReader(testMessage(1)), 1<<20); err != nil {
		t.Fatal(err)
	}
	wait("a delivery")
	uid := mustAppend(t, inbox, 2, "")
	wait("an append")
	if _, err := inbox.SetFlags(bg, []uint32{uid}, mailstore.FlagsAdd, "S"); err != nil {
		t.Fatal(err)
	}
	wait("a flag change")
}

// An append whose cur/ sync fails takes its message back even when a
// change of flags renamed the file while the sync ran (under the folder's
// lock, by the message's key), so that the client's NO is true.
func TestAppendTakenBackAfterRename(t *testing.T) {
	e := mustStoreEnv(t)
	ffs := newFaultFS(mailstore.OSFS)
	s := e.node(t, mailstore.Options{FS: ffs})
	f := mustFolder(t, e, s, "Drafts")
	mustAppend(t, f, 0, "")
	before := files(t, f, "cur")
	ffs.mu.Lock()
	ffs.block, ffs.hit = make(chan struct{}), make(chan string, 1)
	ffs.mu.Unlock()
	ffs.set("syncdir", filepath.Join(f.Dir(), "cur"))
	done := make(chan error, 1)
	go func() {
		_, _, err := f.Append(bg, strings.NewReader(testMessage(1)), "", time.Time{}, 1<<20)
		done <- err
	}()
	select {
	case <-ffs.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("cur/ was never synced")
	}
	// Another session flags the new message while cur/ syncs: its file
	// gets a new name.
	var placed string
	for _, n := range files(t, f, "cur") {
		if !slices.Contains(before, n) {
			placed = n
		}
	}
	if placed == "" {
		t.Fatal("the appended message is not in cur/")
	}
	key, _, _ := strings.Cut(placed, ":")
	if err := os.Rename(filepath.Join(f.Dir(), "cur", placed), filepath.Join(f.Dir(), "cur", key+":2,S")); err != nil {
		t.Fatal(err)
	}
	close(ffs.block)
	var le *mailstore.LocalError
	if err := <-done; !errors.As(err, &le) {
		t.Fatalf("append with a failing cur/ sync: %v", err)
	}
	ffs.set("", "")
	if names := files(t, f, "cur"); !slices.Equal(names, before) {
		t.Fatalf("cur/ after the failed append: %v, want %v", names, before)
	}
}
