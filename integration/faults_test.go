package integration_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// writeResult is the outcome of one write of the load client.
type writeResult struct {
	name string
	code int // HTTP status; 0 when no answer came (timeout, reset)
	url  string
	at   time.Time // when the answer (or the error) came
}

// loadWriter sends uniquely named domain creations to whichever node says
// it is primary, as fast as it can, and records every outcome.
type loadWriter struct {
	mu      sync.Mutex
	urls    []string // the nodes' base URLs (a restarted node gets a new port)
	results []writeResult
	acked   int
	lastAck writeResult
}

func (w *loadWriter) setURL(i int, u string) { w.mu.Lock(); w.urls[i] = u; w.mu.Unlock() }

func (w *loadWriter) nodeURLs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.urls)
}

func (w *loadWriter) record(r writeResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.at = time.Now() // under the lock: results are in time order
	w.results = append(w.results, r)
	if r.code == http.StatusCreated {
		w.acked++
		w.lastAck = r
	}
}

// ackCount returns how many writes were acknowledged so far.
func (w *loadWriter) ackCount() int { w.mu.Lock(); defer w.mu.Unlock(); return w.acked }

// ackAfter returns the time of the first acknowledgement after t0 by a node
// other than the one at notURL.
func (w *loadWriter) ackAfter(t0 time.Time, notURL string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastAck.at.Before(t0) {
		return time.Time{}, false
	}
	i := sort.Search(len(w.results), func(i int) bool { return w.results[i].at.After(t0) })
	for ; i < len(w.results); i++ {
		if r := w.results[i]; r.code == http.StatusCreated && r.url != notURL {
			return r.at, true
		}
	}
	return time.Time{}, false
}

