package bench_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/internal/harness"
	"mailcluster/schema"
)

// benchScale loads 100,000 accounts in 1,000 domains straight into Consul
// KV (in the service's format, txns of 64 ops, one precomputed bcrypt
// hash) and measures a node's RSS, its start time from its persisted
// snapshot, and how long a new node takes to catch up from nothing; each
// against the same figure with the (bootstrapped, empty) state or against
// a raw Consul List of the prefix. It then measures a few writes and their
// replication at that size.
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

	// The first node bootstraps the cluster (settings, admin, registers itself).
	s0 := c.NewNode("s0", "--auto-admit")
	c.Nodes = []*Node{s0}
	waitPrimary := func(n *Node) {
		harness.Eventually(t, 60*time.Second, "s0 is a healthy primary", func() bool {
			h, code, ok := Health(n.BaseURL)
			return ok && code == 200 && h.Role == "primary"
		})
	}
	waitPrimary(s0)
	harness.Eventually(t, 10*time.Second, "s0 registered", func() bool {
		code, out, _ := tryDo(pollClient, "GET", s0.BaseURL+"/api/v1/cluster/servers", "", "")
		return code == 200 && strings.Contains(out, `"name":"s0"`)
	})
	time.Sleep(2 * time.Second)
	rssEmpty, err := procStatus(s0.Pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	s0.Stop()
	startEmpty, start200Empty := restartTimed(t, s0)
	waitPrimary(s0)
	h, _, _ := Health(s0.BaseURL)
	sb := c.NewNode("sb", "--auto-admit")
	catchEmpty := waitIndex(t, sb, h.Index, 30*time.Second)
	isSecondary := func(n *Node) func() bool {
		return func() bool {
			h, code, ok := Health(n.BaseURL)
			return ok && code == 200 && h.Role == "secondary"
		}
	}
	if !harness.WaitFor(30*time.Second, isSecondary(sb)) {
		t.Logf("sb was not admitted as a secondary within 30s")
	}
	sb.Stop()
	if code, out, err := tryDo(pollClient, "DELETE", s0.BaseURL+"/api/v1/cluster/servers/sb", "", ""); err != nil || code != 204 && code != 404 {
		t.Logf("removing sb: %d %s %v", code, out, err)
	}
	t.Logf("empty state: RSS %.1f MB, start %s (200 after %s), catch-up %s", rssEmpty, startEmpty, start200Empty, catchEmpty)

	// Bulk load with s0 stopped (a running node would list the growing
	// prefix after every transaction).
	s0.Stop()
	loadStart := time.Now()
	loadIdx, err := bulkLoad(client, prefix, nDom, nAcc)
	if err != nil {
		t.Fatalf("bulk load: %v", err)
	}
	loadTime := time.Since(loadStart)
	t.Logf("loaded %d domains and %d accounts in %s (index %d)", nDom, nAcc, loadTime.Round(time.Millisecond), loadIdx)

	s0.Restart(t)
	stop := profile(t, s0.Pid(), "scale-primary-catchup")
	primaryCatch := waitIndex(t, s0, loadIdx, 120*time.Second)
	stop()
	waitPrimary(s0)
	time.Sleep(3 * time.Second)
	rss, err := procStatus(s0.Pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	hwm, _ := procStatus(s0.Pid(), "VmHWM")
	anon, _ := procStatus(s0.Pid(), "RssAnon")
	file, _ := procStatus(s0.Pid(), "RssFile")
	t.Logf("%s: primary caught up with the load in %s; RSS %.1f MB (peak %.1f MB)", label, primaryCatch, rss, hwm)

	s0.Stop()
	start, start200 := restartTimed(t, s0)
	waitPrimary(s0)
	rssRestart, _ := procStatus(s0.Pid(), "VmRSS")
	hwmRestart, _ := procStatus(s0.Pid(), "VmHWM")
	t.Logf("%s: start from the snapshot %s (200 after %s); RSS %.1f MB (peak %.1f MB)", label, start, start200, rssRestart, hwmRestart)

	// Raw baseline of a catch-up: one List of the prefix with the Consul client.
	t0 := time.Now()
	nKeys, err := listCount(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	rawList := time.Since(t0)
	h, _, _ = Health(s0.BaseURL)
	s1 := c.NewNode("s1", "--auto-admit")
	stop = profile(t, s1.Pid(), "scale-catchup")
	catch := waitIndex(t, s1, h.Index, 120*time.Second)
	stop()
	c.Nodes = append(c.Nodes, s1)
	if !harness.WaitFor(30*time.Second, isSecondary(s1)) {
		t.Logf("s1 was not admitted as a secondary within 30s")
	}
	time.Sleep(2 * time.Second)
	rss1, _ := procStatus(s1.Pid(), "VmRSS")
	hwm1, _ := procStatus(s1.Pid(), "VmHWM")
	t.Logf("%s: new node caught up in %s (raw List of %d keys %s); RSS %.1f MB (peak %.1f MB)", label, catch, nKeys, rawList, rss1, hwm1)

	// A few writes at this size: latency on the primary and until visible on s1.
	var writeLat, replLat []time.Duration
	wclient, rclient := newLoadClient(1), newLoadClient(1)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 10 && time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("big%d.example", i)
		t0 := time.Now()
		code, out, err := tryDo(wclient, "POST", s0.BaseURL+"/api/v1/domains", "application/json", `{"name":"`+name+`"}`)
		if err != nil || code != 201 {
			rec.fail(t, "write at %s: %d %s %v", label, code, out, err)
			break
		}
		ack := time.Now()
		writeLat = append(writeLat, ack.Sub(t0))
		for time.Since(ack) < 30*time.Second {
			if code, _, _ := tryDo(rclient, "GET", s1.BaseURL+"/api/v1/domains/"+name, "", ""); code == 200 {
				replLat = append(replLat, time.Since(ack))
				break
			}
			time.Sleep(time.Millisecond)
		}
	}

	sec := func(d time.Duration) float64 { return d.Seconds() }
	tgRSS, tgCatch := atMost(200, "MB"), atMost(5, "s")
	rec.add("scale", "RSS of the primary at "+label, rss, "MB", rssEmpty, "empty state", &tgRSS, 1,
		fmt.Sprintf("VmRSS 3 s after catching up (RssAnon %.0f MB, RssFile %.0f MB); peak VmHWM %.0f MB; just after a restart from the snapshot %.0f MB (peak %.0f MB)",
			anon, file, hwm, rssRestart, hwmRestart))
	rec.add("scale", "RSS of a new secondary at "+label, rss1, "MB", rssEmpty, "empty state", &tgRSS, 1, fmt.Sprintf("peak VmHWM %.0f MB", hwm1))
	rec.add("scale", "start from the persisted snapshot at "+label+" (/health 200)", sec(start200), "s", sec(start200Empty), "empty state", nil, 1,
		fmt.Sprintf("exec until /health answered 200; first answer of any status after %.3f s (empty state %.3f s)", sec(start), sec(startEmpty)))
	rec.add("scale", "new secondary catches up from nothing at "+label, sec(catch), "s", sec(rawList), "raw Consul List", &tgCatch, 1,
		fmt.Sprintf("exec until /health index reached the primary's; empty state %.3f s; baseline: one List of the %d keys with the Consul client", sec(catchEmpty), nKeys))
	rec.add("scale", "bulk load into Consul KV (txns of 64 ops, 4 writers)", sec(loadTime), "s", -1, "", nil, nAcc+nDom, "setup, for information")
	if len(writeLat) > 0 {
		rec.add("scale", fmt.Sprintf("domain create at %s, max of %d", label, len(writeLat)), maxMS(writeLat), "ms", -1, "", nil, len(writeLat),
			fmt.Sprintf("median %.1f ms", pct(writeLat, 0.5)))
	}
	if len(replLat) > 0 {
		tg := atMost(20, "ms")
		rec.add("scale", fmt.Sprintf("replication ack -> visible at %s, max of %d", label, len(replLat)), maxMS(replLat), "ms", -1, "", &tg, len(replLat),
			fmt.Sprintf("median %.1f ms", pct(replLat, 0.5)))
	}
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

// bulkLoad writes nDom domains and nAcc accounts (spread evenly) under
// prefix as the service stores them, in transactions of 64 operations
// from 4 writers, and returns the highest index written.
func bulkLoad(client *consulapi.Client, prefix string, nDom, nAcc int) (uint64, error) {
	rootKV, _, err := client.KV().Get(prefix+schema.PrefixSettings+mailcluster.MainSettingsFile+"/"+
		mailcluster.SectionDirectories+"/"+mailcluster.KeyMailboxRoot, nil)
	if err != nil || rootKV == nil {
		return 0, fmt.Errorf("read MailboxRoot: %v", err)
	}
	root := string(rootKV.Value)
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-user-pass-1"), bcrypt.DefaultCost)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	perDom := (nAcc + nDom - 1) / nDom
	// Records in key order: the domains, then the accounts.
	record := func(i int) (string, []byte) {
		if i < nDom {
			name := fmt.Sprintf("d%04d.example", i)
			b, _ := json.Marshal(&mailcluster.Domain{Name: name, Description: "bench", CreatedAt: now, UpdatedAt: now})
			return schema.PrefixDomains + name, b
		}
		i -= nDom
		domain, mailbox := fmt.Sprintf("d%04d.example", i/perDom), fmt.Sprintf("u%05d", i)
		b, _ := json.Marshal(&mailcluster.Account{Domain: domain, Mailbox: mailbox, FullName: "User " + mailbox,
			FirstName: "User", LastName: mailbox, PasswordHash: string(hash),
			MailboxPath: mailcluster.ExpandMailboxPath(mailcluster.DefaultMailboxPathTemplate, root, domain, mailbox),
			AdminRights: mailcluster.AdminNone, CreatedAt: now, UpdatedAt: now})
		return schema.PrefixAccounts + domain + "/" + mailbox, b
	}
	const batch = 64
	total := nDom + nAcc
	batches := make(chan int)
	var (
		mu      sync.Mutex
		maxIdx  uint64
		firstEr error
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for start := range batches {
				var ops consulapi.TxnOps
				for i := start; i < min(total, start+batch); i++ {
					k, v := record(i)
					ops = append(ops, &consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: prefix + k, Value: v}})
				}
				ok, resp, _, err := client.Txn().Txn(ops, nil)
				mu.Lock()
				switch {
				case err != nil && firstEr == nil:
					firstEr = err
				case err == nil && !ok && firstEr == nil:
					firstEr = fmt.Errorf("txn refused: %v", resp.Errors)
				case err == nil && ok:
					for _, r := range resp.Results {
						maxIdx = max(maxIdx, r.KV.ModifyIndex)
					}
				}
				mu.Unlock()
			}
		})
	}
	for start := 0; start < total; start += batch {
		batches <- start
	}
	close(batches)
	wg.Wait()
	return maxIdx, firstEr
}

// listCount lists the prefix with the Consul client (decoding every
// pair, as a node does) and returns the number of keys.
func listCount(client *consulapi.Client, prefix string) (int, error) {
	pairs, _, err := client.KV().List(prefix, nil)
	return len(pairs), err
}
