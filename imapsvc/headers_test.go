package imapsvc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailcluster/imapsvc"
	"mailcluster/mailstore"
)

// inboxOf returns alice's INBOX on a node.
func (e *env) inboxOf(n *node, name string) *mailstore.Folder {
	e.t.Helper()
	fs, err := n.store.Folders(e.account("alice@example.com"))
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := fs.Folder(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func storeMsg(t *testing.T, f *mailstore.Folder, msg string) mailstore.Message {
	t.Helper()
	_, uid, err := f.Append(sysCtx, strings.NewReader(msg), "", time.Time{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return findMsg(t, f, uid)
}

func findMsg(t *testing.T, f *mailstore.Folder, uid uint32) mailstore.Message {
	t.Helper()
	snap, err := f.Sync(sysCtx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		if m.UID == uid {
			return m
		}
	}
	t.Fatalf("no message of UID %d in %s", uid, f.Name())
	return mailstore.Message{}
}

func TestHeaderCacheKeepsEnvelopeAcrossFlagChanges(t *testing.T) {
	e := mustOpenEnv(t)
	inbox := e.inboxOf(e.node, "INBOX")
	m := storeMsg(t, inbox, message("cached subject", "body"))
	c := imapsvc.NewHeaderCache(0)
	env, err := c.Envelope(inbox, m)
	if err != nil || env.Subject != "cached subject" {
		t.Fatalf("envelope %+v, %v", env, err)
	}
	if _, err := inbox.SetFlags(sysCtx, []uint32{m.UID}, mailstore.FlagsAdd, "SF"); err != nil {
		t.Fatal(err)
	}
	renamed := findMsg(t, inbox, m.UID)
	if renamed.Path == m.Path || renamed.Flags != "FS" {
		t.Fatalf("flags not renamed into the file: %+v", renamed)
	}
	// The same entry: the file was not read again.
	again, err := c.Envelope(inbox, renamed)
	if err != nil || again != env {
		t.Fatalf("after a flag change: envelope %+v (%v), want the cached %+v", again, err, env)
	}
	if n, _ := c.Stats(); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
}

func TestHeaderCacheBounded(t *testing.T) {
	e := mustOpenEnv(t)
	inbox := e.inboxOf(e.node, "INBOX")
	const limit = 16 << 10
	c := imapsvc.NewHeaderCache(limit)
	long := strings.Repeat("x", 900)
	var msgs []mailstore.Message
	for i := range 40 {
		msgs = append(msgs, storeMsg(t, inbox, message(fmt.Sprintf("message %d %s", i, long), "body")))
	}
	envs := map[uint32]*imap.Envelope{}
	for _, m := range msgs {
		env, err := c.Envelope(inbox, m)
		if err != nil {
			t.Fatal(err)
		}
		envs[m.UID] = env
		if n, b := c.Stats(); b > limit {
			t.Fatalf("%d entries of %d bytes, over the limit of %d", n, b, limit)
		}
	}
	n, b := c.Stats()
	if n == 0 || n >= len(msgs) || b > limit {
		t.Fatalf("%d entries of %d bytes after %d messages, limit %d bytes", n, b, len(msgs), limit)
	}
	last, first := msgs[len(msgs)-1], msgs[0]
	if env, _ := c.Envelope(inbox, last); env != envs[last.UID] {
		t.Fatal("the most recent entry was evicted")
	}
	env, err := c.Envelope(inbox, first)
	if err != nil || env == envs[first.UID] || !strings.HasPrefix(env.Subject, "message 0 ") {
		t.Fatalf("the oldest entry: %v (%v), want read again", env, err)
	}
}

func TestHeaderCacheNotConfused(t *testing.T) {
	e := mustOpenEnv(t)
	c := imapsvc.NewHeaderCache(0)
	inbox := e.inboxOf(e.node, "INBOX")
	// An expunged message and the one delivered after it (the server
	// drops the expunged message's entry; TestHeaderCacheForgetsExpunged).
	old := storeMsg(t, inbox, message("first", "body"))
	if env, err := c.Envelope(inbox, old); err != nil || env.Subject != "first" {
		t.Fatalf("first: %+v, %v", env, err)
	}
	if _, err := inbox.SetFlags(sysCtx, []uint32{old.UID}, mailstore.FlagsAdd, "T"); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Expunge(sysCtx, []uint32{old.UID}); err != nil {
		t.Fatal(err)
	}
	next := storeMsg(t, inbox, message("second", "body"))
	if env, err := c.Envelope(inbox, next); err != nil || env.Subject != "second" {
		t.Fatalf("second: %+v, %v", env, err)
	}
	// Two folders holding a file of the same name with other contents (a
	// tool wrote them): each folder's own.
	fs, err := e.node.store.Folders(e.account("alice@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Create(sysCtx, "Archive"); err != nil {
		t.Fatal(err)
	}
	name := "1700000000.M1P1.tool"
	for _, f := range []string{"INBOX", "Archive"} {
		dir := e.inboxOf(e.node, f).Dir()
		if err := os.WriteFile(filepath.Join(dir, "cur", name+":2,S"), []byte(message("in "+f, "body")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"INBOX", "Archive"} {
		folder := e.inboxOf(e.node, f)
		snap, err := folder.Sync(sysCtx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range snap.Messages {
			if m.Key == name {
				found = true
				if env, err := c.Envelope(folder, m); err != nil || env.Subject != "in "+f {
					t.Fatalf("%s: %+v, %v", f, env, err)
				}
			}
		}
		if !found {
			t.Fatalf("%s: the tool's file was not found", f)
		}
	}
}

// A message expunged, by this node or another, leaves the node's cache.
func TestHeaderCacheForgetsExpunged(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	for i := range 3 {
		appendMsg(t, c, "INBOX", message(fmt.Sprintf("m%d", i), "body"), nil)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 3 || msgs[0].Envelope.Subject != "m0" {
		t.Fatalf("fetch: %v, %v", msgs, err)
	}
	cache := e.node.srv.Headers()
	if n, _ := cache.Stats(); n != 3 {
		t.Fatalf("%d entries after FETCH ENVELOPE of 3, want 3", n)
	}
	// Here.
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := cache.Stats(); n != 2 {
		t.Fatalf("%d entries after an EXPUNGE, want 2", n)
	}
	// On another node.
	other := e.startNode()
	f := e.inboxOf(other, "INBOX")
	uid := uint32(msgs[1].UID)
	if _, err := f.SetFlags(sysCtx, []uint32{uid}, mailstore.FlagsAdd, "T"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Expunge(sysCtx, []uint32{uid}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other node's expunge to leave the cache", func() bool {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		n, _ := cache.Stats()
		return n == 1
	})
	rest, err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(rest) != 1 || rest[0].Envelope.Subject != "m2" {
		t.Fatalf("fetch after the expunges: %v, %v", rest, err)
	}
}
