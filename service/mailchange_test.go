package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"mailcluster/schema"
	"mailcluster/service"

	"mailcluster"
)

// mustOpenMailPrimary returns a primary with the accounts alice and bob
// of example.com.
func mustOpenMailPrimary(t *testing.T) (*service.Service, mailcluster.Store) {
	t.Helper()
	svc, st := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []string{"alice", "bob"} {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: "pass-word-1"}); err != nil {
			t.Fatal(err)
		}
	}
	return svc, st
}

// folderDelta is a reported change of a folder of an account of
// example.com.
func folderDelta(seq uint64, mailbox, folder string, kind mailcluster.MailChangeKind, bytes, messages int64) mailcluster.UsageDelta {
	return mailcluster.UsageDelta{Seq: seq, Domain: "example.com", Mailbox: mailbox, Bytes: bytes, Messages: messages, At: time.Now(),
		Folder: folder, Kind: kind}
}

func applyReport(t *testing.T, svc *service.Service, node, epoch string, deltas ...mailcluster.UsageDelta) uint64 {
	t.Helper()
	idx, err := svc.ApplyUsageReport(service.SystemContext(context.Background(), "outbox"), mailcluster.UsageReport{Node: node, Epoch: epoch, Deltas: deltas})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func readMark(t *testing.T, st mailcluster.Store, node string) (mailcluster.ReportMark, uint64) {
	t.Helper()
	kv, ok := st.Get(schema.Report(node))
	if !ok {
		t.Fatalf("no record of %s's reports", node)
	}
	var m mailcluster.ReportMark
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		t.Fatal(err)
	}
	return m, kv.ModifyIndex
}

// changeList renders changes as "mailbox/folder:kinds@seq" in order.
func changeList(cs []mailcluster.MailChange) string {
	var out []string
	for _, c := range cs {
		var kinds []string
		for _, k := range c.Kinds {
			kinds = append(kinds, string(k))
		}
		out = append(out, fmt.Sprintf("%s/%s:%s@%d", c.Mailbox, c.Folder, strings.Join(kinds, ","), c.Seq))
	}
	return strings.Join(out, " ")
}

