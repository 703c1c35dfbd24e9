package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The inbound SMTP figures: 10 KiB messages from smtpClients clients into
// one standalone node, against a private Postfix delivering the same load
// into Maildirs through virtual(8) in the same run, with Postfix's
// smtp-sink (which stores nothing) as the ceiling.
const (
	// smtpClients is the number of concurrent SMTP clients, one
	// connection each, many messages per connection.
	smtpClients = 8
	smtpRounds  = 2 // passes per server and figure, taking turns; the best counts
	// smtpLoadTimeout bounds the sending of one pass, smtpDeliverTimeout
	// Postfix's delivery of what it accepted.
	smtpLoadTimeout    = 3 * time.Minute
	smtpDeliverTimeout = 3 * time.Minute
)

// smtpPass is what one pass measured.
type smtpPass struct {
	load loadResult    // the clients' side: until the last 250
	took time.Duration // from before the first connection until every message is in its Maildir's new/
	cpu  float64       // CPU seconds the server used
	// loadCPU is the CPU seconds the load generator (this process) used.
	loadCPU float64
}

func (p smtpPass) perSec() float64 { return float64(p.load.N) / p.took.Seconds() }

// benchSMTP measures messages per second of MAILCLUSTER_BENCH_SMTP_N
// (default 4000) messages of 10 KiB sent from smtpClients connections,
// every message to one mailbox and then each client to its own mailbox,
// into a standalone node and into a private Postfix delivering through
// virtual(8) into Maildirs (fsync on, Postfix's default), the servers
// taking turns for smtpRounds passes, each into fresh mailboxes. A
// message counts when it is durable in its Maildir: for the node that is
// its 250 (the node answers 250 only after the message file and new/ are
// synced), so its pass ends at the last 250 (and every message must be
// in new/ then); Postfix answers 250 once the message is in its queue,
// so its pass ends when the files in new/ number as many as were sent.
// smtp-sink gets the same load once, timed to the last 250.
func benchSMTP(t *testing.T, rec *recorder) {
	n := envInt("MAILCLUSTER_BENCH_SMTP_N", 4000, 200, 50000)
	loadStart := loadavg()
	base, err := os.MkdirTemp("", "mailcluster-bench-smtp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Postfix's services and virtual(8) (as their users) must reach
	// their directories below base.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// Mailboxes: round r uses one<r> for the one-mailbox figure and
	// box<r>-<w> for client w of the spread figure, on both servers.
	oneBox := func(r int) string { return fmt.Sprintf("one%d", r) }
	spreadBox := func(r, w int) string { return fmt.Sprintf("box%d-%d", r, w) }
	var names []string
	for r := range smtpRounds {
		names = append(names, oneBox(r))
		for w := range smtpClients {
			names = append(names, spreadBox(r, w))
		}
	}

	mcRoot := filepath.Join(base, "mailcluster-mail")
	node := StartProcess(t, filepath.Join(base, "node.log"), adminEnv, "serve", "--data-dir", filepath.Join(base, "node"),
		"--http-addr", "127.0.0.1:0", "--node-name", "smtp-node", "--smtp-addr", "127.0.0.1:0", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "")
	mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/Directories/MailboxRoot", fmt.Sprintf(`{"value":%q}`, mcRoot), 200)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mcMaildir := func(box string) string { return filepath.Join(mcRoot, "example.com", box) }
	for _, box := range names {
		mustDo(t, "POST", node.BaseURL+"/api/v1/domains/example.com/accounts",
			fmt.Sprintf(`{"mailbox":%q,"password":"sink-pass-12","mailboxPath":%q}`, box, mcMaildir(box)+"/"), 201)
		// The Maildirs exist before the load, as Postfix's do: the
		// figure is about deliveries, not about creating mailboxes.
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(mcMaildir(box), sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}

	pfx, err := startPostfixVirtual(t, filepath.Join(base, "postfix"), names)
	if err != nil {
		rec.fail(t, "postfix: %v", err)
		return
	}
	rec.mu.Lock()
	rec.Machine["postfix"] = "Postfix " + pfx.Version
	rec.mu.Unlock()

	body := tenKiB()
	newDirs := func(maildir func(string) string, boxes []string) []string {
		dirs := make([]string, len(boxes))
		for i, b := range boxes {
			dirs[i] = filepath.Join(maildir(b), "new")
		}
		return dirs
	}
	// mcPass sends to the node; rcpt(w) is client w's mailbox.
	mcPass := func(name string, rcpt func(w int) string, boxes []string) (smtpPass, error) {
		defer profile(t, node.Pid(), name)()
		cpu, own := cpuSeconds(node.Pid()), cpuSeconds(os.Getpid())
		load := smtpLoadN(node.SMTP, body, n, func(w int) string { return rcpt(w) + "@example.com" })
		cpu, own = cpuSeconds(node.Pid())-cpu, cpuSeconds(os.Getpid())-own
		if err := sentAll(load, n); err != nil {
			return smtpPass{load: load}, err
		}
		// Acknowledged means durable: every message is in new/ already.
		if got := countAll(newDirs(mcMaildir, boxes)); got != n {
			return smtpPass{load: load}, fmt.Errorf("%d of %d acknowledged messages are in new/ after the last 250", got, n)
		}
		return smtpPass{load: load, took: load.Elapsed, cpu: cpu, loadCPU: own}, nil
	}
	pfxPass := func(rcpt func(w int) string, boxes []string) (smtpPass, error) {
		dirs := newDirs(pfx.Maildir, boxes)
		cpu, own := pfx.CPUSeconds(), cpuSeconds(os.Getpid())
		start := time.Now()
		load := smtpLoadN(pfx.Addr, body, n, func(w int) string { return rcpt(w) + "@" + postfixVirtualDomain })
		if err := sentAll(load, n); err != nil {
			return smtpPass{load: load}, err
		}
		deadline := time.Now().Add(smtpDeliverTimeout)
		for {
			got := countAll(dirs)
			if got >= n {
				p := smtpPass{load: load, took: time.Since(start), cpu: pfx.CPUSeconds() - cpu, loadCPU: cpuSeconds(os.Getpid()) - own}
				if got > n {
					return p, fmt.Errorf("%d messages in new/, %d were sent", got, n)
				}
				// The queue empties a moment after the last delivery;
				// the next pass starts on an idle Postfix.
				for range 500 {
					if pfx.Queued() == 0 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				return p, nil
			}
			if time.Now().After(deadline) {
				return smtpPass{load: load}, fmt.Errorf("%d of %d messages in new/ %s after the last 250; %d still queued; log: %s",
					got, n, smtpDeliverTimeout, pfx.Queued(), pfx.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// passes[figure][server], server 0 mailcluster, 1 Postfix.
	var passes [2][2][]smtpPass
	figures := []string{"one mailbox", "each client to its own mailbox"}
	for r := range smtpRounds {
		for f := range figures {
			rcpt := func(int) string { return oneBox(r) }
			boxes := []string{oneBox(r)}
			if f == 1 {
				rcpt = func(w int) string { return spreadBox(r, w) }
				boxes = boxes[:0]
				for w := range smtpClients {
					boxes = append(boxes, spreadBox(r, w))
				}
			}
			// Each pass starts with no dirty data of the one before
			// (its writeback would land on the next server's pass).
			syscall.Sync()
			p, err := mcPass(fmt.Sprintf("smtp-%d-%d", f+1, r+1), rcpt, boxes)
			if err != nil {
				rec.fail(t, "mailcluster, %s, pass %d: %v", figures[f], r+1, err)
				t.Logf("node log: %s", node.LogTail(2000))
			} else {
				passes[f][0] = append(passes[f][0], p)
				t.Logf("mailcluster, %s, pass %d: %d messages in %s, %.0f/s (p99 %.1f ms); %s",
					figures[f], r+1, n, p.took.Round(time.Millisecond), p.perSec(), p.load.Pct(0.99), p.cpuText(n))
			}
			syscall.Sync()
			p, err = pfxPass(rcpt, boxes)
			if err != nil {
				rec.fail(t, "postfix, %s, pass %d: %v", figures[f], r+1, err)
			} else {
				passes[f][1] = append(passes[f][1], p)
				t.Logf("postfix, %s, pass %d: %d messages in new/ after %s, %.0f/s (last 250 after %s, %.0f/s); %s", figures[f], r+1, n,
					p.took.Round(time.Millisecond), p.perSec(), p.load.Elapsed.Round(time.Millisecond), p.load.PerSec(), p.cpuText(n))
			}
		}
	}
	node.Stop()

	sinkSrv := startCountingSink(t)
	sink := smtpLoadN(sinkSrv.Addr, body, n, func(int) string { return "sink@example.com" })
	sinkSrv.Stop()
	if err := sentAll(sink, n); err != nil {
		rec.fail(t, "smtp-sink: %v", err)
	} else {
		t.Logf("smtp-sink: %d messages in %s, %.0f/s", n, sink.Elapsed.Round(time.Millisecond), sink.PerSec())
	}
	loadEnd := loadavg()

	peer := "Postfix " + pfx.Version + " virtual(8) into a Maildir"
	common := fmt.Sprintf("%d messages of 10 KiB per pass, %d clients with one connection each; best of %d passes each, taking turns, each into fresh mailboxes; "+
		"mailcluster timed to the last 250 (it answers 250 once the message and new/ are synced; all were in new/ then), "+
		"Postfix from the first connection until all were files in new/ (it answers 250 once queued; virtual(8) fsyncs before the rename); load average %s before, %s after",
		n, smtpClients, smtpRounds, loadStart, loadEnd)
	tg := ratioAtLeast(3.0)
	for f, figure := range []string{
		fmt.Sprintf("SMTP inbound 10 KiB, %d clients, one mailbox", smtpClients),
		fmt.Sprintf("SMTP inbound 10 KiB, %d clients, each to its own mailbox", smtpClients),
	} {
		mc, pf := bestSMTPPass(passes[f][0]), bestSMTPPass(passes[f][1])
		if mc == nil || pf == nil {
			continue // the errors are recorded
		}
		note := common + fmt.Sprintf("; Postfix's last 250 at %.0f/s; CPU: mailcluster %s; Postfix %s", pf.load.PerSec(), mc.cpuText(mc.load.N), pf.cpuText(pf.load.N))
		rec.add("smtp", figure, mc.perSec(), "msg/s", pf.perSec(), peer, &tg, mc.load.N, note)
		if f == 0 {
			rec.add("smtp", "SMTP inbound message p99, one mailbox", mc.load.Pct(0.99), "ms", pf.load.Pct(0.99), "Postfix, until its 250 (queued)", nil, mc.load.N,
				"for information: Postfix acknowledges before delivery")
		}
	}
	if mc := bestSMTPPass(passes[0][0]); mc != nil && sink.N == n && sink.Errors == 0 {
		rec.add("smtp", fmt.Sprintf("SMTP inbound 10 KiB, %d clients, one mailbox, against smtp-sink", smtpClients), mc.perSec(), "msg/s", sink.PerSec(), "smtp-sink (stores nothing: the ceiling)", nil, mc.load.N,
			"for information: the same load, smtp-sink timed to the last 250, one pass")
	}
}

// cpuText tells the CPU time per message of the server and of the load
// generator, and how many of the machine's CPUs the server kept busy.
func (p smtpPass) cpuText(n int) string {
	return fmt.Sprintf("server %.2f CPU ms per message (%.2f of %d CPUs), load generator %.2f", 1000*p.cpu/float64(n), p.cpu/p.took.Seconds(), runtime.NumCPU(), 1000*p.loadCPU/float64(n))
}

// bestSMTPPass returns the fastest pass, nil when there is none.
func bestSMTPPass(passes []smtpPass) *smtpPass {
	var best *smtpPass
	for i := range passes {
		if best == nil || passes[i].perSec() > best.perSec() {
			best = &passes[i]
		}
	}
	return best
}

// countAll returns the number of entries in dirs.
func countAll(dirs []string) int {
	n := 0
	for _, d := range dirs {
		n += countFiles(d)
	}
	return n
}

// sentAll checks that a load of n messages was sent without an error.
func sentAll(r loadResult, n int) error {
	if err := errOK(r); err != nil {
		return err
	}
	if r.N != n {
		return fmt.Errorf("%d of %d messages sent within %s", r.N, n, smtpLoadTimeout)
	}
	return nil
}

func tenKiB() string {
	var sb strings.Builder
	sb.WriteString("From: load@remote.test\r\nTo: sink@example.com\r\nSubject: load\r\n\r\n")
	for sb.Len() < 10*1024 {
		sb.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
	}
	return sb.String()
}

// smtpLoadN sends n messages made of body from smtpClients connections,
// one SMTP session each (many messages per session), for at most
// smtpLoadTimeout; worker w sends to rcpt(w).
func smtpLoadN(addr, body string, n int, rcpt func(w int) string) loadResult {
	conns := make([]*smtp.Client, smtpClients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Quit()
				c.Close()
			}
		}
	}()
	return runLoad(smtpClients, smtpLoadTimeout, int64(n), func(w int, _ int64) error {
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
