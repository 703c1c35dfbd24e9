package service_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
)

// TestReportNodeNames: a usage report names its node with 1-63 letters,
// digits, dots, underscores or hyphens; anything else is refused before it
// is applied (the name becomes a key of the replicated state).
func TestReportNodeNames(t *testing.T) {
	svc, _ := mustOpenMailPrimary(t)
	ctx := service.SystemContext(context.Background(), "outbox")
	report := func(node string) error {
		_, err := svc.ApplyUsageReport(ctx, mailcluster.UsageReport{Node: node, Epoch: "e1",
			Deltas: []mailcluster.UsageDelta{{Seq: 1, Domain: "example.com", Mailbox: "alice", Bytes: 1, Messages: 1}}})
		return err
	}
	for _, ok := range []string{"a", "z", "A", "Z", "0", "9", "node-1.b_c", strings.Repeat("n", 63)} {
		if err := report(ok); err != nil {
			t.Errorf("node %q: %v", ok, err)
		}
	}
	// Each character just outside a range of the class, and the length edge.
	for _, bad := range []string{"", strings.Repeat("n", 64), "a`", "a{", "a@", "a[", "a/", "a:", "a b", "a\x00", "é"} {
		wantCode(t, report(bad), mailcluster.EINVALID)
	}
}

// TestClusterLogLimit: the cluster log's limit is 0 (the default) to 1000.
func TestClusterLogLimit(t *testing.T) {
	svc, _ := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	for _, limit := range []int{0, 1, 1000} {
		if _, err := svc.ClusterLog(ctx, mailcluster.ClusterLogFilter{Limit: limit}); err != nil {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
	for _, limit := range []int{-1, 1001} {
		_, err := svc.ClusterLog(ctx, mailcluster.ClusterLogFilter{Limit: limit})
		wantCode(t, err, mailcluster.EINVALID)
	}
}