// run is one client: find the primary, write until a write fails, find the
// primary again. Bounded by maxIter iterations, stop and deadline.
func (w *loadWriter) run(id int, stop <-chan struct{}, maxIter int, deadline time.Time) {
	client := &http.Client{Timeout: 1500 * time.Millisecond}
	target := ""
	seq := 0
	for range maxIter {
		select {
		case <-stop:
			return
		default:
		}
		if time.Now().After(deadline) {
			return
		}
		if target == "" {
			if target = findPrimary(w.nodeURLs(), 300*time.Millisecond); target == "" {
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		seq++
		name := fmt.Sprintf("w%d-%06d.load.test", id, seq)
		code, err := postDomain(client, target, name)
		if err != nil {
			code = 0
		}
		w.record(writeResult{name: name, code: code, url: target})
		if code != http.StatusCreated {
			target = ""
		}
	}
}

// findPrimary asks every node's /health/primary at once and returns the
// first URL that answers 200, or "" when none does within timeout.
func findPrimary(urls []string, timeout time.Duration) string {
	client := &http.Client{Timeout: timeout}
	answers := make(chan string, len(urls))
	for _, u := range urls {
		go func() {
			resp, err := client.Get(u + "/health/primary")
			if err != nil {
				answers <- ""
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answers <- u
				return
			}
			answers <- ""
		}()
	}
	for range urls {
		if u := <-answers; u != "" {
			return u
		}
	}
	return ""
}

// postDomain creates a domain through base with the admin's credentials.
func postDomain(client *http.Client, base, name string) (int, error) {
	req, err := http.NewRequest("POST", base+"/api/v1/domains", strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth("admin@localhost", adminPW)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// domainSet lists the domains a node serves; ok false when it does not answer.
func domainSet(n *Node) (map[string]bool, bool) {
	code, body, err := tryDo("GET", n.BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "", "")
	if err != nil || code != 200 {
		return nil, false
	}
	var l struct {
		Domains []struct {
			Name string `json:"name"`
		} `json:"domains"`
	}
	if json.Unmarshal([]byte(body), &l) != nil {
		return nil, false
	}
	out := make(map[string]bool, len(l.Domains))
	for _, d := range l.Domains {
		out[d.Name] = true
	}
	return out, true
}

// waitAck waits until a node other than notURL acknowledges a write made
// after t0 and returns how long after t0 that was.
func waitAck(t *testing.T, w *loadWriter, t0 time.Time, notURL string, timeout time.Duration, what string) time.Duration {
	t.Helper()
	var at time.Time
	eventually(t, timeout, what, func() bool {
		var ok bool
		at, ok = w.ackAfter(t0, notURL)
		return ok
	})
	return at.Sub(t0)
}

func durationStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("min %s, median %s, max %s", s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond),
		s[len(s)-1].Round(time.Millisecond))
}

// TestFaultFailoverUnderLoad writes as fast as it can through whichever
// node is primary while the primary is killed with SIGKILL ten times (each
// killed node is started again, so the cluster keeps three nodes) and then
// paused with SIGSTOP for three times its session TTL. A second client
// writes directly to the paused (deposed) primary: every such write is
// refused, because the store fences every write with check-session. In the
// end every acknowledged write is on every node, and no refused write is
// anywhere.
func TestFaultFailoverUnderLoad(t *testing.T) {
	const (
		kills   = 10
		workers = 4
		pause   = 3 * time.Second // the session TTL is 1 s (the default)
	)
	testStart := time.Now()
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	c.WaitPrimary(10 * time.Second)

	w := &loadWriter{urls: make([]string, len(c.Nodes))}
	for i, n := range c.Nodes {
		w.urls[i] = n.BaseURL
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loadDeadline := time.Now().Add(90 * time.Second) // a bound; the test ends the load long before
	for id := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(id, stop, 1_000_000, loadDeadline) }()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad) // also when the test fails (before the nodes are killed)

	// waitFlowing lets the load run for half a second and waits until it
	// has at least 20 acknowledged writes more.
	waitFlowing := func(what string) {
		t.Helper()
		before, start := w.ackCount(), time.Now()
		eventually(t, 10*time.Second, what, func() bool {
			return w.ackCount() >= before+20 && time.Since(start) >= 500*time.Millisecond
		})
	}

	var killGaps []time.Duration
	for k := range kills {
		p := c.WaitPrimary(10 * time.Second)
		waitFlowing(fmt.Sprintf("kill %d: writes flow through n%d", k+1, p))
		old := c.Nodes[p]
		killedAt := time.Now()
		if err := old.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		old.Wait()
		n := c.Start(p)
		w.setURL(p, n.BaseURL)
		gap := waitAck(t, w, killedAt, old.BaseURL, 10*time.Second, fmt.Sprintf("kill %d: another node acknowledges a write", k+1))
		killGaps = append(killGaps, gap)
		eventually(t, 10*time.Second, fmt.Sprintf("kill %d: n%d back", k+1, p), func() bool {
			h, ok := n.Health()
			return ok && (h.Role == "secondary" || h.Role == "primary")
		})
	}
	t.Logf("%d SIGKILLs of the primary: from the kill to the next acknowledged write on another node: %s",
		kills, durationStats(killGaps))

	// SIGSTOP the primary for longer than its session TTL.
	p := c.WaitPrimary(10 * time.Second)
	waitFlowing(fmt.Sprintf("writes flow through n%d before SIGSTOP", p))
	old := c.Nodes[p]
	oldURL := old.BaseURL
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	cont := sync.OnceFunc(func() { _ = old.Resume() })
	t.Cleanup(cont)

	// The second client writes directly to the paused primary: a new
	// request every 200 ms (each hangs until SIGCONT, bounded by a
	// timeout), and for a second more after SIGCONT.
	var (
		dmu    sync.Mutex
		direct []writeResult
	)
	directStop := make(chan struct{})
	var dwg sync.WaitGroup
	dwg.Add(1)
	go func() {
		defer dwg.Done()
		client := &http.Client{Timeout: 8 * time.Second}
		var inner sync.WaitGroup
		defer inner.Wait()
		for i := range 40 {
			select {
			case <-directStop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			inner.Add(1)
			go func() {
				defer inner.Done()
				sent := time.Now()
				name := fmt.Sprintf("d-%03d.deposed.test", i)
				code, err := postDomain(client, oldURL, name)
				if err != nil {
					code = 0
				}
				dmu.Lock()
				direct = append(direct, writeResult{name: name, code: code, url: oldURL, at: sent})
				dmu.Unlock()
			}()
		}
	}()
	time.Sleep(pause)
	// While the old primary is paused, another node took over.
	pauseGap := waitAck(t, w, stoppedAt, oldURL, 2*time.Second, "a new primary acknowledges writes while the old one is paused")
	cont()
	contAt := time.Now()
	// Keep writing to it until it has answered a few writes sent after
	// SIGCONT (the deposed node, awake, has had its chance to accept).
	eventually(t, waitTimeout, "the resumed node answers direct writes sent after SIGCONT", func() bool {
		dmu.Lock()
		defer dmu.Unlock()
		n := 0
		for _, r := range direct {
			if r.at.After(contAt) && r.code != 0 {
				n++
			}
		}
		return n >= 3
	})
	close(directStop)
	dwg.Wait()
	eventually(t, 5*time.Second, "the resumed node is a secondary", func() bool {
		h, ok := old.Health()
		return ok && h.Role == "secondary"
	})
	t.Logf("SIGSTOP for %s: a new primary acknowledged a write %s after the pause began (the load clients time out after 1.5 s)",
		contAt.Sub(stoppedAt).Round(time.Millisecond), pauseGap.Round(time.Millisecond))
	waitFlowing("writes flow after SIGCONT")
	stopLoad()

	// Direct writes to the deposed primary: none acknowledged.
	dmu.Lock()
	directCodes := map[int]int{}
	var duringPause int
	for _, r := range direct {
		directCodes[r.code]++
		if r.at.Before(contAt) {
			duringPause++
		}
		if r.code == http.StatusCreated {
			t.Errorf("the deposed primary acknowledged %s (sent %s after SIGSTOP)", r.name, r.at.Sub(stoppedAt).Round(time.Millisecond))
		}
	}
	dmu.Unlock()
	t.Logf("direct writes to the deposed primary: %d (%d sent while it was paused), answers by status (0 = no answer): %v",
		len(direct), duringPause, directCodes)
	if duringPause == 0 || directCodes[http.StatusForbidden]+directCodes[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("the deposed primary refused no write: %v", directCodes)
	}

	// Every acknowledged write is on every node; no refused one anywhere.
	w.mu.Lock()
	results := slices.Clone(w.results)
	w.mu.Unlock()
	codes := map[int]int{}
	var acked, refused, unanswered []string
	for _, r := range results {
		codes[r.code]++
		switch r.code {
		case http.StatusCreated:
			acked = append(acked, r.name)
		case 0:
			unanswered = append(unanswered, r.name)
		default:
			refused = append(refused, r.name)
		}
	}
	for _, r := range direct {
		if r.code != http.StatusCreated {
			refused = append(refused, r.name)
		}
	}
	present := make([]int, len(c.Nodes))
	for i, n := range c.Nodes {
		var missing []string
		var have map[string]bool
		eventually(t, 15*time.Second, fmt.Sprintf("every acknowledged write on n%d", i), func() bool {
			var ok bool
			if have, ok = domainSet(n); !ok {
				return false
			}
			missing = missing[:0]
			for _, name := range acked {
				if !have[name] {
					missing = append(missing, name)
				}
			}
			return len(missing) == 0
		})
		present[i] = len(acked) - len(missing)
		for _, name := range refused {
			if have[name] {
				t.Errorf("n%d has %s, whose write was refused", i, name)
			}
		}
		if i == 0 {
			var n int
			for _, name := range unanswered {
				if have[name] {
					n++
				}
			}
			t.Logf("writes without an answer (timeout, connection lost): %d, of which %d were committed", len(unanswered), n)
		}
	}
	t.Logf("load: %d writes attempted by %d clients, %d acknowledged (201), %d refused (answers by status: %v), %d unanswered; "+
		"acknowledged writes present on n0 %d, n1 %d, n2 %d; test took %s",
		len(results), workers, len(acked), len(refused)-len(direct), codes, len(unanswered),
		present[0], present[1], present[2], time.Since(testStart).Round(time.Millisecond))
}

// storageNode starts a standalone node with domain example.com and the
// given accounts; it returns the node and each account's mailbox path.
func storageNode(t *testing.T, mailboxes ...string) (*Node, map[string]string) {
	t.Helper()
	n := StartNode(t, t.TempDir(), adminEnv)
	if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	paths := map[string]string{}
	for _, mb := range mailboxes {
		code, body := admin(t, n, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"`+mb+`","password":"`+mb+`-pass-123"}`)
		var acc struct {
			MailboxPath string `json:"mailboxPath"`
		}
		if code != 201 || json.Unmarshal([]byte(body), &acc) != nil || acc.MailboxPath == "" {
			t.Fatalf("create account %s: %d %s", mb, code, body)
		}
		paths[mb] = filepath.Clean(acc.MailboxPath)
	}
	return n, paths
}

// sendTo sends one message to several recipients with the go-smtp client.
func sendTo(addr string, to []string, subject, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := "From: sender@remote.test\r\nTo: " + strings.Join(to, ", ") + "\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
	if err := c.SendMail("sender@remote.test", to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// maildirCounts counts the entries of a Maildir's tmp, new and cur.
func maildirCounts(t *testing.T, box string) (tmp, new, cur int) {
	t.Helper()
	count := func(sub string) int {
		des, err := os.ReadDir(filepath.Join(box, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return len(des)
	}
	return count("tmp"), count("new"), count("cur")
}

// wantTempFail checks that err is an SMTP 4xx reply with a 4.x.x code and
// one of the allowed basic codes.
func wantTempFail(t *testing.T, what string, err error, codes ...int) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || !slices.Contains(codes, se.Code) || se.EnhancedCode[0] != 4 {
		t.Fatalf("%s: %v, want an SMTP reply %v with a 4.x.x code", what, err, codes)
	}
	return se
}

// TestFaultMailboxUnwritable makes mailboxes impossible to write even for
// root (a regular file where a directory must be): delivery answers 451
// (try again later), stores nothing anywhere, and works again once the
// directory is back.
func TestFaultMailboxUnwritable(t *testing.T) {
	n, boxes := storageNode(t, "alice", "bob")
	alice, bob := boxes["alice"], boxes["bob"]
	for _, to := range []string{"alice@example.com", "bob@example.com"} {
		if err := sendGo(n.SMTP, to, "baseline", "before the fault"); err != nil {
			t.Fatalf("baseline delivery to %s: %v", to, err)
		}
	}
	eventually(t, 2*time.Second, "usage 1", func() bool { return getUsage(t, n, "alice@example.com").Messages == 1 })

	// 1. alice's whole mailbox directory is a regular file.
	aside := alice + ".aside"
	if err := os.Rename(alice, aside); err != nil {
		t.Fatal(err)
	}
	const marker = "not a directory\n"
	if err := os.WriteFile(alice, []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := sendGo(n.SMTP, "alice@example.com", "lost-1", "the mailbox is a file")
	se := wantTempFail(t, "delivery into a mailbox that is a file", err, 451)
	t.Logf("mailbox directory replaced by a file: %d %v %q after %s", se.Code, se.EnhancedCode, se.Message, time.Since(start).Round(time.Millisecond))
	if b, err := os.ReadFile(alice); err != nil || string(b) != marker {
		t.Fatalf("the file in place of the mailbox changed: %q %v", b, err)
	}
	if tmp, nw, cur := maildirCounts(t, aside); tmp != 0 || nw != 1 || cur != 0 {
		t.Fatalf("alice's maildir (set aside) has tmp %d, new %d, cur %d; want 0, 1, 0", tmp, nw, cur)
	}
	if err := os.Remove(alice); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, alice); err != nil {
		t.Fatal(err)
	}
	if err := sendGo(n.SMTP, "alice@example.com", "ok-1", "the mailbox is back"); err != nil {
		t.Fatalf("delivery after the directory is back: %v", err)
	}
	if tmp, nw, cur := maildirCounts(t, alice); tmp != 0 || nw != 2 || cur != 0 {
		t.Fatalf("after restoring: tmp %d, new %d, cur %d; want 0, 2, 0", tmp, nw, cur)
	}

	// 2. One message for alice and bob, where bob's new/ is a file: the
	// message is written to alice's tmp/ and linked into her new/ before
	// bob's new/ fails; the delivery is all or nothing, so alice keeps no
	// copy and tmp/ is clean.
	bobNew := filepath.Join(bob, "new")
	if err := os.Rename(bobNew, bobNew+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bobNew, []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	err = sendTo(n.SMTP, []string{"alice@example.com", "bob@example.com"}, "lost-2", "bob's new/ is a file")
	se = wantTempFail(t, "delivery to alice and bob with bob's new/ a file", err, 451)
	t.Logf("second recipient's new/ replaced by a file: %d %v %q", se.Code, se.EnhancedCode, se.Message)
	if tmp, nw, cur := maildirCounts(t, alice); tmp != 0 || nw != 2 || cur != 0 {
		t.Fatalf("alice after the failed delivery: tmp %d, new %d, cur %d; want 0, 2, 0 (no partial message)", tmp, nw, cur)
	}
	if b, err := os.ReadFile(bobNew); err != nil || string(b) != marker {
		t.Fatalf("the file in place of bob's new/ changed: %q %v", b, err)
	}
	bobTmp, _ := os.ReadDir(filepath.Join(bob, "tmp"))
	bobCur, _ := os.ReadDir(filepath.Join(bob, "cur"))
	bobAside, _ := os.ReadDir(bobNew + ".aside")
	if len(bobTmp) != 0 || len(bobCur) != 0 || len(bobAside) != 1 {
		t.Fatalf("bob after the failed delivery: tmp %d, cur %d, new (set aside) %d; want 0, 0, 1", len(bobTmp), len(bobCur), len(bobAside))
	}
	// The log reaches the test through a pipe, maybe after the reply.
	eventually(t, 2*time.Second, "the node logs the failure at bob's new/", func() bool {
		return strings.Contains(n.Stderr(), bobNew+": not a directory")
	})
	if err := os.Remove(bobNew); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bobNew+".aside", bobNew); err != nil {
		t.Fatal(err)
	}
	if err := sendTo(n.SMTP, []string{"alice@example.com", "bob@example.com"}, "ok-2", "both are back"); err != nil {
		t.Fatalf("delivery to both after restoring: %v", err)
	}
	for addr, want := range map[string][]string{"alice@example.com": {"baseline", "ok-1", "ok-2"}, "bob@example.com": {"baseline", "ok-2"}} {
		got := allMessages(t, n, addr)
		if len(got) != len(want) {
			t.Fatalf("%s lists %v, want %v", addr, got, want)
		}
		for _, s := range want {
			if _, ok := got[s]; !ok {
				t.Fatalf("%s lists %v, want %v", addr, got, want)
			}
		}
	}

	// 3. During the delivery: once the message is being written to
	// alice's tmp/, her new/ becomes a file; the end of the data is
	// answered 451 and the temporary file is removed.
	sc, err := smtp.Dial(n.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Mail("sender@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := sc.Rcpt("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	dw, err := sc.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(dw, "From: sender@remote.test\r\nTo: alice@example.com\r\nSubject: lost-3\r\n\r\n"+
		strings.Repeat(strings.Repeat("y", 76)+"\r\n", 2000)); err != nil {
		t.Fatal(err)
	}
	// The message file is open in alice's tmp/ (unnamed where the file
	// system allows it, so it is seen among the node's open files).
	eventually(t, 5*time.Second, "the message is being written to alice's tmp/", func() bool {
		return openBelow(n.Pid(), filepath.Join(alice, "tmp"))
	})
	aliceNew := filepath.Join(alice, "new")
	if err := os.Rename(aliceNew, aliceNew+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aliceNew, []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(dw, "the end\r\n"); err != nil {
		t.Fatal(err)
	}
	se = wantTempFail(t, "new/ became a file during the delivery", dw.Close(), 451)
	t.Logf("new/ replaced by a file while the data was streaming: %d %v %q", se.Code, se.EnhancedCode, se.Message)
	tmpLeft, _ := os.ReadDir(filepath.Join(alice, "tmp"))
	curLeft, _ := os.ReadDir(filepath.Join(alice, "cur"))
	newAside, _ := os.ReadDir(aliceNew + ".aside")
	if b, _ := os.ReadFile(aliceNew); len(tmpLeft) != 0 || len(curLeft) != 0 || len(newAside) != 3 || string(b) != marker {
		t.Fatalf("alice after the failed delivery: tmp %d, cur %d, new (set aside) %d, file in place of new/ %q; want 0, 0, 3, unchanged",
			len(tmpLeft), len(curLeft), len(newAside), b)
	}
	if err := os.Remove(aliceNew); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aliceNew+".aside", aliceNew); err != nil {
		t.Fatal(err)
	}
	if err := sendGo(n.SMTP, "alice@example.com", "ok-3", "new/ is back"); err != nil {
		t.Fatalf("delivery after new/ is back: %v", err)
	}
	if tmp, nw, cur := maildirCounts(t, alice); tmp != 0 || nw != 4 || cur != 0 {
		t.Fatalf("alice in the end: tmp %d, new %d, cur %d; want 0, 4, 0", tmp, nw, cur)
	}
	// Usage counts only what was delivered.
	eventually(t, 2*time.Second, "usage counts only delivered messages", func() bool {
		return getUsage(t, n, "alice@example.com").Messages == 4 && getUsage(t, n, "bob@example.com").Messages == 2
	})
}

// TestFaultMailboxDiskFull puts a mailbox on a 64 KiB tmpfs and delivers a
// message bigger than the free space: a 4xx reply, no partial file, and
// the space is free again for the next (small) message. Mounting needs
// privileges: the test is skipped where mount is not permitted. The same
// failures (no space at each write, fsync, link and copy of a delivery)
// run on every machine in mailsvc's TestDeliveryStorageFaults, through the
// mail store's file system seam, which a built node does not expose.
func TestFaultMailboxDiskFull(t *testing.T) {
	n, boxes := storageNode(t, "carol")
	box := boxes["carol"]
	if err := os.MkdirAll(box, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", box, "tmpfs", 0, "size=64k,mode=0750"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v): the full-disk case needs mount privileges", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(box, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", box, err)
		}
	})
	free := func() int64 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(box, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	if err := sendGo(n.SMTP, "carol@example.com", "small-1", "fits"); err != nil {
		t.Fatalf("small message: %v", err)
	}
	before := free()
	big := strings.Repeat(strings.Repeat("x", 76)+"\r\n", int(2*before/78)+100) // twice the free space
	start := time.Now()
	err := sendGo(n.SMTP, "carol@example.com", "big", big)
	se := wantTempFail(t, "a message bigger than the free space", err, 451, 452)
	after := free()
	t.Logf("tmpfs 64 KiB, %d bytes free; a %d-byte message: %d %v %q after %s; %d bytes free afterwards",
		before, len(big), se.Code, se.EnhancedCode, se.Message, time.Since(start).Round(time.Millisecond), after)
	if tmp, nw, cur := maildirCounts(t, box); tmp != 0 || nw != 1 || cur != 0 {
		t.Fatalf("after the failed delivery: tmp %d, new %d, cur %d; want 0, 1, 0 (no partial file)", tmp, nw, cur)
	}
	if after != before {
		t.Fatalf("free space %d before, %d after the failed delivery", before, after)
	}
	if err := sendGo(n.SMTP, "carol@example.com", "small-2", "fits again"); err != nil {
		t.Fatalf("small message after the failure: %v", err)
	}
	if got := allMessages(t, n, "carol@example.com"); len(got) != 2 {
		t.Fatalf("carol lists %v, want small-1 and small-2", got)
	}
}

// TestFaultDataDirUnwritable starts a node whose data dir cannot be
// created (it lies below a regular file) or is a file: it exits with a
// non-zero status and an error that names the data dir.
func TestFaultDataDirUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dataDir := range []string{filepath.Join(file, "data"), file} {
		start := time.Now()
		_, stderr, code := runCLI(t, adminEnv, "serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0",
			"--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "")
		t.Logf("--data-dir %s: exit %d after %s: %s", dataDir, code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
		if code == 0 {
			t.Fatalf("serve with data dir %s exited 0", dataDir)
		}
		if !strings.Contains(stderr, "data dir "+dataDir) || !strings.Contains(stderr, "not a directory") {
			t.Fatalf("stderr does not name the data dir %s and the cause:\n%s", dataDir, stderr)
		}
		if strings.Contains(stderr, "msg=listening") {
			t.Fatalf("the node listened although its data dir is unusable:\n%s", stderr)
		}
	}
}

// openBelow reports whether process pid has a file open in dir (an
// unnamed file there reads as "dir/#inode (deleted)").
func openBelow(pid int, dir string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
