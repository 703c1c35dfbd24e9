package bench_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"golang.org/x/crypto/bcrypt"

	"mailcluster/internal/harness"
)

const (
	// loadClients is the number of parallel clients that load the scale
	// cluster through the REST API (the primary group-commits them).
	loadClients = 32
	// probeWrites is the number of domain creates of each write-and-watch
	// run (empty cluster, 1,000 accounts, full size).
	probeWrites = 200
	// loadBound bounds the whole load of the scale cluster.
	loadBound = 25 * time.Minute
)

// benchScale builds a cluster of a primary (s0) and a secondary (s1),
// measures a few figures on the empty cluster, loads
// MAILCLUSTER_BENCH_ACCOUNTS accounts (default 100,000) in one domain per
// 100 accounts through the REST API (accounts carry a precomputed bcrypt
// passwordHash, as a migration would), and measures at that size, each
// figure against its baseline in the same run:
//
//   - a domain create's p99 on the primary against the same write on the
//     empty cluster, and replication from the client's send until the
//     domain is served by s1 against a raw Consul watch of one key;
//   - the RSS of the primary and of the secondary;
//   - bytes read from Consul per replicated write (s1's /metrics) against
//     the same figure at 1,000 accounts;
//   - a new secondary (s2) catching up from nothing against one raw
//     Consul List of the cluster's prefix.
//
// It then runs the failed-login storm against s1 (benchStorm).
func benchScale(t *testing.T, rec *recorder) {
	nAcc := envInt("MAILCLUSTER_BENCH_ACCOUNTS", 100000, 1000, 200000)
	nDom := max(1, nAcc/100)
	label := fmt.Sprintf("%dk accounts", nAcc/1000)
	consul := harness.OwnConsul(t)
	c := newCluster(t, consul, "scale")
	prefix := "mailcluster/" + c.Name + "/"
	client, err := consulapi.NewClient(&consulapi.Config{Address: consul.Addr})
	if err != nil {
		t.Fatal(err)
	}

	// The first node bootstraps the cluster (settings, admin, registers
	// itself); the second is admitted as a secondary.
	s0 := c.NewNode("s0", "--auto-admit")
	c.Nodes = []*Node{s0}
	harness.Eventually(t, 60*time.Second, "s0 is a healthy primary", hasRole(s0, "primary"))
	s1 := c.NewNode("s1", "--auto-admit")
	c.Nodes = append(c.Nodes, s1)
	harness.Eventually(t, 60*time.Second, "s1 is a secondary", hasRole(s1, "secondary"))
	settle(t, c, 10*time.Second)
	time.Sleep(2 * time.Second) // RSS after the start's allocations settle
	rssEmpty0, err := procStatus(s0.Pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	rssEmpty1, _ := procStatus(s1.Pid(), "VmRSS")

	// The empty cluster: writes, replication, cost per write, restart and
	// catch-up of a new node.
	empty := writeAndWatch(t, c, "e", probeWrites)
	s0, s1 = roles(t, c)
	t.Logf("empty cluster: domain create p50 %.2f ms p99 %.2f ms; send -> visible on the secondary p99 %.2f ms; %.0f B read per write",
		pct(empty.write, 0.5), pct(empty.write, 0.99), pct(empty.repl, 0.99), empty.bytesPerWrite)
	s1.Stop()
	startEmpty, start200Empty := restartTimed(t, s1)
	harness.Eventually(t, 30*time.Second, "s1 is a secondary again", hasRole(s1, "secondary"))
	h, _, _ := Health(s0.BaseURL)
	sb := c.NewNode("sb", "--auto-admit")
	catchEmpty := waitIndex(t, sb, h.Index, 30*time.Second)
	if !harness.WaitFor(30*time.Second, hasRole(sb, "secondary")) {
		t.Logf("sb was not admitted as a secondary within 30s")
	}
	sb.Stop()
	if code, out, err := tryDo(pollClient, "DELETE", s0.BaseURL+"/api/v1/cluster/servers/sb", "", ""); err != nil || code != 204 && code != 404 {
		t.Logf("removing sb: %d %s %v", code, out, err)
	}

	// The load, through the REST API, with s1 replicating all along.
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-user-pass-1"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	loadStart := time.Now()
	loadUntil := loadStart.Add(loadBound)
	stop := profile(t, s0.Pid(), "scale-load-primary")
	if err := apiLoad(c, loadUntil, nDom, func(i int) (string, string) {
		name := fmt.Sprintf("d%04d.example", i)
		return "/api/v1/domains", `{"name":"` + name + `","description":"bench"}`
	}); err != nil {
		t.Fatalf("loading domains: %v", err)
	}
	account := func(i int) (string, string) {
		// Account i is in domain i mod nDom, so parallel clients write to
		// different domains.
		domain, mailbox := fmt.Sprintf("d%04d.example", i%nDom), fmt.Sprintf("u%06d", i)
		return "/api/v1/domains/" + domain + "/accounts", fmt.Sprintf(`{"mailbox":%q,"passwordHash":%q,"fullName":"User %s","firstName":"User","lastName":%q}`,
			mailbox, hash, mailbox, mailbox)
	}
	first := min(1000, nAcc)
	if err := apiLoad(c, loadUntil, first, account); err != nil {
		t.Fatalf("loading accounts: %v", err)
	}
	stop()
	loadTime := time.Since(loadStart)
	settle(t, c, 30*time.Second)
	at1k := writeAndWatch(t, c, "k", probeWrites)
	t.Logf("1k accounts: %.0f B read per write on the secondary", at1k.bytesPerWrite)
	t0 := time.Now()
	if err := apiLoad(c, loadUntil, nAcc-first, func(i int) (string, string) { return account(first + i) }); err != nil {
		t.Fatalf("loading accounts: %v", err)
	}
	loadTime += time.Since(t0)
	t.Logf("loaded %d domains and %d accounts through the API in %s", nDom, nAcc, loadTime.Round(time.Millisecond))
	settle(t, c, 60*time.Second)

	// At full size.
	s0, s1 = roles(t, c)
	stop = profile(t, s1.Pid(), "scale-replication-secondary")
	stopP := profile(t, s0.Pid(), "scale-writes-primary")
	full := writeAndWatch(t, c, "b", probeWrites)
	stopP()
	stop()
	s0, s1 = roles(t, c)
	t.Logf("%s: domain create p50 %.2f ms p99 %.2f ms; send -> visible on the secondary p99 %.2f ms; %.0f B read per write",
		label, pct(full.write, 0.5), pct(full.write, 0.99), pct(full.repl, 0.99), full.bytesPerWrite)
	rawWatch, rawErr := rawReplication(consul.Addr, "bench-rawwatch-"+c.Name, 1, probeWrites, true)
	settle(t, c, 30*time.Second)
	time.Sleep(3 * time.Second)
	rss0, err := procStatus(s0.Pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	hwm0, _ := procStatus(s0.Pid(), "VmHWM")
	rss1, _ := procStatus(s1.Pid(), "VmRSS")
	hwm1, _ := procStatus(s1.Pid(), "VmHWM")
	t.Logf("%s: RSS primary %.1f MB (peak %.1f), secondary %.1f MB (peak %.1f)", label, rss0, hwm0, rss1, hwm1)

	s1.Stop()
	start, start200 := restartTimed(t, s1)
	harness.Eventually(t, 60*time.Second, "s1 is a secondary again", hasRole(s1, "secondary"))

	// A new secondary from nothing, against one raw List of the prefix.
	t0 = time.Now()
	nKeys, err := listCount(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	rawList := time.Since(t0)
	h, _, _ = Health(s0.BaseURL)
	s2 := c.NewNode("s2", "--auto-admit")
	stop = profile(t, s2.Pid(), "scale-catchup")
	catch := waitIndex(t, s2, h.Index, 120*time.Second)
	stop()
	c.Nodes = append(c.Nodes, s2)
	if !harness.WaitFor(30*time.Second, hasRole(s2, "secondary")) {
		t.Logf("s2 was not admitted as a secondary within 30s")
	}
	settle(t, c, 30*time.Second)
	rss2, _ := procStatus(s2.Pid(), "VmRSS")
	hwm2, _ := procStatus(s2.Pid(), "VmHWM")
	t.Logf("%s: new node caught up in %s (raw List of %d keys %s); RSS %.1f MB (peak %.1f MB)", label, catch, nKeys, rawList, rss2, hwm2)

	sec := func(d time.Duration) float64 { return d.Seconds() }
	tgRSS := atMost(150, "MB")
	if full.n() > 0 && empty.n() > 0 {
		tg := target{"ratio <= 1.2", func(_, r float64) bool { return r <= 1.2 }}
		rec.add("scale", fmt.Sprintf("domain create on the primary at %s, p99", label), pct(full.write, 0.99), "ms", pct(empty.write, 0.99), "empty cluster", &tg, full.n(),
			fmt.Sprintf("%d sequential creates, 1 client, each followed by polling s1; median %.2f ms (empty cluster %.2f ms)", full.n(), pct(full.write, 0.5), pct(empty.write, 0.5)))
	}
	if full.n() > 0 {
		tg := atMost(20, "ms")
		base, baseName := -1.0, ""
		if rawErr == nil {
			base, baseName = pct(rawWatch, 0.99), "raw Consul watch"
		} else {
			rec.fail(t, "raw consul watch: %v", rawErr)
		}
		rec.add("scale", fmt.Sprintf("replication send -> visible on a secondary at %s, p99", label), pct(full.repl, 0.99), "ms", base, baseName, &tg, full.n(),
			fmt.Sprintf("from the client's send of a domain create until the secondary serves it; median %.2f ms; empty cluster p99 %.2f ms; baseline: a raw txn of one key sent until a blocking query of that key saw it",
				pct(full.repl, 0.5), pct(empty.repl, 0.99)))
	}
	rec.add("scale", "RSS of the primary at "+label, rss0, "MB", rssEmpty0, "empty cluster", &tgRSS, 1,
		fmt.Sprintf("VmRSS 3 s after the load settled; peak VmHWM %.0f MB", hwm0))
	rec.add("scale", "RSS of a secondary at "+label, rss1, "MB", rssEmpty1, "empty cluster", &tgRSS, 1,
		fmt.Sprintf("VmRSS 3 s after the load settled (it replicated the whole load); peak VmHWM %.0f MB; the new secondary s2 after its catch-up: %.0f MB (peak %.0f MB)", hwm1, rss2, hwm2))
	if at1k.bytesPerWrite > 0 && full.bytesPerWrite > 0 {
		tg := target{"ratio <= 1.1", func(_, r float64) bool { return r <= 1.1 }}
		rec.add("scale", "bytes read from Consul per replicated write at "+label, full.bytesPerWrite, "B", at1k.bytesPerWrite, "1k accounts", &tg, full.entries,
			fmt.Sprintf("the secondary's /metrics: replication_read_bytes_total / replication_entries_applied_total over %d sequential domain creates; empty cluster %.0f B", full.n(), empty.bytesPerWrite))
	} else {
		rec.fail(t, "bytes read per write not measured (1k: %.0f, full: %.0f)", at1k.bytesPerWrite, full.bytesPerWrite)
	}
	tgCatch := target{"ratio <= 1.5 and <= 5 s", func(v, r float64) bool { return r <= 1.5 && v <= 5 }}
	rec.add("scale", "new secondary catches up from nothing at "+label, sec(catch), "s", sec(rawList), "raw Consul List", &tgCatch, 1,
		fmt.Sprintf("exec until /health index reached the primary's; empty cluster %.3f s; baseline: one List of the %d keys with the Consul client", sec(catchEmpty), nKeys))
	rec.add("scale", "start from the persisted snapshot at "+label+" (/health 200)", sec(start200), "s", sec(start200Empty), "empty cluster", nil, 1,
		fmt.Sprintf("a secondary, exec until /health answered 200; first answer of any status after %.3f s (empty cluster %.3f s)", sec(start), sec(startEmpty)))
	rec.add("scale", fmt.Sprintf("load through the REST API (%d clients, passwordHash)", loadClients), float64(nDom+nAcc)/loadTime.Seconds(), "/s", -1, "", nil, nAcc+nDom,
		fmt.Sprintf("setup, for information: %d domains and %d accounts in %.1f s", nDom, nAcc, loadTime.Seconds()))

	p := waitPrimary(t, c, 30*time.Second)
	secs := c.Secondaries(p)
	if len(secs) != 2 {
		rec.fail(t, "storm: want 2 secondaries, have %v", secs)
		return
	}
	benchStorm(t, rec, c, c.Nodes[p], c.Nodes[secs[0]], c.Nodes[secs[1]], nDom, nAcc, label)
}

// roles returns the primary of the cluster's first two nodes and the
// other one (their roles change when the primary steps down under load).
func roles(t *testing.T, c *Cluster) (primary, secondary *Node) {
	t.Helper()
	p := waitPrimary(t, c, 30*time.Second)
	if p > 1 {
		t.Fatalf("the primary is node %d, not one of the first two", p)
	}
	return c.Nodes[p], c.Nodes[1-p]
}

func hasRole(n *Node, role string) func() bool {
	return func() bool {
		h, code, ok := Health(n.BaseURL)
		return ok && code == 200 && h.Role == role
	}
}

// watched is what writeAndWatch measured.
type watched struct {
	write, repl   []time.Duration // primary's answer; send until served by the secondary
	entries       int             // feed entries the secondary applied meanwhile
	bytesPerWrite float64         // bytes it read from Consul per entry
}

func (w watched) n() int { return len(w.write) }

// writeAndWatch creates n domains on the primary of the cluster's first
// two nodes one after the other, each time polling the other node until
// it serves the domain, and reads that node's replication counters before
// and after. When the primary changes meanwhile (a 403 or 503 answer), it
// measures again with the new roles a second later, at most 5 times in all.
func writeAndWatch(t *testing.T, c *Cluster, tag string, n int) watched {
	t.Helper()
	for try := range 5 {
		primary, secondary := roles(t, c)
		out, refusal := watchRun(t, primary, secondary, fmt.Sprintf("%s%d", tag, try), n)
		if refusal == "" {
			return out
		}
		t.Logf("the primary changed during a measurement (%s: %s); measuring again", tag, refusal)
		time.Sleep(time.Second)
	}
	t.Errorf("the primary changed during each of 5 measurements (%s)", tag)
	return watched{}
}

// watchRun is one run of writeAndWatch; refusal is the answer of the
// primary when it refused a write as not (or no longer) the primary.
func watchRun(t *testing.T, primary, secondary *Node, tag string, n int) (out watched, refusal string) {
	t.Helper()
	before, err := replicationCounters(secondary.BaseURL)
	if err != nil {
		t.Errorf("metrics of the secondary: %v", err)
	}
	wclient, rclient := newLoadClient(1), newLoadClient(1)
	defer wclient.CloseIdleConnections()
	defer rclient.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("p%s-%05d.example", tag, i)
		t0 := time.Now()
		code, body, err := tryDo(wclient, "POST", primary.BaseURL+"/api/v1/domains", "application/json", `{"name":"`+name+`"}`)
		if err == nil && (code == 403 || code == 503) {
			return watched{}, fmt.Sprintf("%d %.200s", code, body)
		}
		if err != nil || code != 201 {
			t.Errorf("create %s: %d %s %v", name, code, body, err)
			break
		}
		ack := time.Now()
		seen := false
		for time.Since(ack) < 5*time.Second {
			if code, _, _ := tryDo(rclient, "GET", secondary.BaseURL+"/api/v1/domains/"+name, "", ""); code == 200 {
				seen = true
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		if !seen {
			t.Errorf("%s not on the secondary within 5s", name)
			break
		}
		out.write = append(out.write, ack.Sub(t0))
		out.repl = append(out.repl, time.Since(t0))
	}
	after, err := replicationCounters(secondary.BaseURL)
	if err == nil && before != nil {
		out.entries = int(after["entries_applied_total"] - before["entries_applied_total"])
		if out.entries > 0 {
			out.bytesPerWrite = (after["read_bytes_total"] - before["read_bytes_total"]) / float64(out.entries)
		}
	}
	return out, ""
}

// replicationCounters reads the mailcluster_replication_* counters of a
// node's /metrics, by their name without that prefix.
func replicationCounters(base string) (map[string]float64, error) {
	return metricValues(base, "mailcluster_replication_")
}

// metricValues reads the samples of a node's /metrics whose names start
// with prefix (without labels), keyed by the rest of the name.
func metricValues(base, prefix string) (map[string]float64, error) {
	resp, err := pollClient.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if rest, found := strings.CutPrefix(name, prefix); ok && found && !strings.Contains(rest, "{") {
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				out[rest] = v
			}
		}
	}
	return out, sc.Err()
}

// apiLoad makes n records through the REST API on the cluster's primary,
// from loadClients parallel clients: record i is a POST of body to path.
// A request refused because the node is not (or no longer) the primary, or
// failed for want of Consul, is sent again to the primary of the moment
// (at most 20 times, 250 ms apart; an existing record then counts as
// made). No request starts after until.
func apiLoad(c *Cluster, until time.Time, n int, record func(i int) (path, body string)) error {
	if n <= 0 {
		return nil
	}
	var base atomic.Value
	base.Store(c.Nodes[waitPrimaryQuiet(c)].BaseURL)
	client := newLoadClient(loadClients)
	defer client.CloseIdleConnections()
	res := runLoad(loadClients, time.Until(until), int64(n), func(_ int, seq int64) error {
		path, body := record(int(seq - 1))
		var last error
		for attempt := range 20 {
			if attempt > 0 {
				time.Sleep(250 * time.Millisecond)
				base.Store(c.Nodes[waitPrimaryQuiet(c)].BaseURL)
			}
			req, err := adminRequest("POST", base.Load().(string)+path, body)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				last = err
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated || attempt > 0 && resp.StatusCode == http.StatusConflict {
				return nil
			}
			last = fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode, b)
			if resp.StatusCode < 500 && !(resp.StatusCode == http.StatusForbidden && strings.Contains(string(b), "read-only")) {
				return last
			}
		}
		return last
	})
	if res.N < n {
		return fmt.Errorf("%d of %d made in %s: %w", res.N, n, res.Elapsed.Round(time.Millisecond), errOK(res))
	}
	return nil
}

// waitPrimaryQuiet returns the index in c.Nodes of the live primary,
// waiting up to 10 s for one; 0 when none answers.
func waitPrimaryQuiet(c *Cluster) int {
	p, err := c.AwaitPrimary(10 * time.Second)
	if err != nil {
		return 0
	}
	return p
}

// restartTimed starts a stopped node again and returns the time from exec
// until /health first answered (any status) and until it answered 200.
func restartTimed(t *testing.T, n *Node) (first, ok200 time.Duration) {
	t.Helper()
	n.Restart(t)
	deadline := n.Started.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		_, code, answered := Health(n.BaseURL)
		if answered && first == 0 {
			first = time.Since(n.Started)
		}
		if code == 200 {
			return first, time.Since(n.Started)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s: /health not 200 within 60s", n.DataDir)
	return 0, 0
}

// waitIndex waits until the node's /health index reaches index and
// returns the time since the node's process was started.
func waitIndex(t *testing.T, n *Node, index uint64, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := n.Started.Add(timeout)
	for time.Now().Before(deadline) {
		if h, _, ok := Health(n.BaseURL); ok && h.Index >= index {
			return time.Since(n.Started)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: index %d not reached within %s", n.DataDir, index, timeout)
	return 0
}

// listCount lists the prefix with the Consul client (decoding every
// pair) and returns the number of keys.
func listCount(client *consulapi.Client, prefix string) (int, error) {
	pairs, _, err := client.KV().List(prefix, nil)
	return len(pairs), err
}
