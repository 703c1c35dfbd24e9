package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/dnstest"
)

// The outbound figure: messages relayed to Postfix's smtp-sink, counted
// by the sink, against a private Postfix relaying the same load to the
// same kind of sink.
const (
	relaySender = "sender@example.com"
	relayRcpt   = "rcpt@sink.test"
	relayRounds = 2 // passes per server, taking turns; the best counts
	// relayLoadTimeout bounds the sending of one pass, relayDrainTimeout
	// the wait for the sink to count every message after the last 250.
	relayLoadTimeout  = 2 * time.Minute
	relayDrainTimeout = 2 * time.Minute
)

// relayPass is what one pass measured.
type relayPass struct {
	load     loadResult    // the clients' side: until the last 250
	relayed  time.Duration // from the first connection until the sink counted every message
	received int           // the sink's count a moment after the last message
}

func (p relayPass) perSec() float64 { return float64(p.load.N) / p.relayed.Seconds() }

// benchRelay measures messages per second relayed from smtpClients
// clients (10 KiB, MAIL FROM a local address, RCPT TO a remote domain)
// through one standalone node to a local smtp-sink, from the first
// connection until the sink has received all of them, against a private
// Postfix (mynetworks 127.0.0.0/8, relayhost [127.0.0.1]:sink) under the
// same load. The node relays for 127.0.0.1 through [SMTP] RelayNetworks
// (Postfix's mynetworks) and finds the sink by MX through a DNS server in
// this process ([Outbound] DNSServer, MXPort); its [Queue] settings are
// the defaults (10 deliveries per destination, as Postfix is given).
// MAILCLUSTER_BENCH_RELAY_N messages per pass (default 2000).
func benchRelay(t *testing.T, rec *recorder) {
	n := envInt("MAILCLUSTER_BENCH_RELAY_N", 2000, 100, 20000)
	body := relayMessage()

	dns := dnstest.Start(t)
	dns.SetMX("sink.test", dnstest.MX{Host: "mx.sink.test", Pref: 10})
	dns.SetA("mx.sink.test", "127.0.0.1")

	dir := t.TempDir()
	node := StartProcess(t, filepath.Join(dir, "node.log"), adminEnv, "serve", "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", "127.0.0.1:0", "--node-name", "relay-node", "--smtp-addr", "127.0.0.1:0", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "")
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains/example.com/accounts", `{"mailbox":"sender","password":"sender-pass-12"}`, 201)
	setting := func(section, key, value string) {
		mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/"+section+"/"+key, fmt.Sprintf(`{"value":%q}`, value), 200)
	}
	setting("SMTP", "RelayNetworks", "127.0.0.1")
	setting("Outbound", "DNSServer", dns.Addr)

	base, err := os.MkdirTemp("", "mailcluster-bench-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Postfix's services run as the postfix user, who must reach its queue.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// Both relay to one sink port (in Postfix's main.cf, in the node's
	// [Outbound] MXPort); every pass gets a new sink on it, counting from
	// zero.
	first := startCountingSink(t)
	sinkPort := first.Port
	first.Stop()
	setting("Outbound", "MXPort", strconv.Itoa(sinkPort))
	pfx, err := startPostfixRelay(t, filepath.Join(base, "postfix"), sinkPort)
	if err != nil {
		rec.fail(t, "postfix: %v", err)
		return
	}
	rec.mu.Lock()
	rec.Machine["postfix"] = "Postfix " + pfx.Version
	rec.mu.Unlock()

	var best, bestPfx relayPass
	for round := range relayRounds {
		mc, err := relayPassOn(t, sinkPort, node.SMTP, body, n, func() func() { return profile(t, node.Pid(), fmt.Sprintf("relay-%d", round)) })
		if err != nil {
			rec.fail(t, "mailcluster, pass %d: %v (node log: %s)", round+1, err, node.LogTail(2000))
			return
		}
		t.Logf("mailcluster pass %d: %d messages relayed in %s (%.0f/s; all accepted after %s, %.0f/s)",
			round+1, mc.load.N, mc.relayed.Round(time.Millisecond), mc.perSec(), mc.load.Elapsed.Round(time.Millisecond), mc.load.PerSec())
		if best.load.N == 0 || mc.perSec() > best.perSec() {
			best = mc
		}
		pf, err := relayPassOn(t, sinkPort, pfx.Addr, body, n, nil)
		if err != nil {
			rec.fail(t, "postfix, pass %d: %v (%d still queued; log: %s)", round+1, err, pfx.Queued(), pfx.logTail())
			return
		}
		t.Logf("postfix pass %d: %d messages relayed in %s (%.0f/s; all accepted after %s, %.0f/s)",
			round+1, pf.load.N, pf.relayed.Round(time.Millisecond), pf.perSec(), pf.load.Elapsed.Round(time.Millisecond), pf.load.PerSec())
		if bestPfx.load.N == 0 || pf.perSec() > bestPfx.perSec() {
			bestPfx = pf
		}
	}
	tg := ratioAtLeast(1.0)
	rec.add("relay", fmt.Sprintf("SMTP relay to smtp-sink, 10 KiB messages, %d clients, one node", smtpClients), best.perSec(), "msg/s",
		bestPfx.perSec(), "Postfix relaying to smtp-sink", &tg, best.load.N,
		fmt.Sprintf("%d messages per pass, from the first connection until the sink counted every one; best of %d passes each, taking turns; accepted (last 250) at %.0f/s, Postfix %.0f/s",
			n, relayRounds, best.load.PerSec(), bestPfx.load.PerSec()))
}

// relayPassOn runs one pass against addr with a new sink on sinkPort;
// prof, when not nil, starts a profile of the pass and returns its stop.
func relayPassOn(t *testing.T, sinkPort int, addr, body string, n int, prof func() func()) (relayPass, error) {
	sink, err := startSinkOn(t, sinkPort)
	if err != nil {
		return relayPass{}, err
	}
	defer sink.Stop()
	if prof != nil {
		defer prof()()
	}
	return relayRun(addr, sink, body, n)
}

// relayRun sends n copies of body from smtpClients connections to addr
// and waits until sink has counted all of them; the duration runs from
// before the first connection to the sink's last count.
func relayRun(addr string, sink *countingSink, body string, n int) (relayPass, error) {
	start := time.Now()
	load := relayLoad(addr, body, n)
	if err := errOK(load); err != nil {
		return relayPass{load: load}, err
	}
	if load.N != n {
		return relayPass{load: load}, fmt.Errorf("%d of %d messages sent within %s", load.N, n, relayLoadTimeout)
	}
	done, ok := sink.WaitCount(n, relayDrainTimeout)
	if !ok {
		return relayPass{load: load}, fmt.Errorf("the sink counted %d of %d messages %s after the last was accepted", sink.Count(), n, relayDrainTimeout)
	}
	p := relayPass{load: load, relayed: done.Sub(start)}
	// A duplicate would show as more messages than were sent.
	time.Sleep(500 * time.Millisecond)
	if p.received = sink.Count(); p.received != n {
		return p, fmt.Errorf("the sink counted %d messages, %d were sent", p.received, n)
	}
	return p, nil
}

// relayLoad sends n messages from smtpClients connections, one SMTP
// session each (many messages per session), at most relayLoadTimeout.
func relayLoad(addr, body string, n int) loadResult {
	conns := make([]*smtp.Client, smtpClients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Quit()
				c.Close()
			}
		}
	}()
	return runLoad(smtpClients, relayLoadTimeout, int64(n), func(w int, _ int64) error {
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
		if err := conns[w].SendMail(relaySender, []string{relayRcpt}, strings.NewReader(body)); err != nil {
			conns[w].Close()
			conns[w] = nil
			return err
		}
		return nil
	})
}

// relayMessage is a 10 KiB message from the local sender to the remote
// recipient.
func relayMessage() string {
	var sb strings.Builder
	sb.WriteString("From: " + relaySender + "\r\nTo: " + relayRcpt + "\r\nSubject: relay load\r\nMessage-ID: <relay-load@example.com>\r\n\r\n")
	for sb.Len() < 10*1024 {
		sb.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
	}
	return sb.String()
}
