package bench_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster/internal/harness"
)

// The IMAP figures against Dovecot: one Maildir of imapMessageSize-byte
// messages (MAILCLUSTER_BENCH_IMAP_MESSAGES, default 12,000) served by a
// private Dovecot and by a mailcluster node, read by the same client code.
const (
	imapMessageSize = 10 * 1024
	imapBodies      = 200 // messages of the BODY.PEEK[] figure
	imapRounds      = 3   // measured passes per server, after one warm-up pass
	imapPassTimeout = 2 * time.Minute
	imapBenchPass   = "bench-pass-1234"
	imapSearchFrom  = "sender7@example.org" // From of every 100th message
)

// ratioAtMost is the goal of a figure that must stay within x times its
// baseline.
func ratioAtMost(x float64) target {
	return target{fmt.Sprintf("ratio <= %g", x), func(_, r float64) bool { return r <= x }}
}

// imapPeer is an IMAP server under measurement.
type imapPeer struct {
	name, addr, user string
}

// imapTimes is what one pass measured.
type imapTimes struct {
	login, sel, fetch, bodies, search time.Duration
	fetched                           int
	bodyBytes                         int64
	found                             []uint32
}

// benchIMAPDovecot compares IMAP reads of one large INBOX with Dovecot's
// (Debian's dovecot-imapd, `make bench-deps`). One Maildir is written
// straight to disk in cur/ (so neither server renames a file) and served
// as it is by both: Dovecot keeps its index and UID list in its own
// directory (INDEX= and CONTROL=), mailcluster its UID map beside cur/,
// and no command measured changes a file, so the two do not disturb each
// other and no copy is needed. Each pass connects and logs in, selects
// INBOX, fetches UID FLAGS RFC822.SIZE ENVELOPE of every message, the
// bodies of 200 messages spread over the folder (BODY.PEEK[], one
// command), and searches FROM; the first pass of each server builds its
// index or UID map and is not counted, then the servers take turns for
// imapRounds passes and each figure is the best of them.
func benchIMAPDovecot(t *testing.T, rec *recorder) {
	n := envInt("MAILCLUSTER_BENCH_IMAP_MESSAGES", 12000, 200, 100000)
	base, err := os.MkdirTemp("", "mailcluster-bench-imap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Dovecot reads the Maildir as the mail user, who must reach it.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mu, err := dovecotMailUser()
	if err != nil {
		rec.fail(t, "dovecot mail user: %v", err)
		return
	}
	mailRoot := filepath.Join(base, "mail")
	maildir := filepath.Join(mailRoot, "example.com", "bench")
	started := time.Now()
	if err := writeBenchMaildir(maildir, n); err != nil {
		rec.fail(t, "write the Maildir: %v", err)
		return
	}
	if err := chownTree(mailRoot, mu); err != nil {
		rec.fail(t, "chown the Maildir: %v", err)
		return
	}
	t.Logf("Maildir of %d messages of %d bytes written in %s", n, imapMessageSize, time.Since(started).Round(time.Millisecond))
	written, err := listDir(filepath.Join(maildir, "cur"))
	if err != nil {
		rec.fail(t, "list the Maildir: %v", err)
		return
	}

	dov, version, err := startDovecot(t, filepath.Join(base, "dovecot"), maildir, mu)
	if err != nil {
		rec.fail(t, "dovecot: %v", err)
		return
	}
	rec.mu.Lock()
	rec.Machine["dovecot"] = "Dovecot " + version
	rec.mu.Unlock()

	dir := t.TempDir()
	node := StartProcess(t, filepath.Join(dir, "node.log"), adminEnv, "serve", "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", "127.0.0.1:0", "--node-name", "imap-node", "--smtp-addr", "", "--submission-addr", "",
		"--imap-addr", "127.0.0.1:0", "--pop3-addr", "")
	if node.IMAP == "" {
		rec.fail(t, "the node names no IMAP address")
		return
	}
	mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/Directories/MailboxRoot", fmt.Sprintf(`{"value":%q}`, mailRoot), 200)
	mustDo(t, "PUT", node.BaseURL+"/api/v1/settings/mailcluster/IMAP/AllowPlaintextLoopback", `{"value":"Yes"}`, 200)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains", `{"name":"example.com"}`, 201)
	mustDo(t, "POST", node.BaseURL+"/api/v1/domains/example.com/accounts",
		fmt.Sprintf(`{"mailbox":"bench","password":%q,"mailboxPath":%q}`, imapBenchPass, maildir+"/"), 201)

	peers := []imapPeer{{"Dovecot", dov, "bench"}, {"mailcluster", node.IMAP, "bench@example.com"}}
	bodySet := spreadSeqSet(n, imapBodies)
	wantFound := (n + 100 - 8) / 100 // messages 7, 107, 207, ... (0-based)
	best := make([]imapTimes, len(peers))
	// check reports what a pass got wrong: both servers must return the
	// same answers for the same work.
	check := func(p imapPeer, got imapTimes) error {
		switch {
		case got.fetched != n:
			return fmt.Errorf("%s: FETCH 1:* returned %d messages, want %d", p.name, got.fetched, n)
		case got.bodyBytes != int64(len(bodySet)*imapMessageSize):
			return fmt.Errorf("%s: BODY.PEEK[] returned %d bytes, want %d", p.name, got.bodyBytes, len(bodySet)*imapMessageSize)
		case len(got.found) != wantFound:
			return fmt.Errorf("%s: SEARCH FROM %s found %d messages, want %d", p.name, imapSearchFrom, len(got.found), wantFound)
		}
		return nil
	}
	for i, p := range peers {
		warm, err := imapPass(p, n, bodySet)
		if err == nil {
			err = check(p, warm)
		}
		if err != nil {
			rec.fail(t, "%s, warm-up pass: %v", p.name, err)
			return
		}
		t.Logf("%s, warm-up pass: login %s, SELECT %s, FETCH 1:* %s, %d bodies %s, SEARCH %s", p.name,
			warm.login, warm.sel, warm.fetch, len(bodySet), warm.bodies, warm.search)
		best[i] = imapTimes{login: time.Hour, sel: time.Hour, fetch: time.Hour, bodies: time.Hour, search: time.Hour, found: warm.found}
	}
	if !slices.Equal(best[0].found, best[1].found) {
		t.Logf("the servers numbered the messages differently: SEARCH FROM %s gave %v from Dovecot, %v from mailcluster",
			imapSearchFrom, best[0].found[:min(5, len(best[0].found))], best[1].found[:min(5, len(best[1].found))])
	}
	stop := profile(t, node.Pid(), "imap-dovecot")
	for round := range imapRounds {
		for i, p := range peers {
			got, err := imapPass(p, n, bodySet)
			if err == nil {
				err = check(p, got)
			}
			if err != nil {
				stop()
				rec.fail(t, "%s, pass %d: %v", p.name, round+1, err)
				return
			}
			b := &best[i]
			b.login, b.sel, b.fetch = min(b.login, got.login), min(b.sel, got.sel), min(b.fetch, got.fetch)
			b.bodies, b.search = min(b.bodies, got.bodies), min(b.search, got.search)
		}
	}
	stop()
	// Neither server may have renamed a message file (that would be a
	// change, and the other server would have to find it again).
	if now, err := listDir(filepath.Join(maildir, "cur")); err != nil || !slices.Equal(now, written) {
		rec.fail(t, "the message files of cur/ changed during the passes (%v)", err)
		return
	}
	if top, err := listDir(maildir); err == nil {
		t.Logf("the Maildir holds %s", strings.Join(top, " "))
	}

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	tg := ratioAtMost(1.5)
	peer := "Dovecot " + version
	note := fmt.Sprintf("best of %d passes after a warm-up pass, servers taking turns; one Maildir of %d messages of %d bytes; go-imap v2 imapclient over loopback",
		imapRounds, n, imapMessageSize)
	dv, mc := best[0], best[1]
	for _, f := range []struct {
		figure string
		mc, dv time.Duration
		note   string
	}{
		{"IMAP connect and LOGIN", mc.login, dv.login,
			"; mailcluster checked this password within the last minute (the warm-up pass paid for bcrypt), Dovecot starts an imap process per login"},
		{fmt.Sprintf("IMAP SELECT INBOX of %d messages", n), mc.sel, dv.sel, ""},
		{fmt.Sprintf("IMAP FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), %d messages", n), mc.fetch, dv.fetch,
			"; includes the client parsing every envelope"},
		{fmt.Sprintf("IMAP FETCH BODY.PEEK[] of %d messages of 10 KiB", len(bodySet)), mc.bodies, dv.bodies,
			"; one command, messages spread over the folder"},
		{fmt.Sprintf("IMAP SEARCH FROM over %d messages", n), mc.search, dv.search,
			fmt.Sprintf("; %d messages match", wantFound)},
	} {
		rec.add("imap", f.figure, ms(f.mc), "ms", ms(f.dv), peer, &tg, imapRounds, note+f.note)
	}
}

// imapPass connects to p, logs in and runs every measured command once.
func imapPass(p imapPeer, n int, bodySet imap.SeqSet) (got imapTimes, err error) {
	start := time.Now()
	c, err := imapclient.DialInsecure(p.addr, nil)
	if err != nil {
		return got, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	// A server that stops answering ends the pass instead of the run.
	watchdog := time.AfterFunc(imapPassTimeout, func() { c.Close() })
	defer watchdog.Stop()
	if err := c.Login(p.user, imapBenchPass).Wait(); err != nil {
		return got, fmt.Errorf("LOGIN: %w", err)
	}
	got.login = time.Since(start)

	start = time.Now()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return got, fmt.Errorf("SELECT: %w", err)
	}
	got.sel = time.Since(start)
	if sel.NumMessages != uint32(n) {
		return got, fmt.Errorf("SELECT: %d messages, want %d", sel.NumMessages, n)
	}

	start = time.Now()
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	fetch := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true})
	for msg := fetch.Next(); msg != nil; msg = fetch.Next() {
		buf, err := msg.Collect()
		if err != nil {
			fetch.Close()
			return got, fmt.Errorf("FETCH 1:*: %w", err)
		}
		if buf.Envelope == nil || buf.RFC822Size != imapMessageSize || buf.UID == 0 {
			fetch.Close()
			return got, fmt.Errorf("FETCH 1:*: message %d without its envelope, size (%d) or UID", buf.SeqNum, buf.RFC822Size)
		}
		got.fetched++
	}
	if err := fetch.Close(); err != nil {
		return got, fmt.Errorf("FETCH 1:*: %w", err)
	}
	got.fetch = time.Since(start)

	start = time.Now()
	bodies := c.Fetch(bodySet, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for msg := bodies.Next(); msg != nil; msg = bodies.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				nb, err := io.Copy(io.Discard, b.Literal)
				got.bodyBytes += nb
				if err != nil {
					bodies.Close()
					return got, fmt.Errorf("FETCH BODY.PEEK[]: %w", err)
				}
			}
		}
	}
	if err := bodies.Close(); err != nil {
		return got, fmt.Errorf("FETCH BODY.PEEK[]: %w", err)
	}
	got.bodies = time.Since(start)

	start = time.Now()
	found, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: imapSearchFrom}}}, nil).Wait()
	if err != nil {
		return got, fmt.Errorf("SEARCH: %w", err)
	}
	got.search = time.Since(start)
	got.found = found.AllSeqNums()

	if err := c.Logout().Wait(); err != nil {
		return got, fmt.Errorf("LOGOUT: %w", err)
	}
	return got, nil
}

