package mailstore_test

import (
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

// An APPEND takes its UID from the map without listing the folder: a
// message delivered meanwhile without a UID gets its own at the next
// Sync, after the appended one, and no UID is given twice.
func TestAppendBesideUnassignedDelivery(t *testing.T) {
	e := mustStoreEnv(t)
	s := e.node(t, mailstore.Options{})
	inbox := mustFolder(t, e, s, "INBOX")
	if _, _, err := inbox.Append(bg, strings.NewReader(testMessage(1)), "", time.Time{}, 1<<20); err != nil {
		t.Fatal(err)
	}
	snap, err := inbox.Sync(bg)
	if err != nil || len(snap.Messages) != 1 {
		t.Fatalf("first Sync: %v %v", snap, err)
	}
	first := snap.Messages[0].UID
	// A delivery lands in new/ with no UID yet.
	if err := s.Deliver(bg, []*mailcluster.Account{e.alice}, nil, strings.NewReader(testMessage(2)), 1<<20); err != nil {
		t.Fatal(err)
	}
	_, appended, err := inbox.Append(bg, strings.NewReader(testMessage(3)), "", time.Time{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if appended <= first {
		t.Fatalf("appended UID %d not above %d", appended, first)
	}
	snap, err = inbox.Sync(bg)
	if err != nil || len(snap.Messages) != 3 {
		t.Fatalf("Sync after: %+v %v", snap, err)
	}
	seen := map[uint32]bool{}
	for _, m := range snap.Messages {
		if seen[m.UID] {
			t.Fatalf("UID %d given twice: %+v", m.UID, snap.Messages)
		}
		seen[m.UID] = true
	}
	if !seen[appended] || snap.UIDNext <= appended {
		t.Fatalf("appended UID %d missing or UIDNEXT %d not above it", appended, snap.UIDNext)
	}
}
