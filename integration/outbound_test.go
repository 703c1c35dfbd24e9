package integration_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"

	"mailcluster"
)

// TestOutboundRelay relays through a secondary of a two-node cluster to a
// standalone node serving dest.test, found through a test DNS server: an
// authenticated submission arrives in the destination mailbox and leaves
// the queue empty, the delivery is counted in /metrics, inbound SMTP
// without authentication cannot relay, a recipient the destination refuses
// gives the sender a DSN in its cluster mailbox, and a domain that must
// get TLS from a server that offers none keeps its message queued.
func TestOutboundRelay(t *testing.T) {
	dns := destDNS(t)
	dest := StartNode(t, t.TempDir(), adminEnv)
	if code, body := admin(t, dest, "POST", "/api/v1/domains", `{"name":"dest.test"}`); code != 201 {
		t.Fatalf("destination domain: %d %s", code, body)
	}
	if code, body := admin(t, dest, "POST", "/api/v1/domains/dest.test/accounts", `{"mailbox":"user","password":"user-pass-123"}`); code != 201 {
		t.Fatalf("destination account: %d %s", code, body)
	}
	_, destPort, _ := net.SplitHostPort(dest.SMTP)

	c, p := startOutboundCluster(t, 2)
	putSettings(t, c, p, "Outbound/DNSServer", dns.Addr, "Outbound/MXPort", destPort)
	sec := c.Nodes[c.Secondaries(p)[0]]

	t.Run("relay", func(t *testing.T) {
		if err := submitAs(sec.Submission, obMessage{"user@dest.test", "relay-1", "Relayed through the cluster."}); err != nil {
			t.Fatalf("submission to a secondary: %v", err)
		}
		var id string
		eventually(t, 20*time.Second, "the relayed message arrives at the destination", func() bool {
			id = allMessages(t, dest, "user@dest.test")["relay-1"]
			return id != ""
		})
		code, raw := admin(t, dest, "GET", "/api/v1/domains/dest.test/accounts/user/messages/"+id, "")
		if code != 200 || !strings.Contains(raw, "Relayed through the cluster.") || !strings.Contains(raw, "From: "+obSender) {
			t.Fatalf("relayed message at the destination: %d\n%s", code, raw)
		}
		eventually(t, waitTimeout, "the queue is empty after the delivery", func() bool {
			return len(queueList(t, sec, "")) == 0 && len(queueList(t, c.Nodes[p], "")) == 0
		})
		// No open relay: inbound SMTP without authentication, from a
		// network not in RelayNetworks, on both nodes.
		for _, n := range c.Nodes {
			err := sendGo(n.SMTP, "user@dest.test", "open-relay", "x")
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
				t.Fatalf("unauthenticated relay through %s: %v, want 554 5.7.1", n.SMTP, err)
			}
		}
		if _, ok := allMessages(t, dest, "user@dest.test")["open-relay"]; ok {
			t.Fatal("the refused relay arrived at the destination")
		}
		if q := queueList(t, sec, ""); len(q) != 0 {
			t.Fatalf("the refused relay was queued: %+v", q)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if v := scrapeMetrics(t, sec).value(t, "mailcluster_queue_delivered_total"); v < 1 {
			t.Fatalf("mailcluster_queue_delivered_total on the sending node = %v, want >= 1", v)
		}
	})

	t.Run("bounce", func(t *testing.T) {
		if err := submitAs(sec.Submission, obMessage{"nobody@dest.test", "bounce-1", "To nobody."}); err != nil {
			t.Fatalf("submission: %v", err)
		}
		var id string
		eventually(t, 20*time.Second, "a DSN reaches the sender", func() bool {
			id = allMessages(t, sec, obSender)["Undelivered Mail Returned to Sender"]
			return id != ""
		})
		code, raw := admin(t, c.Nodes[p], "GET", "/api/v1/domains/example.com/accounts/alice/messages/"+id, "")
		for _, want := range []string{"multipart/report", "report-type=delivery-status", "Action: failed", "Status: 5.1.1",
			"nobody@dest.test", "Subject: bounce-1"} {
			if code != 200 || !strings.Contains(raw, want) {
				t.Fatalf("DSN lacks %q: %d\n%s", want, code, raw)
			}
		}
		if _, ok := allMessages(t, dest, "user@dest.test")["bounce-1"]; ok {
			t.Fatal("the bounced message arrived at another mailbox")
		}
		eventually(t, waitTimeout, "the bounced message leaves the queue", func() bool { return len(queueList(t, sec, "")) == 0 })
	})

	t.Run("tls-required", func(t *testing.T) {
		plain := startSink(t, "127.0.0.1:0")
		putSettings(t, c, p, "Outbound/MXPort", plain.port(), "Outbound/TLSRequiredDomains", "dest.test")
		if err := submitAs(sec.Submission, obMessage{"user@dest.test", "tls-1", "Only over TLS."}); err != nil {
			t.Fatalf("submission: %v", err)
		}
		var q []struct{ id, reply string }
		eventually(t, 20*time.Second, "the message is deferred for want of TLS", func() bool {
			q = q[:0]
			for _, m := range queueList(t, c.Nodes[p], "") {
				if m.Subject == "tls-1" && len(m.Recipients) == 1 && m.Recipients[0].Attempts >= 1 {
					q = append(q, struct{ id, reply string }{m.ID, m.Recipients[0].Reply})
				}
			}
			return len(q) == 1
		})
		if !strings.Contains(q[0].reply, "TLS") {
			t.Fatalf("reply of the deferred recipient: %q, want it to name TLS", q[0].reply)
		}
		if counts, mails := plain.snapshot(); len(counts) != 0 || mails != 0 {
			t.Fatalf("the server without STARTTLS got MAIL %d times: %v", mails, counts)
		}
		if code, body := admin(t, c.Nodes[p], "DELETE", "/api/v1/queue/"+q[0].id, ""); code >= 300 {
			t.Fatalf("delete the queued message: %d %s", code, body)
		}
		eventually(t, waitTimeout, "the queue is empty", func() bool { return len(queueList(t, sec, "")) == 0 })
	})
}

