package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/cluster"
)

// reporters is how many goroutines report at once in the benchmarks (the
// bench's SMTP clients).
const reporters = 8

// deliveryWork stands for the part of a delivery before its report: a
// 10 KiB message written and synced into dir, as a Maildir delivery does.
func deliveryWork(tb testing.TB, dir string, i int) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d", i)))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 10<<10)); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// reportConcurrently makes b.N reports from reporters goroutines, each
// after deliveryWork when deliver is set.
func reportConcurrently(b *testing.B, ob *cluster.Outbox, deliver bool) {
	var wg sync.WaitGroup
	for g := range reporters {
		n := b.N / reporters
		if g < b.N%reporters {
			n++
		}
		dir := b.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if deliver {
					deliveryWork(b, dir, i)
				}
				if err := ob.Report(delta(10 << 10)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutboxReport measures Report from 8 goroutines at once against
// an outbox file, bare and after a synced message write each (a
// delivery's pace); commits/report is how many appends (each one write
// and one fdatasync) the outbox made to its file per report.
func BenchmarkOutboxReport(b *testing.B) {
	for _, deliver := range []bool{false, true} {
		b.Run(fmt.Sprintf("deliver=%v", deliver), func(b *testing.B) {
			never := func(context.Context, mailcluster.UsageReport) (uint64, error) { return 0, context.Canceled }
			ob, err := cluster.OpenOutbox(filepath.Join(b.TempDir(), "outbox.db"), "n1", never, discard())
			if err != nil {
				b.Fatal(err)
			}
			defer ob.Close()
			cpu := cpuTime(b)
			b.ResetTimer()
			reportConcurrently(b, ob, deliver)
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/report")
			b.ReportMetric(float64(cluster.OutboxCommits(ob))/float64(b.N), "commits/report")
		})
	}
}

// BenchmarkOutboxApply measures the whole path on a standalone node (its
// own primary): 8 goroutines report (bare, or each after a synced message
// write), the outbox sends to the service, which applies the reports to
// its state; the clock stops once the outbox is empty.
// state-commits/report counts the state's transactions,
// outbox-commits/report the appends to the outbox file (reports, and
// what the primary acknowledged).
func BenchmarkOutboxApply(b *testing.B) {
	for _, deliver := range []bool{false, true} {
		b.Run(fmt.Sprintf("deliver=%v", deliver), func(b *testing.B) { benchmarkApply(b, deliver) })
	}
}

func benchmarkApply(b *testing.B, deliver bool) {
	svc, st, ob := mustPrimaryOutbox(b, "n1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	before := mustLocal(svc).Usage("example.com", "alice")
	index := st.Index()
	cpu := cpuTime(b)
	b.ResetTimer()
	reportConcurrently(b, ob, deliver)
	deadline := time.Now().Add(time.Minute)
	for ob.Queued() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/report")
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Messages-before.Messages != int64(b.N) {
		b.Fatalf("published %d messages, want %d", u.Messages-before.Messages, b.N)
	}
	b.ReportMetric(float64(st.Index()-index)/float64(b.N), "state-commits/report")
	b.ReportMetric(float64(cluster.OutboxCommits(ob))/float64(b.N), "outbox-commits/report")
}
