package mailstore_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/faultfs"
	"mailcluster/mailstore"
)

// logLines returns the lines of a folder's UID log.
func logLines(t *testing.T, f *mailstore.Folder) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir(), mailstore.UIDLogFile))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// keysOf returns the unique names of a snapshot's messages by UID.
func keysOf(snap *mailstore.Snapshot) map[uint32]string {
	out := map[uint32]string{}
	for _, m := range snap.Messages {
		out[m.UID] = m.Key
	}
	return out
}

// UIDs only grow, across expunges of the last messages and a reopen (a
// new Store, as after a restart): UIDNEXT is durable before Append
// returns, in the log, not only in memory.
func TestAppendUIDsNeverReused(t *testing.T) {
	e := mustStoreEnv(t)
	f := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	var last uint32
	for i := range 5 {
		uid := mustAppend(t, f, i, "T")
		if uid <= last {
			t.Fatalf("UID %d after %d", uid, last)
		}
		last = uid
	}
	// The last two go: nothing in the folder holds UIDs 4 and 5 any more.
	if _, err := f.Expunge(bg, []uint32{last - 1, last}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, f, 10, "") // in the log only, after the snapshot the expunge wrote
	last++
	if lines := logLines(t, f); len(lines) != 1 {
		t.Fatalf("log after the expunge and one append: %q", lines)
	}
	f2 := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	snap := mustSync(t, f2)
	if snap.UIDNext != last+1 {
		t.Fatalf("UIDNEXT after a reopen %d, want %d", snap.UIDNext, last+1)
	}
	if got := fmt.Sprint(uidsOf(snap)); got != fmt.Sprint([]uint32{1, 2, 3, last}) {
		t.Fatalf("UIDs after a reopen %s", got)
	}
	if uid := mustAppend(t, f2, 11, ""); uid != last+1 {
		t.Fatalf("UID after a reopen %d, want %d", uid, last+1)
	}
}