// TestOutboundTakeover kills the node that owns 100 deferred messages (the
// destination down) in a three-node cluster on one shared path: the
// primary hands its queue to the live nodes, and once the destination is
// up every message arrives, at most once more; the node that comes back
// sends nothing that was taken over. Then a node stopped gracefully with
// deferred messages: each of them arrives exactly once.
func TestOutboundTakeover(t *testing.T) {
	dns := destDNS(t)
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	destAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	c, p := startOutboundCluster(t, 3)
	putSettings(t, c, p, "Queue/TakeoverAfter", "3s", "Queue/RetrySchedule", "1s",
		"Outbound/DNSServer", dns.Addr, "Outbound/MXPort", fmt.Sprint(ports[0]))
	prim := c.Nodes[p]
	primName := fmt.Sprintf("n%d", p)
	bi := c.Secondaries(p)[0]
	b := c.Nodes[bi]
	bName := fmt.Sprintf("n%d", bi)

	const total = 100
	subjects := takeoverSubjects("takeover", total)
	deferAll := func(n *Node, name string, subjects []string) {
		t.Helper()
		var msgs []obMessage
		for _, s := range subjects {
			msgs = append(msgs, obMessage{"rcpt@dest.test", s, "Taken over if need be."})
		}
		if err := submitAs(n.Submission, msgs...); err != nil {
			t.Fatalf("submission to %s: %v", name, err)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("%d messages deferred on %s", len(subjects), name), func() bool {
			q := queueList(t, prim, name)
			if len(q) != len(subjects) {
				return false
			}
			for _, m := range q {
				if m.Attempts < 1 {
					return false
				}
			}
			return true
		})
	}
	deferAll(b, bName, subjects)

	_ = b.Signal(syscall.SIGKILL)
	b.Wait()
	sink := startSink(t, destAddr)
	took := eventually(t, 60*time.Second, "every message arrives after the takeover", func() bool {
		counts, _ := sink.snapshot()
		for _, s := range subjects {
			if counts[s] == 0 {
				return false
			}
		}
		return true
	})
	counts, _ := sink.snapshot()
	dups := 0
	for _, s := range subjects {
		switch n := counts[s]; {
		case n > 2:
			t.Errorf("%s arrived %d times, want at most twice", s, n)
		case n == 2:
			dups++
		}
	}
	t.Logf("all %d messages arrived %s after the destination came up; %d duplicates", total, took.Round(time.Millisecond), dups)
	eventually(t, waitTimeout, "the queue is empty", func() bool { return len(queueList(t, prim, "")) == 0 })
	e := awaitEvent(t, prim, primName, mailcluster.EventQueueTakeover, fieldIs("node", bName))
	t.Logf("cluster log: %s %v", e.Message, e.Fields)

	// The killed node comes back: it has nothing left to send.
	b.Restart(t)
	eventually(t, waitTimeout, bName+" serves again", func() bool { return role(b) == "secondary" })
	time.Sleep(5 * time.Second)
	after, _ := sink.snapshot()
	for _, s := range subjects {
		if after[s] != counts[s] {
			t.Errorf("%s: %d arrivals before %s came back, %d after", s, counts[s], bName, after[s])
		}
	}
	if q := queueList(t, prim, bName); len(q) != 0 {
		t.Fatalf("%s's queue after its return: %d messages", bName, len(q))
	}

	t.Run("graceful", func(t *testing.T) {
		// The destination is down again; B queues and defers, then
		// stops gracefully: its messages go to the others, once.
		sink.stop()
		graceful := takeoverSubjects("graceful", 20)
		deferAll(b, bName, graceful)
		b.Stop()
		sink.listen(t, destAddr)
		eventually(t, 60*time.Second, "every message arrives after the graceful stop", func() bool {
			counts, _ := sink.snapshot()
			for _, s := range graceful {
				if counts[s] == 0 {
					return false
				}
			}
			return true
		})
		eventually(t, waitTimeout, "the queue is empty", func() bool { return len(queueList(t, prim, "")) == 0 })
		counts, _ := sink.snapshot()
		for _, s := range graceful {
			if counts[s] != 1 {
				t.Errorf("%s arrived %d times after a graceful stop, want exactly once", s, counts[s])
			}
		}
	})
}
