package integration_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// TestClusterInternalTLS starts two nodes with HTTPS listeners: each
// advertises its internal API there (Consul meta internal_url); before the
// cluster has a certificate the nodes call each other over plain HTTP
// (signed), and once one is imported over HTTPS, accepting only that
// certificate. The access log names the calling node, "/tls" over HTTPS.
func TestClusterInternalTLS(t *testing.T) {
	https := []string{"--https-addr", "127.0.0.1:0"}
	c := StartCluster(t, harness.SharedConsul(t), 2, map[int][]string{0: https, 1: https})
	p := c.WaitPrimary(10 * time.Second)
	s := 1 - p
	primary, secondary := c.Nodes[p], c.Nodes[s]

	code, body := do(t, "GET", "http://"+c.Consul.Addr+"/v1/health/service/mailcluster?tag=cluster-"+c.Name, "", "", "", "")
	var entries []struct {
		Service struct{ Meta map[string]string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &entries) != nil || len(entries) != 2 {
		t.Fatalf("consul: %d %s", code, body)
	}
	for _, e := range entries {
		name := e.Service.Meta["node_name"]
		want := "https://" + c.Nodes[map[string]int{"n0": 0, "n1": 1}[name]].HTTPS
		if got := e.Service.Meta["internal_url"]; got != want {
			t.Errorf("%s advertises internal_url %q, want %q", name, got, want)
		}
	}

	readLog := func() bool {
		code, _ := admin(t, primary, "GET", fmt.Sprintf("/api/v1/cluster/log?node=n%d", s), "")
		return code == 200
	}
	eventually(t, 10*time.Second, "the primary reads the secondary's log over plain HTTP", func() bool {
		return readLog() && strings.Contains(secondary.Stderr(), fmt.Sprintf("caller=node:n%d\n", p))
	})

	importCert(t, primary, "mail", newTestCert(t, "mail.example.test"))
	eventually(t, 20*time.Second, "the primary reads the secondary's log over HTTPS", func() bool {
		return readLog() && strings.Contains(secondary.Stderr(), fmt.Sprintf("caller=node:n%d/tls", p))
	})
}
