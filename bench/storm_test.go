package bench_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// stormWorkers is the number of concurrent guessers.
	stormWorkers = 4
	// stormPerAddress bounds the guesses from one source address; a
	// guesser moves to the next address once refused as blocked.
	stormPerAddress = 8
	// stormMaxAttempts bounds the storm's guesses whatever its duration.
	stormMaxAttempts = 100000
)

// stormDuration is MAILCLUSTER_BENCH_STORM (a duration, default 30 s, at
// most 1 minute).
func stormDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("MAILCLUSTER_BENCH_STORM")); err == nil && d > 0 {
		return min(d, time.Minute)
	}
	return 30 * time.Second
}

// benchStorm sends failed logins (REST Basic auth, existing accounts,
// wrong passwords) to the secondary target for stormDuration from source
// addresses rotating over 127.0.1.1-127.0.255.254 (each guesser binds its
// socket to the address it uses, loopback only), so that the primary
// decides blocks all along. It reports the CPU of the other nodes (the
// primary and the secondary other) and the replication lag from the
// primary to other during the storm, next to the same lag measured just
// before it. No goals: these figures are reported.
func benchStorm(t *testing.T, rec *recorder, c *Cluster, primary, target, other *Node, nDom, nAcc int, label string) {
	dur := stormDuration()
	quiet := lagProbe(primary, other, "q", time.Now().Add(5*time.Second))

	nodes := []*Node{primary, target, other}
	blocksBefore, err := blocksDecided(nodes)
	if err != nil {
		rec.fail(t, "metrics: %v", err)
		return
	}
	pids := map[string]int{"primary": primary.Pid(), "target": target.Pid(), "other": other.Pid(), "consul": c.Consul.Pid()}
	cpu0 := map[string]float64{}
	for k, pid := range pids {
		cpu0[k] = cpuSeconds(pid)
	}
	stopP := profile(t, primary.Pid(), "storm-primary")
	stopO := profile(t, other.Pid(), "storm-other-secondary")
	start := time.Now()
	end := start.Add(dur)

	var (
		nextAddr                          atomic.Int64
		attempts, failed, refused, others atomic.Int64
		connErrs                          atomic.Int64
		mu                                sync.Mutex
		firstErr                          error
		blockSeries                       []float64 // primary's blocks, every 5 s
	)
	addr := func() net.IP {
		n := nextAddr.Add(1) - 1
		return net.IPv4(127, 0, byte(1+n/254%255), byte(1+n%254))
	}
	var wg sync.WaitGroup
	for w := range stormWorkers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for time.Now().Before(end) && attempts.Load() < stormMaxAttempts {
				ip := addr()
				tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 2 * time.Second}).DialContext,
					MaxIdleConnsPerHost: 1, DisableCompression: true}
				client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			guesses:
				for k := 0; k < stormPerAddress && time.Now().Before(end); k++ {
					attempts.Add(1)
					i := rnd.IntN(nAcc)
					user := fmt.Sprintf("u%06d@d%04d.example", i, i%nDom)
					code, answer, err := guess(client, target.BaseURL+"/api/v1/domains/"+fmt.Sprintf("d%04d.example", i%nDom), user, fmt.Sprintf("wrong-%s-%d", ip, k))
					switch {
					case err != nil:
						connErrs.Add(1)
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					case code == http.StatusUnauthorized:
						failed.Add(1)
						continue
					case code == http.StatusForbidden:
						if refused.Add(1) == 1 {
							t.Logf("storm: first refusal (%s after %d failures): %s", ip, k, answer)
						}
					default:
						others.Add(1)
					}
					break guesses // blocked, or something else: next address
				}
				tr.CloseIdleConnections()
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(end) {
			time.Sleep(min(5*time.Second, time.Until(end)))
			if n, err := blocksDecided(nodes); err == nil {
				mu.Lock()
				blockSeries = append(blockSeries, n-blocksBefore)
				mu.Unlock()
			}
		}
	})
	during := lagProbe(primary, other, "s", end)
	wg.Wait()
	elapsed := time.Since(start)
	stopP()
	stopO()
	cpu := map[string]float64{}
	for k, pid := range pids {
		cpu[k] = (cpuSeconds(pid) - cpu0[k]) / elapsed.Seconds() * 100
	}
	blocksAfter, _ := blocksDecided(nodes)
	blocks := blocksAfter - blocksBefore
	roles := ""
	if h, _, ok := Health(primary.BaseURL); !ok || h.Role != "primary" {
		roles = "; the primary changed during the storm (CPU figures are per node, by its role at the start)"
	}
	t.Logf("storm: %d guesses from %d addresses in %s: %d failed (401), %d refused (403), %d other, %d connection errors (%v); %.0f blocks decided (every 5 s: %v); CPU %% of one core %v",
		attempts.Load(), min(nextAddr.Load(), int64(254*255)), elapsed.Round(time.Millisecond), failed.Load(), refused.Load(), others.Load(), connErrs.Load(), firstErr, blocks, blockSeries, cpu)
	if failed.Load() == 0 || blocks == 0 {
		rec.fail(t, "the storm decided no block (%d failed logins, %d blocks; first error %v)", failed.Load(), int(blocks), firstErr)
		return
	}
	what := fmt.Sprintf("during a %s failed-login storm on a secondary at %s", dur, label)
	storm := fmt.Sprintf("%d guesses (REST Basic auth, existing accounts, wrong passwords) from %d workers over %d source addresses in 127.0.1.0-127.0.255.255: %d answered 401, %d refused 403, %d other; %.0f blocks decided (cumulative every 5 s: %s); CPU of the target secondary %.0f %%, Consul %.0f %%%s",
		attempts.Load(), stormWorkers, min(nextAddr.Load(), int64(254*255)), failed.Load(), refused.Load(), others.Load(), blocks, fmtSeries(blockSeries), cpu["target"], cpu["consul"], roles)
	rec.add("storm", "CPU of the primary "+what, cpu["primary"], "% of a core", -1, "", nil, 1, storm)
	rec.add("storm", "CPU of the other secondary "+what, cpu["other"], "% of a core", -1, "", nil, 1, "from /proc/<pid>/stat, utime+stime over the storm")
	if len(during) == 0 {
		rec.fail(t, "no replication lag measured during the storm")
		return
	}
	note := fmt.Sprintf("a domain create on the primary every 100 ms, from the client's send until the other secondary serves it; baseline: the same in the 5 s before the storm (%d writes)", len(quiet))
	rec.add("storm", "replication lag to the other secondary "+what+", p50", pct(during, 0.5), "ms", pct(quiet, 0.5), "before the storm", nil, len(during), note)
	rec.add("storm", "replication lag to the other secondary "+what+", p99", pct(during, 0.99), "ms", pct(quiet, 0.99), "before the storm", nil, len(during), note)
}

