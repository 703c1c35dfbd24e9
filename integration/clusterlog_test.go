package integration_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/internal/harness"
)

// logEntry is one entry of GET /api/v1/cluster/log.
type logEntry struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Event   string            `json:"event"`
	Node    string            `json:"node"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

// ownClusterLog reads node n's own cluster log through the API, oldest
// first; a node that does not answer gives nil.
func ownClusterLog(t *testing.T, n *Node) []logEntry {
	t.Helper()
	code, body, err := tryDo("GET", n.BaseURL+"/api/v1/cluster/log?limit=1000", harness.AdminUser, adminPW, "", "")
	if err != nil || code != 200 {
		return nil
	}
	var out struct{ Entries []logEntry }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("cluster log: %v\n%s", err, body)
	}
	return out.Entries
}

// findEvent returns the first entry of n's cluster log of kind ev, recorded
// by n itself, for which match (nil: any) holds.
func findEvent(t *testing.T, n *Node, name string, ev mailcluster.EventKind, match func(logEntry) bool) (logEntry, bool) {
	t.Helper()
	for _, e := range ownClusterLog(t, n) {
		if e.Event == string(ev) && e.Node == name && (match == nil || match(e)) {
			return e, true
		}
	}
	return logEntry{}, false
}

// awaitEvent waits (at most 30 s) until n's cluster log has an entry of
// kind ev for which match holds, and returns it.
func awaitEvent(t *testing.T, n *Node, name string, ev mailcluster.EventKind, match func(logEntry) bool) logEntry {
	t.Helper()
	var got logEntry
	ok := harness.WaitFor(30*time.Second, func() bool {
		var found bool
		got, found = findEvent(t, n, name, ev, match)
		return found
	})
	if !ok {
		t.Fatalf("%s: no %q event in its cluster log:\n%s", name, ev, n.Events(60))
	}
	return got
}

func fieldIs(key, value string) func(logEntry) bool {
	return func(e logEntry) bool { return e.Fields[key] == value }
}

// TestClusterLogRealEvents starts a real three-node cluster and reads each
// node's cluster log through the API: the events the nodes record
// themselves (not inserted by the test) appear where the README says.
func TestClusterLogRealEvents(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(30 * time.Second)
	primary, pname := c.Nodes[p], fmt.Sprintf("n%d", p)
	secondaries := c.Secondaries(p)
	if len(secondaries) != 2 {
		t.Fatalf("secondaries %v", secondaries)
	}

	t.Run("Join", func(t *testing.T) {
		for i, n := range c.Nodes {
			name := fmt.Sprintf("n%d", i)
			e := awaitEvent(t, n, name, mailcluster.EventJoin, fieldIs("cluster", c.Name))
			if e.Fields["version"] == "" {
				t.Errorf("%s: join without version: %+v", name, e)
			}
		}
	})
	t.Run("Election", func(t *testing.T) {
		awaitEvent(t, primary, pname, mailcluster.EventElection, nil)
	})
	t.Run("Registration", func(t *testing.T) {
		for _, s := range secondaries {
			name := fmt.Sprintf("n%d", s)
			awaitEvent(t, primary, pname, mailcluster.EventRegistration, fieldIs("node", name))
			awaitEvent(t, c.Nodes[s], name, mailcluster.EventRegistered, nil)
			// A secondary was never elected: its registered event is the
			// positive signal that its log holds the start-up events.
			if e, ok := findEvent(t, c.Nodes[s], name, mailcluster.EventElection, nil); ok {
				t.Errorf("%s never was primary but logged %+v", name, e)
			}
		}
	})

	t.Run("ReplicationApplied", func(t *testing.T) {
		// The event is throttled (at most one per 10 s per node): write
		// once a second, bounded, until every secondary logs an index at or
		// after the first write.
		var first uint64
		done := map[int]bool{}
		applied := func() bool {
			for _, s := range secondaries {
				name := fmt.Sprintf("n%d", s)
				_, ok := findEvent(t, c.Nodes[s], name, mailcluster.EventReplicationApplied, func(e logEntry) bool {
					idx, err := strconv.ParseUint(e.Fields["index"], 10, 64)
					return err == nil && idx >= first && e.Fields["keys"] != "" && e.Fields["keys"] != "0"
				})
				if ok {
					done[s] = true
				}
			}
			return len(done) == len(secondaries)
		}
		for i := 0; i < 40; i++ {
			domain := fmt.Sprintf("repl%d.example", i)
			if code, body := admin(t, primary, "POST", "/api/v1/domains", `{"name":"`+domain+`"}`); code != 201 {
				t.Fatalf("create %s: %d %s", domain, code, body)
			}
			if first == 0 {
				h, ok := primary.Health()
				if !ok || h.Index == 0 {
					t.Fatalf("primary health %+v", h)
				}
				first = h.Index
			}
			// One write a second at most, until both secondaries log it.
			if harness.WaitFor(time.Second, applied) {
				break
			}
		}
		for _, s := range secondaries {
			if !done[s] {
				t.Errorf("n%d: no replication-applied at index >= %d:\n%s", s, first, c.Nodes[s].Events(40))
			}
		}
	})

	t.Run("AccountThawed", func(t *testing.T) {
		if code, body := admin(t, primary, "POST", "/api/v1/domains", `{"name":"thaw.example"}`); code != 201 {
			t.Fatalf("create domain: %d %s", code, body)
		}
		if code, body := admin(t, primary, "POST", "/api/v1/domains/thaw.example/accounts",
			`{"mailbox":"bob","password":"bob-pass-123"}`); code != 201 {
			t.Fatalf("create account: %d %s", code, body)
		}
		if code, body := admin(t, primary, "POST", "/api/v1/screening/accounts", `{"address":"bob@thaw.example","reason":"log test"}`); code != 201 {
			t.Fatalf("freeze: %d %s", code, body)
		}
		awaitEvent(t, primary, pname, mailcluster.EventAccountFrozen, fieldIs("address", "bob@thaw.example"))
		if _, ok := findEvent(t, primary, pname, mailcluster.EventAccountThawed, fieldIs("address", "bob@thaw.example")); ok {
			t.Fatal("account-thawed logged before the thaw")
		}
		if code, body := admin(t, primary, "DELETE", "/api/v1/screening/accounts/bob@thaw.example", ""); code != 204 {
			t.Fatalf("thaw: %d %s", code, body)
		}
		awaitEvent(t, primary, pname, mailcluster.EventAccountThawed, fieldIs("address", "bob@thaw.example"))
	})

	t.Run("StepDownAndLeave", func(t *testing.T) {
		stopped := time.Now()
		primary.Stop()
		// Another node takes over and says so.
		next := c.WaitPrimary(30 * time.Second)
		nname := fmt.Sprintf("n%d", next)
		awaitEvent(t, c.Nodes[next], nname, mailcluster.EventElection, func(e logEntry) bool { return !e.Time.Before(stopped) })
		// The stopped node's log is read through its API once it runs
		// again: the step-down and the leave precede its second join.
		primary.Restart(t)
		rejoin := awaitEvent(t, primary, pname, mailcluster.EventJoin, func(e logEntry) bool { return e.Time.After(stopped) })
		for _, ev := range []mailcluster.EventKind{mailcluster.EventStepDown, mailcluster.EventLeave} {
			e := awaitEvent(t, primary, pname, ev, func(e logEntry) bool { return !e.Time.Before(stopped) })
			if e.Time.After(rejoin.Time) {
				t.Errorf("%s at %v, after the restart's join at %v", ev, e.Time, rejoin.Time)
			}
		}
		if e, _ := findEvent(t, primary, pname, mailcluster.EventStepDown, func(e logEntry) bool { return !e.Time.Before(stopped) }); e.Level != "warn" {
			t.Errorf("step-down at level %q", e.Level)
		}
	})
}
