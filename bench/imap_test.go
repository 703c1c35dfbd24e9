package bench_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// benchIMAPNotify measures how soon an IMAP client idling on one node
// learns of a message delivered through another: from the 250 of the
// SMTP DATA on a secondary A until the untagged EXISTS reaches the client
// idling on the other secondary B (the change goes A -> primary -> the
// replicated state -> B). The baseline is the same delivery through B's
// own SMTP listener, told to the session through B's hub. Messages are
// sent one at a time (MAILCLUSTER_BENCH_IMAP_N, default 200, at most 60 s
// in all); the nodes keep the default rescan (2 s).
func benchIMAPNotify(t *testing.T, rec *recorder) {
	n := envInt("MAILCLUSTER_BENCH_IMAP_N", 200, 1, 2000)
	opts := clusterOptions(t, "imap")
	opts.NoMail = false
	c := harness.StartCluster(t, harness.OwnConsul(t), 3, opts)
	p := waitPrimary(t, c, 10*time.Second)
	primary := c.Nodes[p].BaseURL
	mustDo(t, "POST", primary+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mustDo(t, "POST", primary+"/api/v1/domains/example.com/accounts", `{"mailbox":"idle","password":"idle-pass-12"}`, 201)
	if code, out, err := tryDo(setupClient, "PUT", primary+"/api/v1/settings/mailcluster/IMAP/AllowPlaintextLoopback", "application/json", `{"value":"Yes"}`); err != nil || code >= 300 {
		t.Fatalf("allow plain IMAP on loopback: %d %s %v", code, out, err)
	}
	secs := c.Secondaries(p)
	a, b := c.Nodes[secs[0]], c.Nodes[secs[1]]
	settle(t, c, 10*time.Second)

	exists := make(chan uint32, 16)
	client, err := imapclient.DialInsecure(b.IMAP, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		rec.fail(t, "imap dial: %v", err)
		return
	}
	defer client.Close()
	if err := client.Login("idle@example.com", "idle-pass-12").Wait(); err != nil {
		rec.fail(t, "imap login: %v", err)
		return
	}
	if _, err := client.Select("INBOX", nil).Wait(); err != nil {
		rec.fail(t, "imap select: %v", err)
		return
	}
	idle, err := client.Idle()
	if err != nil {
		rec.fail(t, "imap idle: %v", err)
		return
	}
	defer idle.Close()

	total := uint32(0)
	deadline := time.Now().Add(60 * time.Second)
	// measure sends count messages through addr and returns, for each,
	// the time from the 250 until the EXISTS that counts it.
	measure := func(addr string, count int) ([]time.Duration, error) {
		sc, err := smtp.Dial(addr)
		if err != nil {
			return nil, err
		}
		defer sc.Close()
		if err := sc.Hello("bench.test"); err != nil {
			return nil, err
		}
		var lat []time.Duration
		for i := 0; i < count && time.Now().Before(deadline); i++ {
			msg := fmt.Sprintf("From: load@remote.test\r\nTo: idle@example.com\r\nSubject: idle %d\r\n\r\nbody\r\n", total)
			if err := sc.SendMail("load@remote.test", []string{"idle@example.com"}, strings.NewReader(msg)); err != nil {
				return lat, err
			}
			accepted := time.Now()
			total++
			for {
				select {
				case got := <-exists:
					if got < total {
						continue // an older count
					}
					lat = append(lat, max(0, time.Since(accepted)))
				case <-time.After(5 * time.Second):
					return lat, fmt.Errorf("no EXISTS %d within 5 s", total)
				}
				break
			}
		}
		return lat, nil
	}
	stop := profile(t, b.Pid(), "imap-notify")
	cross, err := measure(a.SMTP, n)
	stop()
	if err != nil {
		rec.fail(t, "A -> B: %v (after %d messages)", err, len(cross))
		return
	}
	local, err := measure(b.SMTP, n)
	if err != nil {
		rec.fail(t, "B -> B: %v (after %d messages)", err, len(local))
		return
	}
	tg := atMost(200, "ms")
	note := "SMTP 250 on secondary A until EXISTS on an IMAP IDLE session of secondary B; baseline: the same through B's own SMTP"
	fig := fmt.Sprintf("IMAP IDLE EXISTS on n%d after SMTP 250 on n%d", secs[1], secs[0])
	rec.add("imap", fig+", p50", pct(cross, 0.5), "ms", pct(local, 0.5), "same node", nil, len(cross), note)
	rec.add("imap", fig+", p99", pct(cross, 0.99), "ms", pct(local, 0.99), "same node", &tg, len(cross), note)
	rec.add("imap", fig+", max", maxMS(cross), "ms", maxMS(local), "same node", nil, len(cross), note)
}
