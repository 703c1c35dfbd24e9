package mailstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"mailcluster"
	"mailcluster/mailstore"
)

// TestOverQuota checks the quota rule at its edges: usage is what the
// primary published plus what this node reported and is not yet
// published; a message that brings usage exactly to the quota fits, one
// byte or message more does not; with nothing to add the question is
// whether the mailbox is already full (at the quota counts as full).
func TestOverQuota(t *testing.T) {
	const quotaBytes, quotaMessages = 1000, 10
	tests := []struct {
		name                  string
		pubBytes, pubMessages int64 // published by the primary
		pendBytes, pendMsgs   int64 // reported here, not yet published
		addBytes, addMessages int64
		quotaBytes, quotaMsgs int64
		want                  bool
	}{
		{name: "Empty", addBytes: 100, addMessages: 1, quotaBytes: quotaBytes, quotaMsgs: quotaMessages},
		{name: "BytesExactlyToQuota", pubBytes: 900, addBytes: 100, addMessages: 1, quotaBytes: quotaBytes},
		{name: "BytesOneOver", pubBytes: 901, addBytes: 100, addMessages: 1, quotaBytes: quotaBytes, want: true},
		{name: "BytesPendingCounts", pubBytes: 600, pendBytes: 301, addBytes: 100, addMessages: 1, quotaBytes: quotaBytes, want: true},
		{name: "BytesPendingFits", pubBytes: 600, pendBytes: 300, addBytes: 100, addMessages: 1, quotaBytes: quotaBytes},
		{name: "MessagesExactlyToQuota", pubMessages: 9, addBytes: 1, addMessages: 1, quotaMsgs: quotaMessages},
		{name: "MessagesOneOver", pubMessages: 10, addBytes: 1, addMessages: 1, quotaMsgs: quotaMessages, want: true},
		{name: "MessagesPendingCounts", pubMessages: 5, pendMsgs: 5, addBytes: 1, addMessages: 1, quotaMsgs: quotaMessages, want: true},
		{name: "MessagesPendingFits", pubMessages: 5, pendMsgs: 4, addBytes: 1, addMessages: 1, quotaMsgs: quotaMessages},
		{name: "FullBytesNothingAdded", pubBytes: 1000, quotaBytes: quotaBytes, want: true},
		{name: "AlmostFullBytesNothingAdded", pubBytes: 999, quotaBytes: quotaBytes},
		{name: "FullMessagesNothingAdded", pubMessages: 10, quotaMsgs: quotaMessages, want: true},
		{name: "AlmostFullMessagesNothingAdded", pubMessages: 9, quotaMsgs: quotaMessages},
		{name: "NoQuota", pubBytes: 1 << 40, pubMessages: 1 << 30, addBytes: 1 << 30, addMessages: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &mailcluster.Account{Domain: "example.com", Mailbox: "frank", QuotaBytes: tt.quotaBytes, QuotaMessages: tt.quotaMsgs}
			dir := &fakeDir{usage: map[string]mailcluster.Usage{"frank@example.com": {Bytes: tt.pubBytes, Messages: tt.pubMessages}}}
			rep := &fakeRep{}
			if tt.pendBytes != 0 || tt.pendMsgs != 0 {
				rep.deltas = []mailcluster.UsageDelta{{Domain: "example.com", Mailbox: "frank", Bytes: tt.pendBytes, Messages: tt.pendMsgs}}
			}
			s := mailstore.NewStore(dir, rep, slog.New(slog.DiscardHandler), mailstore.Options{})
			if got := s.OverQuota(a, tt.addBytes, tt.addMessages); got != tt.want {
				t.Fatalf("OverQuota(+%d bytes, +%d messages) = %v, want %v", tt.addBytes, tt.addMessages, got, tt.want)
			}
		})
	}
}