// listDir returns the names in dir, sorted.
func listDir(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	names := make([]string, len(des))
	for i, de := range des {
		names[i] = de.Name()
	}
	return names, err
}

// spreadSeqSet returns k sequence numbers spread evenly over 1..n.
func spreadSeqSet(n, k int) imap.SeqSet {
	k = min(k, n)
	var s imap.SeqSet
	for i := range k {
		s.AddNum(uint32(1 + i*n/k))
	}
	return s
}

// writeBenchMaildir writes n messages of exactly imapMessageSize bytes
// (CRLF line ends, as mailcluster stores mail) into dir/cur, named as
// mailcluster names a delivery (unique name with ",S=<size>") in the order
// of their numbers, half of them \Seen and every 20th also \Flagged.
// Message i is from sender<i mod 100>@example.org.
func writeBenchMaildir(dir string, n int) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	filler := "The quick brown fox jumps over the lazy dog; 0123456789.\r\n"
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sb strings.Builder
	for i := range n {
		date := first.Add(time.Duration(i) * time.Minute)
		sb.Reset()
		fmt.Fprintf(&sb, "Return-Path: <sender%d@example.org>\r\n", i%100)
		fmt.Fprintf(&sb, "Date: %s\r\n", date.Format(time.RFC1123Z))
		fmt.Fprintf(&sb, "From: \"Sender %d\" <sender%d@example.org>\r\n", i%100, i%100)
		sb.WriteString("To: \"Bench\" <bench@example.com>\r\n")
		fmt.Fprintf(&sb, "Subject: Message %d of the IMAP benchmark\r\n", i)
		fmt.Fprintf(&sb, "Message-ID: <%d.bench@example.org>\r\n", i)
		sb.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
		for sb.Len()+len(filler) <= imapMessageSize-2 {
			sb.WriteString(filler)
		}
		sb.WriteString(strings.Repeat("x", imapMessageSize-2-sb.Len()) + "\r\n")
		flags := ""
		switch {
		case i%20 == 0:
			flags = "FS"
		case i%2 == 0:
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%06dP%dQ%d.bench,S=%d:2,%s", date.Unix(), i%1000000, os.Getpid(), i+1, imapMessageSize, flags)
		p := filepath.Join(dir, "cur", name)
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(p, date, date); err != nil {
			return err
		}
	}
	return nil
}

