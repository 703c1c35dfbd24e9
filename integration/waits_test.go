package integration_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"mailcluster"
)

// Negative checks ("X did not happen") first wait for a positive signal
// that the system has moved past the point where X would have happened; a
// sleep proves nothing on a loaded machine.

// waitTimeout bounds every wait for an event: an upper limit that only
// matters when something is wrong.
const waitTimeout = 10 * time.Second

// seenPrimary reads n's /health and returns the name of the primary it
// follows ("" when it sees none) and whether it answered.
func seenPrimary(n *Node) (string, bool) {
	code, body, err := tryDo("GET", n.BaseURL+"/health", "", "", "", "")
	if err != nil || code == 0 {
		return "", false
	}
	var h struct {
		Primary *struct {
			Name string `json:"name"`
		} `json:"primary"`
	}
	if json.Unmarshal([]byte(body), &h) != nil {
		return "", false
	}
	if h.Primary == nil {
		return "", true
	}
	return h.Primary.Name, true
}

// awaitNoPrimarySeen waits until n reports that it follows no primary: its
// election has read the primary key free, the point at which an eligible
// node takes it.
func awaitNoPrimarySeen(t *testing.T, n *Node, what string) {
	t.Helper()
	eventually(t, waitTimeout, what+" sees the primary key free", func() bool {
		if role(n) == "primary" {
			t.Fatalf("%s became the primary", what)
		}
		name, ok := seenPrimary(n)
		return ok && name == ""
	})
}

// awaitSettled waits until every live node other than p reports the role
// secondary and follows p's name: each has read the primary key held.
func awaitSettled(t *testing.T, c *Cluster, p int) {
	t.Helper()
	want := fmt.Sprintf("n%d", p)
	for _, i := range c.Secondaries(p) {
		n := c.Nodes[i]
		eventually(t, waitTimeout, fmt.Sprintf("n%d follows %s", i, want), func() bool {
			name, ok := seenPrimary(n)
			return ok && role(n) == "secondary" && name == want
		})
	}
}

// awaitIndex waits until every node has applied at least index.
func awaitIndex(t *testing.T, index uint64, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, waitTimeout, fmt.Sprintf("%s applies index %d", n.BaseURL, index), func() bool {
			h, ok := n.Health()
			return ok && h.Index >= index
		})
	}
}

// neverElected fails the test when n's own cluster log records that the
// node called name became the primary.
func neverElected(t *testing.T, n *Node, name string) {
	t.Helper()
	entries := ownClusterLog(t, n)
	if len(entries) == 0 {
		t.Fatalf("%s: its cluster log cannot be read", name)
	}
	for _, e := range entries {
		if e.Event == string(mailcluster.EventElection) && e.Node == name {
			t.Fatalf("%s became the primary at %s: %s", name, e.Time, e.Message)
		}
	}
	if r := role(n); r == "primary" {
		t.Fatalf("%s is the primary", name)
	}
}

// awaitReplicationLogged waits until every secondary of c (primary p) has
// logged a replication-applied entry at index or later: the writes up to
// index are applied and their log entries written.
func awaitReplicationLogged(t *testing.T, c *Cluster, p int, index uint64) {
	t.Helper()
	for _, s := range c.Secondaries(p) {
		name := fmt.Sprintf("n%d", s)
		awaitEvent(t, c.Nodes[s], name, mailcluster.EventReplicationApplied, func(e logEntry) bool {
			idx, err := strconv.ParseUint(e.Fields["index"], 10, 64)
			return err == nil && idx >= index
		})
	}
}