// TestListLimit: a page of the message list holds 1 to 1000 messages (0:
// the default); other limits are refused.
func TestListLimit(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	for _, limit := range []int{0, 1, 1000} {
		if _, _, err := s.List(e.alice, limit, ""); err != nil {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
	for _, limit := range []int{-1, 1001} {
		if _, _, err := s.List(e.alice, limit, ""); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
			t.Errorf("limit %d: %v, want %s", limit, err, mailcluster.EINVALID)
		}
	}
}

// TestFolderLimit: a mail user cannot create more than MaxFolders folders
// (each is a directory on the shared path); the refused one is not made.
func TestFolderLimit(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	fs, err := s.Folders(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	// MaxFolders-1 folders made on disk, as another tool would.
	for i := range mailstore.MaxFolders - 1 {
		if err := os.MkdirAll(filepath.Join(e.alice.MailboxPath, fmt.Sprintf(".f%d", i), "cur"), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Create(context.Background(), "last"); err != nil {
		t.Fatalf("folder %d: %v", mailstore.MaxFolders, err)
	}
	err = fs.Create(context.Background(), "one-more")
	if mailcluster.ErrorCode(err) != mailcluster.ETOOLARGE {
		t.Fatalf("folder %d: %v, want %s", mailstore.MaxFolders+1, err, mailcluster.ETOOLARGE)
	}
	if _, err := os.Lstat(filepath.Join(e.alice.MailboxPath, ".one-more")); !os.IsNotExist(err) {
		t.Fatalf("the refused folder exists: %v", err)
	}
}

// TestSubscriptionLimit: subscriptions (also to folders that do not
// exist) stop at MaxSubscriptions; removing one makes room again.
func TestSubscriptionLimit(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	fs, err := s.Folders(e.alice)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range mailstore.MaxSubscriptions {
		if err := fs.Subscribe(ctx, fmt.Sprintf("s%d", i), true); err != nil {
			t.Fatalf("subscription %d: %v", i+1, err)
		}
	}
	if err := fs.Subscribe(ctx, "one-more", true); mailcluster.ErrorCode(err) != mailcluster.ETOOLARGE {
		t.Fatalf("subscription %d: %v, want %s", mailstore.MaxSubscriptions+1, err, mailcluster.ETOOLARGE)
	}
	if err := fs.Subscribe(ctx, "s0", false); err != nil {
		t.Fatal(err)
	}
	if err := fs.Subscribe(ctx, "one-more", true); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
	subs, err := fs.Subscriptions()
	if err != nil || len(subs) != mailstore.MaxSubscriptions {
		t.Fatalf("%d subscriptions, %v", len(subs), err)
	}
}

// applyingRep is a Reporter with nothing pending whose first Pending call
// meets the primary applying a report: the published usage becomes after
// during the call, and the report's mark (which the call reads) already
// covers it.
type applyingRep struct {
	dir   *fakeDir
	key   string
	after mailcluster.Usage
	calls int
}

func (r *applyingRep) Report(...mailcluster.UsageDelta) error { return nil }

func (r *applyingRep) Pending(domain, mailbox string) (bytes, messages int64) {
	r.calls++
	if r.calls == 1 {
		r.dir.mu.Lock()
		r.dir.usage[r.key] = r.after
		r.dir.mu.Unlock()
	}
	return 0, 0
}

// A mailbox's usage is published usage plus pending, read at two moments:
// a report applied between them is counted once, whether it added usage
// (not missed) or took usage away (not counted twice).
func TestUsageReadAcrossAnApply(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after mailcluster.Usage // published before and after the apply
	}{
		{"Added", mailcluster.Usage{Bytes: 100, Messages: 1}, mailcluster.Usage{Bytes: 600, Messages: 2}},
		{"TakenAway", mailcluster.Usage{Bytes: 2797, Messages: 1}, mailcluster.Usage{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustStoreEnv(t)
			e.dir.usage["alice@example.com"] = tc.before
			rep := &applyingRep{dir: e.dir, key: "alice@example.com", after: tc.after}
			s := mailstore.NewStore(e.dir, rep, slog.New(slog.DiscardHandler), mailstore.Options{})
			if b, m := s.Usage(e.alice); b != tc.after.Bytes || m != tc.after.Messages {
				t.Errorf("usage = %d bytes, %d messages; want %d, %d", b, m, tc.after.Bytes, tc.after.Messages)
			}
		})
	}
}
