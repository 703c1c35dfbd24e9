package kvstore_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/kvstore"
)

const (
	benchAccounts = 100_000
	benchDomains  = 1_000
)

var (
	templateOnce sync.Once
	templateDir  string
	templatePath string
	templateErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
	os.Exit(code)
}

func benchKey(i int) string {
	return fmt.Sprintf("accounts/d%04d.example.com/user%06d", i%benchDomains, i)
}

// accountRecord is the stored form of a realistic account.
func accountRecord(i int) []byte {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	a := mailcluster.Account{
		Domain: fmt.Sprintf("d%04d.example.com", i%benchDomains), Mailbox: fmt.Sprintf("user%06d", i),
		FullName: "Firstname Lastname", FirstName: "Firstname", LastName: "Lastname",
		PasswordHash: "$2a$10$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		MailboxPath:  fmt.Sprintf("d%04d.example.com/user%06d", i%benchDomains, i),
		QuotaBytes:   1 << 30, CreatedAt: now, UpdatedAt: now,
	}
	v, err := json.Marshal(a)
	if err != nil {
		panic(err)
	}
	return v
}

// benchTemplate builds, once per run, a state file of benchAccounts
// account records.
func benchTemplate(tb testing.TB) string {
	templateOnce.Do(func() {
		templateDir, templateErr = os.MkdirTemp("", "kvstore-bench-")
		if templateErr != nil {
			return
		}
		templatePath = filepath.Join(templateDir, "template.db")
		s, err := kvstore.OpenState(templatePath, kvstore.StateOptions{NoSync: true})
		if err != nil {
			templateErr = err
			return
		}
		defer s.Close()
		const batch = 2000
		for i := 0; i < benchAccounts && templateErr == nil; i += batch {
			set := make([]mailcluster.KV, 0, batch)
			for j := i; j < i+batch; j++ {
				set = append(set, mailcluster.KV{Key: benchKey(j), Value: accountRecord(j), ModifyIndex: uint64(j + 1)})
			}
			templateErr = s.Apply(uint64(i+batch), set, nil, nil)
		}
	})
	if templateErr != nil {
		tb.Fatal(templateErr)
	}
	return templatePath
}

// openBenchState opens a copy of the template.
func openBenchState(tb testing.TB, o kvstore.StateOptions) *kvstore.State {
	tb.Helper()
	src, err := os.Open(benchTemplate(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(tb.TempDir(), "snapshot.db")
	dst, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
	return MustOpenState(tb, path, o)
}

func BenchmarkStateGet(b *testing.B) {
	s := openBenchState(b, kvstore.StateOptions{NoSync: true})
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		if _, ok := s.Get(benchKey(rng.IntN(benchAccounts))); !ok {
			b.Fatal("missing key")
		}
	}
}

func BenchmarkStateList(b *testing.B) {
	s := openBenchState(b, kvstore.StateOptions{NoSync: true})
	rng := rand.New(rand.NewPCG(1, 2))
	per := benchAccounts / benchDomains
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		prefix := fmt.Sprintf("accounts/d%04d.example.com/", rng.IntN(benchDomains))
		if got := s.List(prefix, "", 0); len(got) != per {
			b.Fatalf("List(%s) = %d keys", prefix, len(got))
		}
	}
}

func BenchmarkStateCount(b *testing.B) {
	s := openBenchState(b, kvstore.StateOptions{NoSync: true})
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		if n := s.Count("accounts/"); n != benchAccounts {
			b.Fatalf("count = %d", n)
		}
	}
}

func BenchmarkStateApply(b *testing.B) {
	for _, o := range []kvstore.StateOptions{{NoSync: true}, {NoSync: false}} {
		b.Run(fmt.Sprintf("NoSync=%v", o.NoSync), func(b *testing.B) {
			s := openBenchState(b, o)
			rng := rand.New(rand.NewPCG(1, 2))
			index := s.Index()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
			for range b.N {
				index++
				i := rng.IntN(benchAccounts)
				// One account overwritten and one created per change set.
				set := []mailcluster.KV{
					{Key: benchKey(i), Value: accountRecord(i), ModifyIndex: index},
					{Key: fmt.Sprintf("accounts/new.example.com/u%d", index), Value: accountRecord(i), ModifyIndex: index},
				}
				if err := s.Apply(index, set, nil, map[string][]byte{"feed": []byte("e/1")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStateHeap reports the heap a State holding benchAccounts
// account records keeps after serving reads of all of them, next to the
// heap of the same records held in memory (as the in-memory snapshot of
// earlier versions did).
func BenchmarkStateHeap(b *testing.B) {
	benchTemplate(b)
	for range b.N {
		before := heapInUse()
		s := openBenchState(b, kvstore.StateOptions{NoSync: true})
		for i := 0; i < benchAccounts; i += 10 {
			s.Get(benchKey(i))
		}
		for d := 0; d < benchDomains; d += 10 {
			s.List(fmt.Sprintf("accounts/d%04d.example.com/", d), "", 0)
		}
		stateHeap := heapInUse() - before
		all := s.List("", "", 0)
		snapHeap := heapInUse() - before - stateHeap
		runtime.KeepAlive(all)
		runtime.KeepAlive(s)
		b.ReportMetric(float64(stateHeap)/(1<<20), "state-heap-MB")
		b.ReportMetric(float64(snapHeap)/(1<<20), "snapshot-heap-MB")
	}
}

// cpuTime is the CPU time (user and system) the process used so far: on a
// shared machine a steadier figure than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkStateRebuild is the local side of a full re-sync: the
// benchAccounts records of an existing state written in pages of 1,000
// into a rebuild and swapped in (each op is one whole re-sync).
func BenchmarkStateRebuild(b *testing.B) {
	s := openBenchState(b, kvstore.StateOptions{NoSync: true})
	pages := make([][]mailcluster.KV, 0, benchAccounts/1000)
	for after := ""; ; {
		page := s.List("accounts/", after, 1000)
		if len(page) == 0 {
			break
		}
		pages = append(pages, page)
		after = page[len(page)-1].Key
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		r, err := s.Rebuild()
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range pages {
			if err := r.Put(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Commit(s.Index()+1, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	if n := s.Count("accounts/"); n != benchAccounts {
		b.Fatalf("count after rebuild = %d", n)
	}
}