// TestApplyUsageReportFolderChanges: the folder changes a secondary
// reports become its record's changes, one per folder, in the
// transaction that applies the usage; a report sent again changes
// nothing.
func TestApplyUsageReportFolderChanges(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		svc, st := mustOpenMailPrimary(t)
		applyReport(t, svc, "n2", "e1",
			folderDelta(1, "alice", "INBOX", mailcluster.MailDelivered, 100, 1),
			folderDelta(2, "alice", "INBOX", mailcluster.MailFlags, 0, 0),
			folderDelta(3, "alice", "Sent", mailcluster.MailAppended, 40, 1),
			folderDelta(4, "alice", "INBOX", mailcluster.MailFlags, 0, 0),
			folderDelta(5, "bob", "INBOX", mailcluster.MailDelivered, 10, 1),
			folderDelta(6, "nobody", "INBOX", mailcluster.MailDelivered, 10, 1), // no such account: not told
		)
		m, _ := readMark(t, st, "n2")
		if m.Epoch != "e1" || m.Seq != 6 || m.From != 0 {
			t.Fatalf("mark = %+v", m)
		}
		if got, want := changeList(m.Changes), "alice/Sent:append@3 alice/INBOX:delivery,flags@4 bob/INBOX:delivery@5"; got != want {
			t.Fatalf("changes = %s, want %s", got, want)
		}
		local := mustLocal(svc)
		if u := local.Usage("example.com", "alice"); u.Bytes != 140 || u.Messages != 2 {
			t.Fatalf("alice's usage = %+v", u)
		}
	})
	t.Run("AppliedOnce", func(t *testing.T) {
		svc, st := mustOpenMailPrimary(t)
		deltas := []mailcluster.UsageDelta{folderDelta(1, "alice", "INBOX", mailcluster.MailDelivered, 100, 1), folderDelta(2, "alice", "INBOX", mailcluster.MailFlags, 0, 0)}
		applyReport(t, svc, "n2", "e1", deltas...)
		before, idx := readMark(t, st, "n2")
		applyReport(t, svc, "n2", "e1", deltas...) // the acknowledgement was lost: sent again
		after, idx2 := readMark(t, st, "n2")
		if idx2 != idx || changeList(after.Changes) != changeList(before.Changes) {
			t.Fatalf("a report sent again was applied again: %+v (index %d) after %+v (index %d)", after, idx2, before, idx)
		}
		if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 100 || u.Messages != 1 {
			t.Fatalf("usage = %+v, want it counted once", u)
		}
		// Partly new: only the new delta is applied and told.
		applyReport(t, svc, "n2", "e1", append(deltas, folderDelta(3, "alice", "Trash", mailcluster.MailAppended, 5, 1))...)
		m, _ := readMark(t, st, "n2")
		if got, want := changeList(m.Changes), "alice/INBOX:delivery,flags@2 alice/Trash:append@3"; got != want {
			t.Fatalf("changes = %s, want %s", got, want)
		}
		if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 105 || u.Messages != 2 {
			t.Fatalf("usage = %+v", u)
		}
	})
	t.Run("FlagsWriteNoUsage", func(t *testing.T) {
		svc, st := mustOpenMailPrimary(t)
		applyReport(t, svc, "n2", "e1", folderDelta(1, "alice", "INBOX", mailcluster.MailDelivered, 100, 1))
		u1, _ := st.Get(schema.Usage("example.com", "alice"))
		applyReport(t, svc, "n2", "e1", folderDelta(2, "alice", "INBOX", mailcluster.MailFlags, 0, 0))
		u2, _ := st.Get(schema.Usage("example.com", "alice"))
		if u2.ModifyIndex != u1.ModifyIndex {
			t.Fatal("a change of flags rewrote the usage record")
		}
		if m, _ := readMark(t, st, "n2"); m.Seq != 2 || changeList(m.Changes) != "alice/INBOX:delivery,flags@2" {
			t.Fatalf("mark = %+v", m)
		}
	})
	t.Run("KeepsLatest", func(t *testing.T) {
		// One report per folder: the record keeps the latest report's
		// changes and MarkChangesKept earlier ones; From says what is gone.
		svc, st := mustOpenMailPrimary(t)
		n := mailcluster.MarkChangesKept + 4
		for i := 1; i <= n; i++ {
			applyReport(t, svc, "n2", "e1", folderDelta(uint64(i), "alice", fmt.Sprintf("F%d", i), mailcluster.MailFolder, 0, 0))
		}
		m, _ := readMark(t, st, "n2")
		if len(m.Changes) != mailcluster.MarkChangesKept+1 {
			t.Fatalf("%d changes kept: %s", len(m.Changes), changeList(m.Changes))
		}
		if want := uint64(n - mailcluster.MarkChangesKept - 1); m.From != want || m.Changes[0].Seq != want+1 || m.Changes[len(m.Changes)-1].Seq != uint64(n) {
			t.Fatalf("from %d, changes %s; want from %d", m.From, changeList(m.Changes), want)
		}
		// A report with many folders keeps them all.
		var many []mailcluster.UsageDelta
		for i := range 40 {
			many = append(many, folderDelta(uint64(n+1+i), "bob", fmt.Sprintf("G%d", i), mailcluster.MailFolder, 0, 0))
		}
		applyReport(t, svc, "n2", "e1", many...)
		m, _ = readMark(t, st, "n2")
		if len(m.Changes) != 40+mailcluster.MarkChangesKept || m.From != uint64(n-mailcluster.MarkChangesKept) {
			t.Fatalf("from %d, %d changes", m.From, len(m.Changes))
		}
		// A new epoch (the node's outbox was made again) starts over.
		applyReport(t, svc, "n2", "e2", folderDelta(1, "alice", "INBOX", mailcluster.MailDelivered, 1, 1))
		if m, _ := readMark(t, st, "n2"); m.From != 0 || changeList(m.Changes) != "alice/INBOX:delivery@1" {
			t.Fatalf("mark of a new epoch = %+v", m)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		svc, _ := mustOpenMailPrimary(t)
		for _, d := range []mailcluster.UsageDelta{
			folderDelta(1, "alice", "INBOX", "", 1, 1),                                       // a folder without a kind
			folderDelta(1, "alice", "", mailcluster.MailFlags, 0, 0),                         // a kind without a folder
			folderDelta(1, "alice", "INBOX", "shuffle", 0, 0),                                // an unknown kind
			folderDelta(1, "alice", "a/b", mailcluster.MailFolder, 0, 0),                     // not a folder name
			folderDelta(1, "alice", "a\x01b", mailcluster.MailFolder, 0, 0),                  // a control character
			folderDelta(1, "alice", strings.Repeat("x", 2000), mailcluster.MailFolder, 0, 0), // too long
		} {
			_, err := svc.ApplyUsageReport(service.SystemContext(context.Background(), "outbox"), mailcluster.UsageReport{Node: "n2", Epoch: "e1", Deltas: []mailcluster.UsageDelta{d}})
			wantCode(t, err, mailcluster.EINVALID)
		}
	})
}

