package bench_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// smtpClients is the number of concurrent SMTP clients, one connection
// each, many messages per connection.
const smtpClients = 8

// benchSMTP measures messages per second for 10 KiB messages into one
// standalone node, and the same load against Postfix's smtp-sink, which
// speaks the protocol and stores nothing (as integration/smtp_bench_test.go).
func benchSMTP(t *testing.T, rec *recorder) {
	dir := t.TempDir()
	n := StartProcess(t, filepath.Join(dir, "node.log"), adminEnv, "serve", "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", "127.0.0.1:0", "--node-name", "smtp-node", "--smtp-addr", "127.0.0.1:0", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "")
	mustDo(t, "POST", n.BaseURL+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mustDo(t, "POST", n.BaseURL+"/api/v1/domains/example.com/accounts", `{"mailbox":"sink","password":"sink-pass-12"}`, 201)
	for i := range smtpClients {
		mustDo(t, "POST", n.BaseURL+"/api/v1/domains/example.com/accounts", fmt.Sprintf(`{"mailbox":"sink%d","password":"sink-pass-12"}`, i), 201)
	}
	body := tenKiB()
	dur := loadDuration()
	one := func(int) string { return "sink@example.com" }
	stop := profile(t, n.Pid(), "smtp")
	mc := smtpLoad(n.SMTP, body, dur, one)
	stop()
	t.Logf("mailcluster: %d messages, %.0f/s, errors %d (%v)", mc.N, mc.PerSec(), mc.Errors, mc.FirstErr)
	spread := smtpLoad(n.SMTP, body, dur, func(w int) string { return fmt.Sprintf("sink%d@example.com", w) })
	t.Logf("mailcluster, one mailbox per client: %d messages, %.0f/s, errors %d (%v)", spread.N, spread.PerSec(), spread.Errors, spread.FirstErr)
	n.Stop()

	sinkAddr := harness.StartSMTPSink(t)
	sink := smtpLoad(sinkAddr, body, dur, one)
	t.Logf("smtp-sink: %d messages, %.0f/s, errors %d (%v)", sink.N, sink.PerSec(), sink.Errors, sink.FirstErr)
	if err := errOK(mc); err != nil {
		rec.fail(t, "mailcluster: %v", err)
		return
	}
	if err := errOK(sink); err != nil {
		rec.fail(t, "smtp-sink: %v", err)
		return
	}
	tg := ratioAtLeast(0.5)
	rec.add("smtp", fmt.Sprintf("SMTP 10 KiB messages, %d clients, one node", smtpClients), mc.PerSec(), "msg/s", sink.PerSec(), "smtp-sink", &tg, mc.N, "")
	rec.add("smtp", "SMTP message p99", mc.Pct(0.99), "ms", sink.Pct(0.99), "smtp-sink", nil, mc.N, "")
	if errOK(spread) == nil {
		rec.add("smtp", fmt.Sprintf("SMTP 10 KiB messages, %d clients, each to its own mailbox", smtpClients), spread.PerSec(), "msg/s", sink.PerSec(), "smtp-sink", nil, spread.N,
			"for information: the figure above sends every message to one mailbox, as integration/smtp_bench_test.go")
	}
}

func tenKiB() string {
	var sb strings.Builder
	sb.WriteString("From: load@remote.test\r\nTo: sink@example.com\r\nSubject: load\r\n\r\n")
	for sb.Len() < 10*1024 {
		sb.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
	}
	return sb.String()
}

// smtpLoad sends body from smtpClients connections for dur; worker w
// sends to rcpt(w).
func smtpLoad(addr, body string, dur time.Duration, rcpt func(w int) string) loadResult {
	conns := make([]*smtp.Client, smtpClients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Quit()
				c.Close()
			}
		}
	}()
	return runLoad(smtpClients, dur, 0, func(w int, _ int64) error {
		if conns[w] == nil {
			c, err := smtp.Dial(addr)
			if err != nil {
				return err
			}
			if err := c.Hello("load.test"); err != nil {
				c.Close()
				return err
			}
			conns[w] = c
		}
		if err := conns[w].SendMail("load@remote.test", []string{rcpt(w)}, strings.NewReader(body)); err != nil {
			conns[w].Close()
			conns[w] = nil
			return err
		}
		return nil
	})
}