// A last log line cut short (a crash while it was written) is ignored,
// cut off by the next append (whose line stays readable), and the UIDs
// before it keep their messages.
func TestUIDLogTornLine(t *testing.T) {
	e := mustStoreEnv(t)
	f := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	for i := range 3 {
		mustAppend(t, f, i, "")
	}
	want := keysOf(mustSync(t, f))
	lines := logLines(t, f)
	if len(lines) != 3 {
		t.Fatalf("log after 3 appends: %q", lines)
	}
	fields := strings.Fields(lines[0])
	lp := filepath.Join(f.Dir(), mailstore.UIDLogFile)
	lf, err := os.OpenFile(lp, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// UID 4, for a name with no file, cut before its newline.
	if _, err := lf.WriteString(fields[0] + " 4 1700000000.M1P1.torn"); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	f2 := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	snap := mustSync(t, f2)
	if got := keysOf(snap); fmt.Sprint(got) != fmt.Sprint(want) || snap.UIDNext != 4 {
		t.Fatalf("after a torn line: %v UIDNEXT %d, want %v UIDNEXT 4", got, snap.UIDNext, want)
	}
	uid := mustAppend(t, f2, 9, "")
	if uid != 4 {
		t.Fatalf("UID after a torn line %d, want 4 (the torn one was never given)", uid)
	}
	b, _ := os.ReadFile(lp)
	if bytes.Contains(b, []byte("torn")) || !bytes.HasSuffix(b, []byte("\n")) || len(logLines(t, f2)) != 4 {
		t.Fatalf("log after an append behind a torn line: %q", b)
	}
	// A third Store, and the first one (which cached the log before),
	// read the same.
	for _, g := range []*mailstore.Folder{f, mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")} {
		snap := mustSync(t, g)
		if got := keysOf(snap); len(got) != 4 || got[4] == "" || snap.UIDNext != 5 {
			t.Fatalf("read after the append: %v UIDNEXT %d", got, snap.UIDNext)
		}
	}
}

// Two Stores (two nodes) appending to one folder at once give distinct
// UIDs, each node's in ascending order, and each reads the lines the
// other wrote.
func TestAppendTwoNodes(t *testing.T) {
	e := mustStoreEnv(t)
	nodes := []*mailstore.Folder{
		mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX"),
		mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX"),
	}
	mustSync(t, nodes[0])
	mustSync(t, nodes[1]) // both have read the (empty) map
	const perWorker, workers = 15, 3
	var mu sync.Mutex
	byUID := map[uint32]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for n, f := range nodes {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var last uint32
				for i := range perWorker {
					_, uid, err := f.Append(bg, strings.NewReader(testMessage(n*1000+w*100+i)), "", time.Time{}, 1<<20)
					if err != nil {
						errs <- err
						return
					}
					if uid <= last {
						errs <- fmt.Errorf("node %d: UID %d after %d", n, uid, last)
						return
					}
					last = uid
					mu.Lock()
					if prev, dup := byUID[uid]; dup {
						errs <- fmt.Errorf("UID %d given twice (node %d and %s)", uid, n, prev)
					}
					byUID[uid] = fmt.Sprint("node ", n)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = 2 * workers * perWorker
	if len(byUID) != total {
		t.Fatalf("%d UIDs for %d appends", len(byUID), total)
	}
	for n, f := range nodes {
		snap := mustSync(t, f)
		if len(snap.Messages) != total || snap.UIDNext != total+1 {
			t.Fatalf("node %d reads %d messages, UIDNEXT %d; want %d and %d", n, len(snap.Messages), snap.UIDNext, total, total+1)
		}
		for _, m := range snap.Messages {
			if _, ok := byUID[m.UID]; !ok {
				t.Fatalf("node %d reads UID %d, which no append returned", n, m.UID)
			}
		}
	}
}

// Folding the log into a new snapshot keeps every UID with its message,
// as every node reads it, and empties the log.
func TestUIDLogFold(t *testing.T) {
	e := mustStoreEnv(t)
	f := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	other := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	seen := map[uint32]string{}
	folds := 0
	prevLines := 0
	for i := range 150 {
		uid := mustAppend(t, f, i, "")
		if uid != uint32(i+1) {
			t.Fatalf("append %d got UID %d", i, uid)
		}
		lines := len(logLines(t, f))
		if lines == 1 && prevLines > 1 || strings.Join(logLines(t, f), "") == "" {
			folds++
		}
		prevLines = lines
		if i%10 == 0 || i == 149 {
			for k, v := range keysOf(mustSync(t, other)) {
				if old, ok := seen[k]; ok && old != v {
					t.Fatalf("UID %d was %s, is %s after %d appends", k, old, v, i+1)
				}
				seen[k] = v
			}
		}
	}
	if folds == 0 {
		t.Fatalf("150 appends and the log was never folded (%d lines)", prevLines)
	}
	if len(seen) != 150 {
		t.Fatalf("%d UIDs seen, want 150", len(seen))
	}
	b, err := os.ReadFile(filepath.Join(f.Dir(), mailstore.UIDFile))
	if err != nil {
		t.Fatal(err)
	}
	inSnap := strings.Count(string(b), "\n") - 1
	if inSnap+prevLines != 150 {
		t.Fatalf("snapshot holds %d UIDs and the log %d lines, want 150 in all", inSnap, prevLines)
	}
	for _, g := range []*mailstore.Folder{f, mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")} {
		if got := keysOf(mustSync(t, g)); fmt.Sprint(got) != fmt.Sprint(seen) {
			t.Fatal("a reader's map after the folds differs from the UIDs seen")
		}
	}
	t.Logf("%d folds; snapshot %d UIDs, log %d lines", folds, inSnap, prevLines)
}

// A symbolic link placed where the UID log belongs is not followed: an
// append is refused and the file it points to is neither written nor
// emptied.
func TestUIDLogSymlinkRefused(t *testing.T) {
	e := mustStoreEnv(t)
	f := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	uid := mustAppend(t, f, 1, "T")
	target := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(target, []byte("not a log\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	lp := filepath.Join(f.Dir(), mailstore.UIDLogFile)
	if err := os.Remove(lp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, lp); err != nil {
		t.Fatal(err)
	}
	g := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	if _, _, err := g.Append(bg, strings.NewReader(testMessage(2)), "", time.Time{}, 1<<20); err == nil {
		t.Fatal("append through a linked UID log succeeded")
	}
	g.Expunge(bg, []uint32{uid}) // rewrites the map and empties the log, unless refused
	if b, err := os.ReadFile(target); err != nil || string(b) != "not a log\n" {
		t.Fatalf("the link's target holds %q (%v)", b, err)
	}
}

// A node that read a folder in the instant between another node's new
// snapshot and the emptying of the log (the log then still held the lines
// the snapshot took in) does not keep reading the log from where that old
// content ended: the emptied log grows again from its start, and every
// UID an APPEND returned since keeps its message on that node too, and on
// the map it writes when it reconciles.
func TestUIDLogReadAcrossEmptying(t *testing.T) {
	e := mustStoreEnv(t)
	var mu sync.Mutex
	var onSyncDir func()
	var dir string
	hook := &faultfs.FS{FS: mailstore.OSFS, Check: func(op, path string) error {
		mu.Lock()
		fn := onSyncDir
		if op == "syncdir" && path == dir && fn != nil {
			onSyncDir = nil
		} else {
			fn = nil
		}
		mu.Unlock()
		if fn != nil {
			fn()
		}
		return nil
	}}
	writer := mustFolder(t, e, e.node(t, mailstore.Options{FS: hook}), "INBOX")
	reader := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	for i := 1; i <= 3; i++ {
		mustAppend(t, writer, i, "")
	}
	if _, err := writer.SetFlags(bg, []uint32{1}, mailstore.FlagsAdd, "T"); err != nil {
		t.Fatal(err)
	}
	// The expunge writes a new snapshot (renamed in, then the folder's
	// directory synced) and then empties the log: the reader reads in
	// between, while the log still holds UIDs 1 to 3.
	mu.Lock()
	dir = writer.Dir()
	onSyncDir = func() {
		if lines := logLines(t, writer); len(lines) != 3 {
			t.Errorf("log when the new snapshot is in place: %q", lines)
		}
		if got := fmt.Sprint(uidsOf(mustSync(t, reader))); got != "[2 3]" {
			t.Errorf("reader between snapshot and emptied log: UIDs %s, want [2 3]", got)
		}
	}
	mu.Unlock()
	if _, err := writer.Expunge(bg, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if onSyncDir != nil {
		t.Fatal("the expunge synced no new snapshot")
	}
	mu.Unlock()
	want := map[uint32]string{}
	for i := 4; i <= 7; i++ {
		uid := mustAppend(t, writer, i, "")
		want[uid] = ""
	}
	for uid, key := range keysOf(mustSync(t, writer)) {
		if _, ok := want[uid]; ok || uid < 4 {
			want[uid] = key
		}
	}
	for name, f := range map[string]*mailstore.Folder{"reader": reader, "writer": writer, "new node": mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")} {
		if got := keysOf(mustSync(t, f)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s reads %v, want the UIDs the appends returned: %v", name, got, want)
		}
	}
}