// steppedStore is a store whose notices of reports/ the test sends: a
// send returns once the follower waits for the next notice, so after two
// sends the follower has handled everything applied before the first.
type steppedStore struct {
	mailcluster.Store
	step chan struct{}
}

func (s *steppedStore) Notify(prefix string) (<-chan struct{}, func()) {
	if prefix == schema.PrefixReports {
		return s.step, func() {}
	}
	return s.Store.Notify(prefix)
}

// follower runs FollowMailChanges as node self over st and records what
// it tells.
type follower struct {
	st     *steppedStore
	told   []string // "mailbox/folder@seq"
	missed int
}

func startFollower(t *testing.T, st mailcluster.Store, self string) *follower {
	t.Helper()
	f := &follower{st: &steppedStore{Store: st, step: make(chan struct{})}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := service.New(f.st, mailcluster.StaticLeadership{Self: primaryRef}, log, service.Options{})
	local := mustLocal(svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		local.FollowMailChanges(ctx, self, func(c mailcluster.MailChange) {
			f.told = append(f.told, fmt.Sprintf("%s/%s@%d", c.Mailbox, c.Folder, c.Seq))
		}, func() { f.missed++ })
	}()
	t.Cleanup(func() { cancel(); <-done })
	f.st.step <- struct{}{} // it has read what was there at its start
	return f
}

// sync lets the follower handle everything applied so far and returns
// what it told since the last sync.
func (f *follower) sync() (told []string, missed int) {
	f.st.step <- struct{}{}
	f.st.step <- struct{}{}
	told, missed = f.told, f.missed
	f.told, f.missed = nil, 0
	return told, missed
}

// TestFollowMailChanges: a node tells its readers of the folder changes
// of the other nodes' reports, once each, never of its own, and says so
// when it fell too far behind to tell them all.
func TestFollowMailChanges(t *testing.T) {
	svc, st := mustOpenMailPrimary(t)
	applyReport(t, svc, "n2", "e1", folderDelta(1, "alice", "INBOX", mailcluster.MailDelivered, 10, 1))
	f := startFollower(t, st, "n1")
	if told, missed := f.sync(); len(told) != 0 || missed != 0 {
		t.Fatalf("changes before the start told: %v (missed %d)", told, missed)
	}

	applyReport(t, svc, "n2", "e1", folderDelta(2, "alice", "INBOX", mailcluster.MailFlags, 0, 0), folderDelta(3, "bob", "Sent", mailcluster.MailAppended, 5, 1))
	if told, missed := f.sync(); !slices.Equal(told, []string{"alice/INBOX@2", "bob/Sent@3"}) || missed != 0 {
		t.Fatalf("told %v (missed %d)", told, missed)
	}
	// Two reports between two reads: both told, the older change not again.
	applyReport(t, svc, "n2", "e1", folderDelta(4, "alice", "Trash", mailcluster.MailExpunged, -1, -1))
	applyReport(t, svc, "n3", "x1", folderDelta(1, "bob", "INBOX", mailcluster.MailDelivered, 5, 1))
	applyReport(t, svc, "n2", "e1", folderDelta(5, "alice", "INBOX", mailcluster.MailExpunged, -5, -1))
	told, missed := f.sync()
	slices.Sort(told)
	if !slices.Equal(told, []string{"alice/INBOX@5", "alice/Trash@4", "bob/INBOX@1"}) || missed != 0 {
		t.Fatalf("told %v (missed %d)", told, missed)
	}
	// Its own reports: its readers know already.
	applyReport(t, svc, "n1", "s1", folderDelta(1, "alice", "INBOX", mailcluster.MailAppended, 5, 1))
	if told, missed := f.sync(); len(told) != 0 || missed != 0 {
		t.Fatalf("own change told: %v (missed %d)", told, missed)
	}
	// Behind by more than a record keeps: told what is kept, and missed.
	for i := range mailcluster.MarkChangesKept + 3 {
		applyReport(t, svc, "n2", "e1", folderDelta(uint64(6+i), "alice", fmt.Sprintf("F%d", i), mailcluster.MailFolder, 0, 0))
	}
	told, missed = f.sync()
	if len(told) != mailcluster.MarkChangesKept+1 || missed != 1 {
		t.Fatalf("told %d changes (missed %d): %v", len(told), missed, told)
	}
}
