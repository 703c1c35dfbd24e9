package cluster_test

import (
	"encoding/json"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
)

// TestOutboxPendingFollowsTheMark: with the replicated state as Store, a
// delta stops being pending once the primary's mark shows it applied, at
// every new version of the mark (the mark is decoded once per version).
func TestOutboxPendingFollowsTheMark(t *testing.T) {
	_, st, ob := mustPrimaryOutbox(t, "n2", nil)
	stop := runOutbox(t, ob)
	defer stop()
	for round, bytes := range []int64{10, 20, 30} {
		d := mailcluster.UsageDelta{Domain: "example.com", Mailbox: "alice", Bytes: bytes, Messages: 1, At: time.Now(),
			Folder: "INBOX", Kind: mailcluster.MailDelivered}
		if err := ob.Report(d); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return ob.Queued() == 0 })
		waitFor(t, func() bool {
			b, m := ob.Pending("example.com", "alice")
			return b == 0 && m == 0
		})
		kv, ok := st.Get(schema.Report("n2"))
		var mark mailcluster.ReportMark
		if !ok || json.Unmarshal(kv.Value, &mark) != nil || mark.Seq != uint64(round+1) {
			t.Fatalf("round %d: the primary's mark is %+v (found %v)", round, mark, ok)
		}
	}
}
