package bench_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// benchFailover measures, as integration/bench_test.go does, how long
// after the primary is stopped (SIGKILL, then graceful SIGTERM) a new
// primary accepts a write, over several trials; the stopped node is
// started again as a secondary after each trial.
func benchFailover(t *testing.T, c *Cluster, rec *recorder) {
	trials := envInt("MAILCLUSTER_BENCH_TRIALS", 10, 1, 50)
	client := newLoadClient(1)
	for _, mode := range []struct {
		name   string
		sig    syscall.Signal
		target float64
	}{{"SIGKILL", syscall.SIGKILL, 1.5}, {"SIGTERM", syscall.SIGTERM, 0.2}} {
		var lat []time.Duration
		for i := range trials {
			p := waitPrimary(t, c, 10*time.Second)
			old := c.Nodes[p]
			start := time.Now()
			old.Signal(mode.sig)
			deadline := start.Add(10 * time.Second)
			for {
				if ps := c.Primaries(); len(ps) == 1 && ps[0] != p {
					code, _, _ := tryDo(client, "POST", c.Nodes[ps[0]].BaseURL+"/api/v1/domains", "application/json",
						fmt.Sprintf(`{"name":"f%s%d.example"}`, mode.name, i))
					if code == 201 {
						break
					}
				}
				if time.Now().After(deadline) {
					rec.fail(t, "%s: no new primary accepted a write within 10s", mode.name)
					return
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(start))
			old.Wait()
			old.Restart(t)
			harness.Eventually(t, 15*time.Second, "restarted node is a secondary", func() bool {
				h, code, ok := Health(old.BaseURL)
				return ok && code == 200 && h.Role == "secondary"
			})
		}
		t.Logf("%s: %v", mode.name, lat)
		tg := atMost(mode.target, "s")
		rec.add("failover", "failover after "+mode.name+" of the primary, median", pct(lat, 0.5)/1000, "s", -1, "", &tg, len(lat),
			"stop until a new primary answered 201 to a write")
		rec.add("failover", "failover after "+mode.name+" of the primary, max", maxMS(lat)/1000, "s", -1, "", &tg, len(lat), "")
	}
}
