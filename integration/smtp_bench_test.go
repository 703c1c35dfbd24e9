package integration_test

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// BenchmarkSMTP measures messages per second for 10 KiB messages sent by
// 8 concurrent clients (one connection each, many messages per
// connection) to one standalone node, and the same load against Postfix's
// smtp-sink, which speaks the protocol and stores nothing: the ceiling of
// the client and the loopback on this machine.
func BenchmarkSMTP(b *testing.B) {
	body := tenKiB()
	b.Run("mailcluster", func(b *testing.B) {
		n := StartNode(b, b.TempDir(), adminEnv)
		if code, out := admin(b, n, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
			b.Fatalf("create domain: %d %s", code, out)
		}
		if code, out := admin(b, n, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"sink","password":"sink-pass-12"}`); code != 201 {
			b.Fatalf("create account: %d %s", code, out)
		}
		runSMTPLoad(b, n.SMTP, body)
	})
	b.Run("smtp-sink", func(b *testing.B) {
		addr := harness.StartSMTPSink(b)
		runSMTPLoad(b, addr, body)
	})
}

func tenKiB() string {
	var sb strings.Builder
	sb.WriteString("From: load@remote.test\r\nTo: sink@example.com\r\nSubject: load\r\n\r\n")
	for sb.Len() < 10*1024 {
		sb.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
	}
	return sb.String()
}

// runSMTPLoad sends b.N messages from 8 concurrent clients.
func runSMTPLoad(b *testing.B, addr, body string) {
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	var sent, failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if err := c.Hello("load.test"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := c.SendMail("load@remote.test", []string{"sink@example.com"}, strings.NewReader(body)); err != nil {
				failed.Add(1)
				continue
			}
			sent.Add(1)
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d messages failed", f, f+sent.Load())
	}
	b.ReportMetric(float64(sent.Load())/elapsed.Seconds(), "msgs/s")
}
