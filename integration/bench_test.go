package integration_test

import (
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// BenchmarkReplication measures the time from a write acknowledged by the
// primary until it is readable on both secondaries of a three-node
// cluster (each secondary polled in a tight loop over HTTP).
func BenchmarkReplication(b *testing.B) {
	c := StartCluster(b, harness.SharedConsul(b), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	primary := c.Nodes[p]
	secs := c.Secondaries(p)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("d%d.example", i)
		code, body, err := tryDo("POST", primary.BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "application/json", `{"name":"`+name+`"}`)
		if err != nil || code != 201 {
			b.Fatalf("create: %d %s %v", code, body, err)
		}
		start := time.Now()
		for _, s := range secs {
			deadline := start.Add(5 * time.Second)
			for {
				code, _, _ := tryDo("GET", c.Nodes[s].BaseURL+"/api/v1/domains/"+name, "admin@localhost", adminPW, "", "")
				if code == 200 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s not on n%d within 5s", name, s)
				}
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pick := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pick(0.5), "p50-ms")
	b.ReportMetric(pick(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkFailover measures, per iteration, how long after the primary is
// stopped a new primary accepts a write: after SIGKILL and after a
// graceful stop (SIGTERM).
func BenchmarkFailover(b *testing.B) {
	for _, mode := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGTERM", syscall.SIGTERM}} {
		b.Run(mode.name, func(b *testing.B) {
			c := StartCluster(b, harness.SharedConsul(b), 3, nil)
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				p := c.WaitPrimary(10 * time.Second)
				old := c.Nodes[p]
				start := time.Now()
				_ = old.Signal(mode.sig)
				deadline := start.Add(10 * time.Second)
				for {
					if ps := c.Primaries(); len(ps) == 1 && ps[0] != p {
						code, _, _ := tryDo("POST", c.Nodes[ps[0]].BaseURL+"/api/v1/domains", "admin@localhost", adminPW,
							"application/json", fmt.Sprintf(`{"name":"f%d.example"}`, i))
						if code == 201 {
							break
						}
					}
					if time.Now().After(deadline) {
						b.Fatalf("no new primary accepted a write within 10s")
					}
					time.Sleep(time.Millisecond)
				}
				lat = append(lat, time.Since(start))
				old.Wait()
				c.Start(p)
				eventually(b, 10*time.Second, "restarted node is a secondary", func() bool {
					h, ok := c.Nodes[p].Health()
					return ok && h.Role == "secondary"
				})
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}