// mailUser is the system user Dovecot reads mail as.
type mailUser struct {
	name, group string
	uid, gid    int
}

// dovecotMailUser returns the user this process runs as, except for root:
// Dovecot refuses mail access as root, so then nobody.
func dovecotMailUser() (mailUser, error) {
	u, err := user.Current()
	if err == nil && u.Uid == "0" {
		u, err = user.Lookup("nobody")
	}
	if err != nil {
		return mailUser{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return mailUser{}, err
	}
	mu := mailUser{name: u.Username, group: u.Gid, uid: uid, gid: gid}
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		mu.group = g.Name
	}
	return mu, nil
}

// chownTree gives dir and everything below it to u (when this process
// runs as someone else, that is as root).
func chownTree(dir string, u mailUser) error {
	if os.Geteuid() == u.uid {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	})
}

// startDovecot runs a private Dovecot in the foreground (dovecot -F) with
// its configuration, sockets, state, index and log under dir, serving
// maildir as the INBOX of any user with the password imapBenchPass
// (static passdb, plaintext on loopback) on a free port of 127.0.0.1. It
// is stopped with `doveadm stop` on cleanup. It returns the address and
// Dovecot's version.
func startDovecot(t *testing.T, dir, maildir string, u mailUser) (addr, version string, err error) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		bin = "/usr/sbin/dovecot"
	}
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		doveadm = "/usr/bin/doveadm"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version (make bench-deps installs dovecot-imapd): %w", bin, err)
	}
	version, _, _ = strings.Cut(strings.TrimSpace(string(out)), " ")
	for _, sub := range []string{"run", "state", "index", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", "", err
		}
	}
	for _, sub := range []string{"index", "home"} {
		if os.Geteuid() != u.uid {
			if err := os.Chown(filepath.Join(dir, sub), u.uid, u.gid); err != nil {
				return "", "", err
			}
		}
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		return "", "", err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(dovecotConfig(dir, maildir, ports[0], u)), 0o644); err != nil {
		return "", "", err
	}
	logf, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(bin, "-F", "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	logTail := func() string {
		var parts []string
		for _, f := range []string{"dovecot.out", "dovecot.log"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && len(b) > 0 {
				parts = append(parts, string(b[max(0, len(b)-2000):]))
			}
		}
		return strings.Join(parts, "\n")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, doveadm, "-c", conf, "stop").CombinedOutput(); err != nil {
			t.Logf("doveadm stop: %v %s", err, out)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Logf("dovecot (pid %d) did not stop; killing it", cmd.Process.Pid)
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dovecot log:\n%s", logTail())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return "", "", fmt.Errorf("dovecot exited at start: %s", logTail())
		default:
		}
		if greeted(addr) {
			return addr, version, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("dovecot does not greet on %s: %s", addr, logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// greeted reports whether an IMAP server at addr sends its "* OK" greeting.
func greeted(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "* OK")
}

// dovecotConfig is the private Dovecot's configuration: IMAP only, on
// 127.0.0.1:port, no TLS, plaintext logins allowed (loopback is trusted),
// one static user whose INBOX is maildir with Dovecot's index and control
// files (UID list) under dir, mail_fsync = always as in the peer's
// reference run. Not run as root, Dovecot's internal and login processes
// run as u and chroot nowhere.
func dovecotConfig(dir, maildir string, port int, u mailUser) string {
	rootless, loginChroot := "", ""
	if os.Geteuid() != 0 {
		rootless = fmt.Sprintf("default_internal_user = %[1]s\ndefault_internal_group = %[2]s\ndefault_login_user = %[1]s\n"+
			"service anvil {\n  chroot =\n}\n", u.name, u.group)
		loginChroot = "  chroot =\n"
	}
	return fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
mail_location = maildir:%[2]s:INDEX=%[1]s/index:CONTROL=%[1]s/index
mail_fsync = always
first_valid_uid = %[3]d
first_valid_gid = %[4]d
passdb {
  driver = static
  args = password=%[5]s
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[1]s/home
}
%[7]sservice imap-login {
%[8]s  inet_listener imap {
    address = 127.0.0.1
    port = %[6]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, maildir, u.uid, u.gid, imapBenchPass, port, rootless, loginChroot)
}
