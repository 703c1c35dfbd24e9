package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
)

// TestOutboxFolderChanges: folder changes travel in the usage reports;
// changes of one folder that move no usage are sent once per batch (the
// latest), they count as no pending usage, and the primary records the
// folders changed in the node's mark.
func TestOutboxFolderChanges(t *testing.T) {
	var mu sync.Mutex
	var sent []mailcluster.UsageReport
	svc, st, ob := mustPrimaryOutbox(t, "n2", func(r mailcluster.UsageReport) {
		mu.Lock()
		sent = append(sent, r)
		mu.Unlock()
	})
	change := func(folder string, kind mailcluster.MailChangeKind, bytes, messages int64) mailcluster.UsageDelta {
		return mailcluster.UsageDelta{Domain: "example.com", Mailbox: "alice", Bytes: bytes, Messages: messages, At: time.Now(), Folder: folder, Kind: kind}
	}
	// Queued before the sender runs, so that they go in one batch.
	for _, d := range []mailcluster.UsageDelta{
		change("INBOX", mailcluster.MailDelivered, 100, 1), // seq 1
		change("INBOX", mailcluster.MailFlags, 0, 0),       // 2
		change("Sent", mailcluster.MailFlags, 0, 0),        // 3
		change("INBOX", mailcluster.MailFlags, 0, 0),       // 4
		change("INBOX", mailcluster.MailFlags, 0, 0),       // 5
		change("Sent", mailcluster.MailExpunged, -10, -1),  // 6
	} {
		if err := ob.Report(d); err != nil {
			t.Fatal(err)
		}
	}
	if b, m := ob.Pending("example.com", "alice"); b != 90 || m != 0 {
		t.Fatalf("pending = %d, %d; want 90, 0", b, m)
	}
	stop := runOutbox(t, ob)
	defer stop()
	waitFor(t, func() bool { return ob.Queued() == 0 })

	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("%d reports sent, want 1", len(sent))
	}
	var got []string
	for _, d := range sent[0].Deltas {
		got = append(got, fmt.Sprintf("%s:%s@%d", d.Folder, d.Kind, d.Seq))
	}
	if want := "INBOX:delivery@1 Sent:flags@3 INBOX:flags@5 Sent:expunge@6"; strings.Join(got, " ") != want {
		t.Fatalf("report = %s, want %s", strings.Join(got, " "), want)
	}
	kv, ok := st.Get(schema.Report("n2"))
	if !ok {
		t.Fatal("no mark of n2")
	}
	var mark mailcluster.ReportMark
	if err := json.Unmarshal(kv.Value, &mark); err != nil {
		t.Fatal(err)
	}
	if mark.Seq != 6 || len(mark.Changes) != 2 || mark.Changes[0].Folder != "INBOX" || mark.Changes[0].Seq != 5 ||
		mark.Changes[1].Folder != "Sent" || mark.Changes[1].Seq != 6 {
		t.Fatalf("mark = %+v", mark)
	}
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 90 || u.Messages != 0 {
		t.Fatalf("usage = %+v", u)
	}
}
