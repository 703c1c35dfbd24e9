package mailstore_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailcluster/mailstore"
)

// The Folders of one directory share what was read of it, and see the
// changes of each other and of other nodes.
func TestFolderViewShared(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	a, b := mustFolder(t, e, s, "INBOX"), mustFolder(t, e, s, "INBOX")
	for i := range 3 {
		mustAppend(t, a, i, "")
	}
	if snap := mustSync(t, b); len(snap.Messages) != 3 {
		t.Fatalf("the other Folder sees %d messages, want 3", len(snap.Messages))
	}
	uid := mustSync(t, a).Messages[1].UID
	if _, err := b.SetFlags(bg, []uint32{uid}, mailstore.FlagsAdd, "F"); err != nil {
		t.Fatal(err)
	}
	if m := mustSync(t, a).Messages[1]; m.Flags != "F" {
		t.Fatalf("flags seen through the other Folder: %q, want F", m.Flags)
	}
	// Another node's Store changes the folder.
	other := mustFolder(t, e, e.node(t, mailstore.Options{}), "INBOX")
	mustAppend(t, other, 9, "S")
	if _, err := other.SetFlags(bg, []uint32{uid}, mailstore.FlagsRemove, "F"); err != nil {
		t.Fatal(err)
	}
	snap := mustSync(t, a)
	if len(snap.Messages) != 4 || snap.Messages[1].Flags != "" || snap.Messages[3].Flags != "S" {
		t.Fatalf("after another node's changes: %+v", snap.Messages)
	}
}

// Sizes come from the ",S=" of a file name when it has one; the internal
// date is the file's modification time, read when asked.
func TestFolderSizeAndDate(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	inbox := mustFolder(t, e, s, "INBOX")
	mustAppend(t, inbox, 1, "")
	body := testMessage(2)
	for _, name := range []string{"1700000000.M1P1.tool,S=" + "5", "1700000001.M2P2.tool"} {
		if err := os.WriteFile(filepath.Join(inbox.Dir(), "new", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap := mustSync(t, inbox)
	if len(snap.Messages) != 3 {
		t.Fatalf("%d messages, want 3", len(snap.Messages))
	}
	sizes := map[string]int64{}
	for _, m := range snap.Messages {
		sizes[m.Key] = m.Size
	}
	if sizes["1700000000.M1P1.tool,S=5"] != 5 || sizes["1700000001.M2P2.tool"] != int64(len(body)) {
		t.Fatalf("sizes %v: want 5 from the name, %d from the file", sizes, len(body))
	}
	m := snap.Messages[1]
	if m.Key != "1700000000.M1P1.tool,S=5" || !m.Date.IsZero() {
		t.Fatalf("message 2: %+v, want the one sized by its name, its date not read yet", m)
	}
	when := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(m.Path, when, when); err != nil {
		t.Fatal(err)
	}
	if got := inbox.InternalDate(m); !got.Equal(when) {
		t.Fatalf("internal date %v, want %v", got, when)
	}
}

// A snapshot is the caller's to change; Folders of one directory change
// and read it concurrently (run with -race).
func TestFolderViewSnapshotsAndConcurrency(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	a, b := mustFolder(t, e, s, "INBOX"), mustFolder(t, e, s, "INBOX")
	for i := range 5 {
		mustAppend(t, a, i, "")
	}
	snap := mustSync(t, a)
	snap.Messages[0].Flags = "changed"
	if again := mustSync(t, b); again.Messages[0].Flags != "" {
		t.Fatalf("a change to a snapshot reached the next one: %+v", again.Messages[0])
	}
	uid := snap.Messages[2].UID
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			op := mailstore.FlagsAdd
			if i%2 == 1 {
				op = mailstore.FlagsRemove
			}
			// Directories unchanged for a while: listings are shared.
			old := time.Now().Add(-time.Minute)
			for _, sub := range []string{"new", "cur"} {
				if err := os.Chtimes(filepath.Join(a.Dir(), sub), old, old); err != nil {
					t.Error(err)
					return
				}
			}
			if _, err := a.SetFlags(bg, []uint32{uid}, op, "S"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			if m := mustSync(t, b).Messages[2]; m.Flags != "" {
				t.Fatalf("after an even number of changes: %q", m.Flags)
			}
			return
		default:
			if snap, err := b.Sync(bg); err != nil || len(snap.Messages) != 5 {
				t.Fatalf("sync during changes: %v", err)
			}
		}
	}
}

// The views a Store keeps are bounded by number and by messages.
func TestFolderViewsBounded(t *testing.T) {
	defer mailstore.SetViewLimits(3, 10)()
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	for i, name := range []string{"A", "B", "C", "D"} {
		f := mustFolder(t, e, s, name)
		mustAppend(t, f, i, "")
		mustSync(t, f)
	}
	if n, _ := s.ViewCount(); n != 3 {
		t.Fatalf("%d views, want 3", n)
	}
	big := mustFolder(t, e, s, "Big")
	for i := range 12 {
		mustAppend(t, big, i, "")
	}
	mustSync(t, big)
	mustFolder(t, e, s, "INBOX") // a view more: the others go beyond 10 messages
	if n, m := s.ViewCount(); n > 2 || m > 12 {
		t.Fatalf("%d views listing %d messages, want at most 2 and 12", n, m)
	}
	// A Folder whose view was dropped still works.
	mustAppend(t, big, 99, "S")
	if snap := mustSync(t, big); len(snap.Messages) != 13 {
		t.Fatalf("%d messages, want 13", len(snap.Messages))
	}
}
