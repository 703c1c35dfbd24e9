package bench_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one bounded load run measured.
type loadResult struct {
	N        int           // successful operations
	Errors   int           // failed operations (not counted in N)
	Elapsed  time.Duration // wall time of the run
	Lat      []time.Duration
	FirstErr error
}

// PerSec is successful operations per second.
func (r loadResult) PerSec() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// Pct returns the q-quantile of the latencies in milliseconds.
func (r loadResult) Pct(q float64) float64 { return pct(r.Lat, q) }

func pct(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	return float64(s[i].Microseconds()) / 1000
}

func maxMS(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	return float64(slices.Max(lat).Microseconds()) / 1000
}

// runLoad calls op from workers goroutines until dur has passed (or
// maxOps operations were started, when maxOps > 0) and records the
// latency of every successful call. op gets the worker and a sequence
// number unique within the run.
func runLoad(workers int, dur time.Duration, maxOps int64, op func(worker int, seq int64) error) loadResult {
	var (
		mu    sync.Mutex
		res   loadResult
		seq   atomic.Int64
		wg    sync.WaitGroup
		start = time.Now()
	)
	deadline := start.Add(dur)
	for w := range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			var first error
			for time.Now().Before(deadline) {
				n := seq.Add(1)
				if maxOps > 0 && n > maxOps {
					break
				}
				t0 := time.Now()
				if err := op(w, n); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.Lat = append(res.Lat, lat...)
			res.Errors += errs
			if res.FirstErr == nil {
				res.FirstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.N = len(res.Lat)
	return res
}

// newLoadClient returns a keep-alive client that holds one connection per
// worker.
func newLoadClient(workers int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			MaxConnsPerHost:     workers,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// httpOp returns an op for runLoad that sends the request made by mk and
// expects status want; the body is read to the end so that the
// connection is reused.
func httpOp(client *http.Client, want int, mk func(seq int64) (*http.Request, error)) func(int, int64) error {
	return func(_ int, seq int64) error {
		req, err := mk(seq)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != want {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, b)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
}

// errOK checks a load result: every operation must have succeeded.
func errOK(r loadResult) error {
	if r.N == 0 {
		return fmt.Errorf("no operation succeeded: %v", r.FirstErr)
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d of %d operations failed, first: %w", r.Errors, r.Errors+r.N, r.FirstErr)
	}
	return nil
}
