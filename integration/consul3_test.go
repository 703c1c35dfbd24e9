package integration_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// writeDirect creates a domain on one node; code 0 when no answer came.
func writeDirect(n *Node, name string) (int, time.Duration) {
	start := time.Now()
	code, _ := postDomain(&http.Client{Timeout: 15 * time.Second}, n.BaseURL, name)
	return code, time.Since(start)
}

// writeViaPrimary creates a domain through whichever of nodes answers
// /health/primary with 200; code 0 when none does or no answer came.
func writeViaPrimary(nodes []*Node, name string) int {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.BaseURL)
	}
	u := findPrimary(urls, 500*time.Millisecond)
	if u == "" {
		return 0
	}
	code, _ := postDomain(&http.Client{Timeout: 15 * time.Second}, u, name)
	return code
}

// TestFaultConsulServers runs one mailcluster node per Consul server (node
// i uses agent i) and takes Consul servers away.
//
// Which servers are stopped: a node whose own agent is stopped loses Consul
// altogether (it keeps serving reads from its snapshot but cannot write or
// follow), so the assertions are about the nodes attached to surviving
// agents. The test first moves the mailcluster primary (switchover) away
// from the node attached to the Raft leader, then stops
//  1. the Raft leader: the worst single loss (a Raft election) that does
//     not also take the mailcluster primary's own agent away; writes through
//     the primary work again within a few seconds and reads never stop;
//  2. the other server not attached to the mailcluster primary: quorum is
//     lost; writes on every node answer 503, reads go on. How fast depends
//     on where step 1's Raft election landed: when the primary's own agent
//     is the Raft leader, it loses its leadership and holds each request
//     for Consul's RPC hold timeout (7 s) before the 503, and the node still
//     reports itself primary meanwhile (it cannot tell that its agent has no
//     leader until its own watch fails); otherwise the 503 is immediate;
//  3. then both stopped servers are started again (same data dirs and
//     ports): writes succeed again with no manual step, and the nodes
//     attached to them catch up.
func TestFaultConsulServers(t *testing.T) {
	testStart := time.Now()
	cs := harness.StartConsulServers(t)
	t.Logf("three Consul servers up after %s, leader it-consul-%d", time.Since(testStart).Round(time.Millisecond), cs.Leader(0))
	extra := map[int][]string{}
	for i, a := range cs.Agents {
		extra[i] = []string{"--consul-addr", a.Addr}
	}
	c := StartCluster(t, cs.Agents[0], 3, extra)
	p := c.WaitPrimary(10 * time.Second)
	leader := cs.Leader(0)
	if leader < 0 {
		t.Fatal("no Raft leader")
	}
	if leader == p {
		target := (p + 1) % 3
		eventually(t, 10*time.Second, "all nodes healthy members", func() bool {
			code, body := admin(t, c.Nodes[p], "GET", "/api/v1/cluster", "")
			return code == 200 && strings.Count(body, `"healthy":true`) == 3
		})
		if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/cluster/switchover", fmt.Sprintf(`{"target":"n%d"}`, target)); code != 200 && code != 202 {
			t.Fatalf("switchover: %d %s", code, body)
		}
		eventually(t, waitTimeout, "switchover", func() bool { ps := c.Primaries(); return len(ps) == 1 && ps[0] == target })
		p = target
	}
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"before.test"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("replicated to n%d", i), func() bool {
			code, _ := admin(t, n, "GET", "/api/v1/domains/before.test", "")
			return code == 200
		})
	}
	t.Logf("mailcluster primary n%d; Raft leader it-consul-%d", p, leader)

	// 1. Stop the Raft leader (attached to a secondary).
	if l := cs.Leader(p); l >= 0 && l != p {
		leader = l // in case the leadership moved meanwhile
	}
	first := leader
	wasLeader := cs.Leader(p) == first
	survivors := []*Node{}
	for i, n := range c.Nodes {
		if i != first {
			survivors = append(survivors, n)
		}
	}
	stopAt := time.Now()
	cs.Agents[first].Stop()
	stopped := time.Since(stopAt)
	var acked []string
	fails := map[int]int{}
	var gap time.Duration
	for i := 0; ; i++ {
		name := fmt.Sprintf("one-down-%03d.test", i)
		if code := writeViaPrimary(survivors, name); code == 201 {
			gap = time.Since(stopAt)
			acked = append(acked, name)
			break
		} else {
			fails[code]++
		}
		if time.Since(stopAt) > 20*time.Second || i > 2000 {
			t.Fatalf("no write succeeded within 20s of losing one Consul server (failures by status: %v)", fails)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("one Consul server down (it-consul-%d, Raft leader: %v; stopped in %s): the first write succeeded %s after the stop, %d attempts failed before (by status, 0 = no primary/no answer: %v); new Raft leader it-consul-%d",
		first, wasLeader, stopped.Round(time.Millisecond), gap.Round(time.Millisecond), sumCounts(fails), fails, cs.Leader(p))
	// After the re-election writes go on. A leaderless Consul may block its
	// agents' TTL updates for longer than the session TTL (1 s); then the
	// primary's session is invalidated once Consul has a leader again, and
	// a second, short mailcluster election follows. So each of 20 writes
	// is retried through whichever node is primary for up to 5 s.
	electionsBefore := electionCount(c)
	retried := map[int]int{}
	okStart := time.Now()
	for i := range 20 {
		deadline := time.Now().Add(5 * time.Second)
		for attempt := 0; ; attempt++ {
			name := fmt.Sprintf("one-down-ok-%03d-%d.test", i, attempt)
			code := writeViaPrimary(survivors, name)
			if code == 201 {
				acked = append(acked, name)
				break
			}
			retried[code]++
			if time.Now().After(deadline) || attempt > 200 {
				t.Fatalf("write %d with one Consul server down: no success within 5s (failed attempts by status: %v)", i, retried)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("20 more writes with one Consul server down took %s; failed attempts before them (by status): %v; mailcluster elections meanwhile: %d",
		time.Since(okStart).Round(time.Millisecond), retried, electionCount(c)-electionsBefore)
	for _, n := range survivors {
		took := eventually(t, waitTimeout, "writes replicated to "+n.BaseURL, func() bool {
			have, ok := domainSet(n)
			return ok && !slices.ContainsFunc(acked, func(a string) bool { return !have[a] })
		})
		t.Logf("%d writes made with one server down are on %s after %s", len(acked), n.BaseURL, took.Round(time.Millisecond))
	}
	if code, _ := admin(t, c.Nodes[first], "GET", "/api/v1/domains/before.test", ""); code != 200 {
		t.Fatalf("read on n%d (its Consul server stopped): %d", first, code)
	}

	// 2. Stop a second server, the one not attached to the primary: no quorum.
	p = c.WaitPrimary(5 * time.Second)
	second := 3 - p - first
	if second == p || second == first {
		t.Fatalf("primary n%d, first stopped %d", p, first)
	}
	primary := c.Nodes[p]
	raftLeader := cs.Leader(p)
	lostAt := time.Now()
	cs.Agents[second].Stop()
	var early []string // acknowledged before the primary noticed
	var to503 time.Duration
	var first503 string // the answer to the first refused write
	for i := 0; ; i++ {
		name := fmt.Sprintf("no-quorum-%03d.test", i)
		start := time.Now()
		code, body, _ := tryDo("POST", primary.BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "application/json", `{"name":"`+name+`"}`)
		took := time.Since(start)
		if code == 201 {
			early = append(early, name)
		}
		if code == 503 {
			first503 = body
			to503 = time.Since(lostAt)
			t.Logf("quorum lost (it-consul-%d and it-consul-%d down; the Raft leader was it-consul-%d): the first 503 came %s after the stop (that write took %s); %d writes acknowledged before",
				first, second, raftLeader, to503.Round(time.Millisecond), took.Round(time.Millisecond), len(early))
			break
		}
		if time.Since(lostAt) > 20*time.Second || i > 2000 {
			t.Fatalf("writes on the primary's node still not refused with 503 20s after losing quorum (last %d)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	acked = append(acked, early...)
	refused503 := []string{fmt.Sprintf("no-quorum-%03d.test", len(early))}
	// Five writes at once on the primary's node and one on each other node:
	// every one is refused with 503. On the primary's node each waits for
	// Consul's RPC hold timeout (7 s by default) before the refusal: the
	// node still holds a session that Consul cannot confirm or invalidate.
	type outcome struct {
		node, code int
		took       time.Duration
		name       string
	}
	var (
		omu      sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	for k, target := range []int{p, p, p, p, p, first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("no-quorum-late-%d.test", k)
			code, took := writeDirect(c.Nodes[target], name)
			omu.Lock()
			outcomes = append(outcomes, outcome{target, code, took, name})
			omu.Unlock()
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for _, o := range outcomes {
		t.Logf("without quorum: a write on n%d answered %d after %s", o.node, o.code, o.took.Round(time.Millisecond))
		// A secondary that has not yet noticed that its agent is gone may
		// still name the last primary it knew (403 read-only): refused all
		// the same. The primary's node must answer 503.
		refusedOK := o.code == 503 || o.node != p && o.code == 403
		if !refusedOK || o.took > 9*time.Second {
			t.Errorf("without quorum, a write on n%d answered %d after %s; want a refusal (503; 403 on a secondary) within 9 s", o.node, o.code, o.took)
		}
		slowest = max(slowest, o.took)
		refused503 = append(refused503, o.name)
	}
	for i, n := range c.Nodes {
		start := time.Now()
		have, ok := domainSet(n)
		took := time.Since(start)
		t.Logf("without quorum, n%d serves its domain list (%d domains) in %s", i, len(have), took.Round(time.Millisecond))
		if !ok || !have["before.test"] || took > time.Second {
			t.Fatalf("read on n%d without quorum: ok=%v in %s", i, ok, took)
		}
		if i != first && slices.ContainsFunc(acked, func(a string) bool { return !have[a] }) {
			t.Fatalf("n%d lacks an acknowledged write without quorum", i)
		}
	}
	h, _ := primary.Health()
	t.Logf("n%d %s after losing quorum reports role %q, status %q (it steps down only when its own watch of Consul fails)",
		p, time.Since(lostAt).Round(time.Millisecond), h.Role, h.Status)
	if t.Failed() {
		t.FailNow()
	}

	// 3. Start both stopped servers again: writes work again by themselves.
	backAt := time.Now()
	cs.Restart(t, first, second)
	restarted := time.Since(backAt)
	var writeBack time.Duration
	for i := 0; ; i++ {
		name := fmt.Sprintf("back-%03d.test", i)
		if code := writeViaPrimary(c.Nodes, name); code == 201 {
			writeBack = time.Since(backAt)
			acked = append(acked, name)
			break
		}
		if time.Since(backAt) > 30*time.Second || i > 3000 {
			t.Fatalf("no write succeeded within 30s of restarting the Consul servers")
		}
		time.Sleep(20 * time.Millisecond)
	}
	allBack := eventually(t, 20*time.Second, "every node healthy with every acknowledged write", func() bool {
		roles := map[string]int{}
		for _, n := range c.Nodes {
			h, ok := n.Health()
			if !ok || h.Status != "ok" {
				return false
			}
			roles[h.Role]++
			have, ok := domainSet(n)
			if !ok || slices.ContainsFunc(acked, func(a string) bool { return !have[a] }) {
				return false
			}
		}
		return roles["primary"] == 1 && roles["secondary"] == 2
	})
	t.Logf("quorum back: both servers restarted in %s; the first write succeeded %s after the restart began; every node healthy with all %d acknowledged writes %s after that write",
		restarted.Round(time.Millisecond), writeBack.Round(time.Millisecond), len(acked), allBack.Round(time.Millisecond))
	have, _ := domainSet(c.Nodes[0])
	var committed []string
	for _, name := range refused503 {
		if have[name] {
			committed = append(committed, name)
		}
	}
	t.Logf("writes refused with 503 without quorum: %d, present after quorum came back: %v; test took %s",
		len(refused503), committed, time.Since(testStart).Round(time.Millisecond))
	// A write Consul failed after it reached the Raft log (the primary's own
	// server lost its leadership while committing it) is committed once
	// quorum is back: its 503 must not have claimed that nothing changed.
	if slices.Contains(committed, refused503[0]) && strings.Contains(first503, "nothing was changed") {
		t.Errorf("%s was refused with %q but is applied", refused503[0], first503)
	}
}

// electionCount counts, over the logs of every node process the cluster
// started, how often a node became primary.
func electionCount(c *Cluster) int {
	n := 0
	for _, node := range c.Nodes {
		n += strings.Count(node.Stderr(), "this node became the primary")
	}
	return n
}

func sumCounts(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
