package mailsvc_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/mailstore"
)

// benchClients is the number of SMTP connections of BenchmarkInboundSMTP,
// as in the inbound section of make bench.
const benchClients = 8

// BenchmarkInboundSMTP measures the CPU per inbound message of 10 KiB:
// a real server over the real store on the os file system, benchClients
// go-smtp connections sending b.N messages in all to one mailbox, one
// transaction each (SendMail). The log goes to a text handler at Info, as
// a node's does, writing nowhere. Allocations include the clients'; the
// cpu-ns/op metric is the CPU time (user and system) of the whole process
// per message, clients, store and usage outbox included.
func BenchmarkInboundSMTP(b *testing.B) {
	e := mustOpenEnvFS(b, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, mailstore.OSFS)
	msg := benchMessage(10 << 10)
	clients := make([]*smtp.Client, benchClients)
	for i := range clients {
		c, err := smtp.Dial(e.inbound)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if err := c.Hello("client.test"); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	for _, c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := c.SendMail("sender@remote.test", []string{"alice@example.com"}, strings.NewReader(msg)); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if err := first.Load(); err != nil {
		b.Fatal(*err)
	}
	a, err := mustLocal(e.svc).LookupAccount("alice@example.com")
	if err != nil {
		b.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(a.MailboxPath, "new"))
	if err != nil {
		b.Fatal(err)
	}
	if len(ents) != b.N {
		b.Fatalf("%d messages in new/, want %d", len(ents), b.N)
	}
}

// benchMessage returns a plain text message of size bytes with the header
// fields of ordinary mail.
func benchMessage(size int) string {
	var sb strings.Builder
	sb.WriteString("From: \"Sender\" <sender@remote.test>\r\nTo: \"Alice\" <alice@example.com>\r\n")
	sb.WriteString("Subject: A message of the inbound benchmark\r\nDate: Wed, 02 Dec 2026 12:00:00 +0000\r\n")
	sb.WriteString("Message-ID: <1.bench@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for sb.Len()+len(line) <= size-2 {
		sb.WriteString(line)
	}
	sb.WriteString(strings.Repeat("x", size-2-sb.Len()) + "\r\n")
	if sb.Len() != size {
		panic(fmt.Sprintf("benchMessage: %d bytes", sb.Len()))
	}
	return sb.String()
}

// processCPU returns the CPU time the process has used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