// blocksDecided sums the nodes' mailcluster_screening_blocks_total: the
// blocks each decided (as primary, or on its own without one).
func blocksDecided(nodes []*Node) (float64, error) {
	sum := 0.0
	for _, n := range nodes {
		m, err := metricValues(n.BaseURL, "mailcluster_screening_")
		if err != nil {
			return 0, err
		}
		sum += m["blocks_total"]
	}
	return sum, nil
}

// guess sends one login with a wrong password and returns the status and
// the start of the answer.
func guess(client *http.Client, url, user, password string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, string(b[:min(len(b), 300)]), nil
}

// lagProbe creates a domain on primary every 100 ms until end and returns,
// for each, the time from its send until secondary serves it (each wait
// bounded to 5 s).
func lagProbe(primary, secondary *Node, tag string, end time.Time) []time.Duration {
	wclient, rclient := newLoadClient(1), newLoadClient(1)
	defer wclient.CloseIdleConnections()
	defer rclient.CloseIdleConnections()
	var lat []time.Duration
	for i := 0; time.Now().Before(end) && i < 10000; i++ {
		next := time.Now().Add(100 * time.Millisecond)
		name := fmt.Sprintf("lag%s%05d.example", tag, i)
		t0 := time.Now()
		if code, _, err := tryDo(wclient, "POST", primary.BaseURL+"/api/v1/domains", "application/json", `{"name":"`+name+`"}`); err != nil || code != 201 {
			time.Sleep(time.Until(next))
			continue
		}
		for time.Since(t0) < 5*time.Second {
			if code, _, _ := tryDo(rclient, "GET", secondary.BaseURL+"/api/v1/domains/"+name, "", ""); code == 200 {
				lat = append(lat, time.Since(t0))
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		time.Sleep(time.Until(next))
	}
	return lat
}

func fmtSeries(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}
