package mailstore_test

import (
	"fmt"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/mailstore"
)

// reported returns the folder changes reported since the last call, as
// "folder:kind" with the usage moved (" +bytes/+messages") when any.
func (r *fakeRep) reported(from *int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.deltas[*from:] {
		s := d.Folder + ":" + string(d.Kind)
		if d.Bytes != 0 || d.Messages != 0 {
			s += fmt.Sprintf(" %+d", d.Messages)
		}
		out = append(out, s)
	}
	*from = len(r.deltas)
	return strings.Join(out, ", ")
}

// TestReportedFolderChanges: every change the store makes to a folder is
// reported with the folder's name and what happened, with the usage it
// moved (a change of flags or folders moves none).
func TestReportedFolderChanges(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	var from int
	step := func(what, want string) {
		t.Helper()
		if got := e.rep.reported(&from); got != want {
			t.Fatalf("%s reported %q, want %q", what, got, want)
		}
	}
	fs, err := s.Folders(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.EnsureDefaults(bg); err != nil {
		t.Fatal(err)
	}
	step("the first login", "Sent:folder, Drafts:folder, Trash:folder, Junk:folder")
	if err := s.Deliver(bg, []*mailcluster.Account{e.alice}, nil, strings.NewReader(testMessage(1)), 1<<20); err != nil {
		t.Fatal(err)
	}
	step("a delivery", "INBOX:delivery +1")
	inbox := mustFolder(t, e, s, "INBOX")
	uid := mustAppend(t, inbox, 2, "")
	step("an append", "INBOX:append +1")
	if _, err := inbox.SetFlags(bg, []uint32{uid}, mailstore.FlagsAdd, "S"); err != nil {
		t.Fatal(err)
	}
	step("a flag change", "INBOX:flags")
	if _, err := inbox.SetFlags(bg, []uint32{uid}, mailstore.FlagsAdd, "S"); err != nil {
		t.Fatal(err)
	}
	step("flags set as they were", "")
	archive := mustFolder(t, e, s, "Archive")
	step("a folder created", "Archive:folder")
	if _, _, _, err := inbox.CopyTo(bg, []uint32{uid}, archive); err != nil {
		t.Fatal(err)
	}
	step("a copy", "Archive:append +1")
	if _, _, _, err := inbox.MoveTo(bg, []uint32{uid}, mustFolder(t, e, s, "Trash")); err != nil {
		t.Fatal(err)
	}
	step("a move", "INBOX:expunge, Trash:append")
	snap := mustSync(t, archive)
	if _, err := archive.SetFlags(bg, []uint32{snap.Messages[0].UID}, mailstore.FlagsAdd, "T"); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Expunge(bg, []uint32{snap.Messages[0].UID}); err != nil {
		t.Fatal(err)
	}
	step("an expunge", "Archive:flags, Archive:expunge -1")
	if err := fs.Create(bg, "Archive.2024"); err != nil {
		t.Fatal(err)
	}
	step("a sub-folder created", "Archive.2024:folder")
	if err := fs.Rename(bg, "Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	step("a rename", "Archive:folder, Old:folder, Archive.2024:folder, Old.2024:folder")
	mustAppend(t, mustFolder(t, e, s, "Old"), 3, "")
	step("an append", "Old:append +1")
	if err := fs.Delete(bg, "Old"); err != nil {
		t.Fatal(err)
	}
	step("a deletion", "Old:folder -1")
	msgs, _, err := s.List(e.alice, 0, "")
	if err != nil || len(msgs) == 0 {
		t.Fatalf("list: %v %v", msgs, err)
	}
	if err := s.Delete(bg, e.alice, msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	step("a deletion through the API", "INBOX:expunge -1")
}

// TestPublishChange: a change learned from another node reaches the
// readers of its folder on this node's hub; PublishAll reaches every
// reader.
func TestPublishChange(t *testing.T) {
	e := mustStoreEnv(t)
	hub := mailstore.NewHub()
	s := e.node(t, mailstore.Options{Hub: hub})
	inbox, archive := mustFolder(t, e, s, "INBOX"), mustFolder(t, e, s, "Archive.2024")
	inboxN, cancel := hub.Subscribe(inbox.Dir())
	defer cancel()
	archiveN, cancel2 := hub.Subscribe(archive.Dir())
	defer cancel2()
	noticed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	change := func(mailbox, folder string) mailcluster.MailChange {
		return mailcluster.MailChange{Domain: "example.com", Mailbox: mailbox, Folder: folder, Kinds: []mailcluster.MailChangeKind{mailcluster.MailDelivered}, Seq: 1}
	}
	s.PublishChange(change("alice", "inbox"))
	if !noticed(inboxN) || noticed(archiveN) {
		t.Fatal("a change of INBOX did not reach INBOX's readers alone")
	}
	s.PublishChange(change("alice", "Archive.2024"))
	if noticed(inboxN) || !noticed(archiveN) {
		t.Fatal("a change of Archive.2024 did not reach its readers alone")
	}
	for _, c := range []mailcluster.MailChange{change("nobody", "INBOX"), change("alice", "a..b"), change("alice", "Other")} {
		s.PublishChange(c)
	}
	if noticed(inboxN) || noticed(archiveN) {
		t.Fatal("a change of another account or folder reached these readers")
	}
	s.PublishAll()
	if !noticed(inboxN) || !noticed(archiveN) {
		t.Fatal("PublishAll did not reach every reader")
	}
}
