package mailstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"mailcluster"
	"mailcluster/mailstore"
)

// benchDir is the domain service of the delivery benchmark: accounts by
// address and the [Directories] settings, read as cheaply as the node's
// snapshot serves them.
type benchDir struct {
	accounts map[string]*mailcluster.Account
	settings map[string]string
}

func (d *benchDir) LookupAccount(address string) (*mailcluster.Account, error) {
	a, ok := d.accounts[strings.ToLower(address)]
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "no account %s", address)
	}
	c := *a
	return &c, nil
}

func (d *benchDir) Usage(domain, mailbox string) mailcluster.Usage { return mailcluster.Usage{} }

func (d *benchDir) SetUsage(context.Context, string, string, mailcluster.Usage) error { return nil }

func (d *benchDir) Setting(section, key, def string) string {
	if v, ok := d.settings[section+"/"+key]; ok {
		return v
	}
	return def
}

// benchRep keeps the pending usage per mailbox (constant time per call,
// unlike fakeRep, which keeps every delta).
type benchRep struct {
	mu      sync.Mutex
	pending map[string][2]int64
}

func (r *benchRep) Report(deltas ...mailcluster.UsageDelta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range deltas {
		p := r.pending[d.Mailbox+"@"+d.Domain]
		r.pending[d.Mailbox+"@"+d.Domain] = [2]int64{p[0] + d.Bytes, p[1] + d.Messages}
	}
	return nil
}

func (r *benchRep) Pending(domain, mailbox string) (bytes, messages int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[mailbox+"@"+domain]
	return p[0], p[1]
}

// mustBenchStore returns a Store over a new temporary shared path (mailbox
// root and lock files) with n accounts, and the accounts.
func mustBenchStore(b *testing.B, n int) (*mailstore.Store, []*mailcluster.Account) {
	b.Helper()
	base := b.TempDir()
	root := filepath.Join(base, "mailboxes")
	locks := filepath.Join(base, "locks")
	for _, d := range []string{root, locks} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			b.Fatal(err)
		}
	}
	d := &benchDir{accounts: map[string]*mailcluster.Account{}, settings: map[string]string{
		mailcluster.SectionDirectories + "/" + mailcluster.KeyMailboxRoot: root,
		mailcluster.SectionDirectories + "/" + mailcluster.KeyLockFiles:   locks,
	}}
	var accs []*mailcluster.Account
	for i := range n {
		a := &mailcluster.Account{Domain: "example.com", Mailbox: fmt.Sprintf("user%d", i),
			MailboxPath: filepath.Join(root, "example.com", fmt.Sprintf("user%d", i)), QuotaBytes: 1 << 40}
		d.accounts[a.Address()] = a
		accs = append(accs, a)
	}
	st := mailstore.NewStore(d, &benchRep{pending: map[string][2]int64{}}, slog.New(slog.NewTextHandler(io.Discard, nil)), mailstore.Options{})
	return st, accs
}

// BenchmarkDeliverParallel is inbound delivery as the SMTP bench drives
// it: messages of 10 KiB from 8 concurrent senders, into one mailbox and
// spread over 8, through a real Store on the local disk (fsyncs
// included). It measures the CPU and system calls per delivery.
func BenchmarkDeliverParallel(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n"), 10<<10/66)
	body = append([]byte("From: a@remote.test\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n"), body...)
	header := []byte("Return-Path: <a@remote.test>\r\nReceived: from remote.test by bench; Wed, 2 Dec 2026 16:00:00 +0000\r\n")
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("Mailboxes%d", n), func(b *testing.B) {
			st, accs := mustBenchStore(b, n)
			ctx := context.Background()
			var next atomic.Int64
			b.SetBytes(int64(len(header) + len(body)))
			b.SetParallelism((8 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a := accs[int(next.Add(1))%len(accs)]
					if err := st.Deliver(ctx, []*mailcluster.Account{a}, header, bytes.NewReader(body), 1<<20); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time (user and system) the process used so
// far, in nanoseconds: with the disk's waits in ns/op, CPU per delivery
// is the figure that tells what a change saves.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
