package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// appendPass is one APPEND pass: n messages from smtpClients IMAP
// connections, each logged in once.
type appendPass struct {
	load loadResult
}

func (p appendPass) perSec() float64 { return p.load.PerSec() }

// benchAppend measures IMAP APPEND of MAILCLUSTER_BENCH_APPEND_N (default
// 1000) messages of 10 KiB into one folder from smtpClients connections
// against a private Dovecot with mail_fsync = always (its Maildir, its
// index in its own directory), the servers taking turns for smtpRounds
// passes, each into a new folder (CREATE before the pass). Both answer OK
// only after the message is synced to disk, so each pass runs from before
// the first connection to the last OK; then the folder's Maildir must
// hold every appended message.
func benchAppend(t *testing.T, rec *recorder) {
	n := envInt("MAILCLUSTER_BENCH_APPEND_N", 1000, 100, 50000)
	loadStart := loadavg()
	base, err := os.MkdirTemp("", "mailcluster-bench-append-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Dovecot writes the Maildir as the mail user, who must reach it.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mu, err := dovecotMailUser()
	if err != nil {
		rec.fail(t, "dovecot mail user: %v", err)
		return
	}
	dovMaildir := filepath.Join(base, "dovecot-mail", "example.com", "bench")
	mcRoot := filepath.Join(base, "mailcluster-mail")
	mcMaildir := filepath.Join(mcRoot, "example.com", "bench")
	for _, d := range []string{dovMaildir, mcMaildir} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := chownTree(filepath.Join(base, "dovecot-mail"), mu); err != nil {
		rec.fail(t, "chown the Maildir: %v", err)
		return
	}
	dov, version, err := startDovecot(t, filepath.Join(base, "dovecot"), dovMaildir, mu)
	if err != nil {
		rec.fail(t, "dovecot: %v", err)
		return
	}
	rec.mu.Lock()
	rec.Machine["dovecot"] = "Dovecot " + version
	rec.mu.Unlock()

	node := StartProcess(t, filepath.Join(base, "node.log"), adminEnv, "serve", "--data-dir", filepath.Join(base, "node"),
		"--http-addr", "127.0.0.1:0", "--node-name", "append-node", "--smtp-addr", "", "--submission-addr", "",
		"--imap-addr", "127.0.0.1:0", "--pop3-addr", "")
	if node.IMAP == "" {
		rec.fail(t, "the node names no IMAP address")
		return
	}
	mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/Directories/MailboxRoot", fmt.Sprintf(`{"value":%q}`, mcRoot), 200)
	mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/IMAP/AllowPlaintextLoopback", `{"value":"Yes"}`, 200)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains/example.com/accounts",
		fmt.Sprintf(`{"mailbox":"bench","password":%q,"mailboxPath":%q}`, imapBenchPass, mcMaildir+"/"), 201)

	body := tenKiB()
	peers := []struct {
		name, addr, user, maildir string
	}{
		{"mailcluster", node.IMAP, "bench@example.com", mcMaildir},
		{"Dovecot", dov, "bench", dovMaildir},
	}
	var passes [2][]appendPass
	for r := range smtpRounds {
		for i, p := range peers {
			var stop func()
			if i == 0 {
				stop = profile(t, node.Pid(), fmt.Sprintf("append-%d", r+1))
			}
			folder := fmt.Sprintf("Pass%d", r+1)
			if err := imapCreate(p.addr, p.user, folder); err != nil {
				rec.fail(t, "%s, CREATE %s: %v", p.name, folder, err)
				continue
			}
			load := appendLoad(p.addr, p.user, folder, body, n)
			if stop != nil {
				stop()
			}
			if err := sentAll(load, n); err != nil {
				rec.fail(t, "%s, APPEND pass %d: %v", p.name, r+1, err)
				continue
			}
			// Every appended message is a file of the folder's Maildir
			// (Maildir++: .Name below the INBOX, on both servers).
			md := filepath.Join(p.maildir, "."+folder)
			if got := countFiles(filepath.Join(md, "new")) + countFiles(filepath.Join(md, "cur")); got != n {
				rec.fail(t, "%s, APPEND pass %d: %s holds %d messages, %d were appended", p.name, r+1, md, got, n)
				continue
			}
			passes[i] = append(passes[i], appendPass{load: load})
			t.Logf("%s, APPEND pass %d: %d messages in %s, %.0f/s (p99 %.1f ms)", p.name, r+1, n, load.Elapsed.Round(time.Millisecond), load.PerSec(), load.Pct(0.99))
		}
	}
	best := func(ps []appendPass) *appendPass {
		var b *appendPass
		for i := range ps {
			if b == nil || ps[i].perSec() > b.perSec() {
				b = &ps[i]
			}
		}
		return b
	}
	mc, dv := best(passes[0]), best(passes[1])
	if mc == nil || dv == nil {
		return // the errors are recorded
	}
	tg := ratioAtLeast(3.0)
	rec.add("smtp", fmt.Sprintf("IMAP APPEND 10 KiB, %d clients, one folder", smtpClients), mc.perSec(), "msg/s", dv.perSec(), "Dovecot "+version+" (mail_fsync = always)", &tg, mc.load.N,
		fmt.Sprintf("%d messages per pass, %d connections logged in once each; best of %d passes each, taking turns, each into a new folder; "+
			"both timed from the first connection to the last OK, which both send only after the message is synced; load average %s before, %s after",
			n, smtpClients, smtpRounds, loadStart, loadavg()))
}

// imapCreate creates folder in user's mailbox at addr.
func imapCreate(addr, user, folder string) error {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(user, imapBenchPass).Wait(); err != nil {
		return err
	}
	if err := c.Create(folder, nil).Wait(); err != nil {
		return err
	}
	return c.Logout().Wait()
}

// appendLoad appends n messages made of body to folder of user at addr
// from smtpClients connections, each logged in once, for at most
// smtpLoadTimeout.
func appendLoad(addr, user, folder, body string, n int) loadResult {
	conns := make([]*imapclient.Client, smtpClients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Logout().Wait()
				c.Close()
			}
		}
	}()
	return runLoad(smtpClients, smtpLoadTimeout, int64(n), func(w int, _ int64) error {
		if conns[w] == nil {
			c, err := imapclient.DialInsecure(addr, nil)
			if err != nil {
				return err
			}
			if err := c.Login(user, imapBenchPass).Wait(); err != nil {
				c.Close()
				return err
			}
			conns[w] = c
		}
		cmd := conns[w].Append(folder, int64(len(body)), nil)
		_, werr := strings.NewReader(body).WriteTo(cmd)
		cerr := cmd.Close()
		_, err := cmd.Wait()
		if err == nil {
			err = werr
		}
		if err == nil {
			err = cerr
		}
		if err != nil {
			conns[w].Close()
			conns[w] = nil
			return err
		}
		return nil
	})
}
