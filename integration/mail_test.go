package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// swaks sends one message with the swaks client (a real, independent SMTP
// implementation) and returns its output and whether it succeeded.
func swaks(t *testing.T, server, to, subject, body string) (string, bool) {
	t.Helper()
	bin, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: `make test` installs it (apt-get install swaks)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--server", server, "--from", "sender@remote.test", "--to", to,
		"--helo", "client.test", "--header", "Subject: "+subject, "--body", body, "--timeout", "10").CombinedOutput()
	return string(out), err == nil
}

// sendGo sends one message with the go-smtp client.
func sendGo(addr, to, subject, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := "From: sender@remote.test\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
	return c.SendMail("sender@remote.test", []string{to}, strings.NewReader(msg))
}

type usage struct {
	Bytes    int64 `json:"bytes"`
	Messages int64 `json:"messages"`
}

func getUsage(t testing.TB, n *Node, addr string) usage {
	mb, dom, _ := strings.Cut(addr, "@")
	code, body := admin(t, n, "GET", "/api/v1/domains/"+dom+"/accounts/"+mb+"/usage", "")
	var u usage
	if code != 200 || json.Unmarshal([]byte(body), &u) != nil {
		t.Fatalf("usage of %s on %s: %d %s", addr, n.BaseURL, code, body)
	}
	return u
}

type messageList struct {
	Messages []struct {
		ID      string `json:"id"`
		Subject string `json:"subject"`
		Size    int64  `json:"size"`
	} `json:"messages"`
	NextCursor string `json:"nextCursor"`
}

// allMessages lists every message of an account through a node's REST API.
func allMessages(t testing.TB, n *Node, addr string) map[string]string {
	mb, dom, _ := strings.Cut(addr, "@")
	out := map[string]string{}
	cursor := ""
	for {
		code, body := admin(t, n, "GET", "/api/v1/domains/"+dom+"/accounts/"+mb+"/messages?limit=1000&cursor="+cursor, "")
		var l messageList
		if code != 200 || json.Unmarshal([]byte(body), &l) != nil {
			t.Fatalf("messages of %s: %d %s", addr, code, body)
		}
		for _, m := range l.Messages {
			out[m.Subject] = m.ID
		}
		if l.NextCursor == "" {
			return out
		}
		cursor = l.NextCursor
	}
}

func setupMailCluster(t *testing.T, n int, extra map[int][]string) (*Cluster, int) {
	t.Helper()
	c := StartCluster(t, harness.SharedConsul(t), n, extra)
	p := c.WaitPrimary(10 * time.Second)
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains/example.com/accounts",
		`{"mailbox":"alice","password":"alice-pass-1","quotaMessages":4}`); code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"bulk","password":"bulk-pass-12"}`); code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	for i := range c.Nodes {
		eventually(t, waitTimeout, "account replicated", func() bool {
			code, _ := admin(t, c.Nodes[i], "GET", "/api/v1/domains/example.com/accounts/bulk", "")
			return code == 200
		})
	}
	return c, p
}

// TestClusterMail sends to a secondary with swaks: the message is listed
// and readable on every node, usage agrees everywhere within a second,
// and a quota filled through one node refuses the next message on another.
func TestClusterMail(t *testing.T) {
	c, p := setupMailCluster(t, 3, nil)
	secs := c.Secondaries(p)
	a, b := c.Nodes[secs[0]], c.Nodes[secs[1]]
	if out, ok := swaks(t, a.SMTP, "alice@example.com", "first", "Hello from swaks."); !ok {
		t.Fatalf("swaks to a secondary failed:\n%s", out)
	}
	for i, n := range c.Nodes {
		ids := allMessages(t, n, "alice@example.com")
		id, ok := ids["first"]
		if !ok {
			t.Fatalf("n%d does not list the message: %v", i, ids)
		}
		code, raw := admin(t, n, "GET", "/api/v1/domains/example.com/accounts/alice/messages/"+id, "")
		if code != 200 || !strings.Contains(raw, "Hello from swaks.") || !strings.Contains(raw, "Received: from client.test") {
			t.Fatalf("n%d raw message: %d\n%s", i, code, raw)
		}
	}
	took := eventually(t, waitTimeout, "usage agrees on all nodes", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, "alice@example.com").Messages != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("usage agreed on all nodes %s after the 250", took.Round(time.Millisecond))

	// Fill alice (4 messages) through a, with the go-smtp client.
	for i := 2; i <= 4; i++ {
		if err := sendGo(a.SMTP, "alice@example.com", fmt.Sprintf("m%d", i), "filler"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	eventually(t, waitTimeout, "usage 4 on node b", func() bool { return getUsage(t, b, "alice@example.com").Messages == 4 })
	err := sendGo(b.SMTP, "alice@example.com", "over", "one too many")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 2, 2}) {
		t.Fatalf("over quota through another node: %v, want 552 5.2.2", err)
	}
	if out, ok := swaks(t, c.Nodes[p].SMTP, "alice@example.com", "over2", "x"); ok || !strings.Contains(out, "552 5.2.2") {
		t.Fatalf("swaks over quota through the primary: ok=%v\n%s", ok, out)
	}

	// A deletion on a secondary is a change to mail: allowed, and reported.
	ids := allMessages(t, b, "alice@example.com")
	if code, body := admin(t, b, "DELETE", "/api/v1/domains/example.com/accounts/alice/messages/"+ids["m2"], ""); code != 204 {
		t.Fatalf("delete on a secondary: %d %s", code, body)
	}
	eventually(t, waitTimeout, "usage 3 everywhere", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, "alice@example.com").Messages != 3 {
				return false
			}
		}
		return true
	})
	if err := sendGo(a.SMTP, "alice@example.com", "fits-again", "x"); err != nil {
		t.Fatalf("after a deletion there is room again: %v", err)
	}
}

// TestClusterMailReportsQueued delivers on a secondary while no primary is
// elected: the usage report waits and reaches the primary when it is back.
func TestClusterMailReportsQueued(t *testing.T) {
	c, p := setupMailCluster(t, 2, map[int][]string{1: {"--never-primary"}})
	if p != 0 {
		t.Fatalf("primary is n%d", p)
	}
	c.Nodes[0].Stop()
	eventually(t, waitTimeout, "no primary", func() bool { return len(c.Primaries()) == 0 })
	for i := range 3 {
		if err := sendGo(c.Nodes[1].SMTP, "bulk@example.com", fmt.Sprintf("q%d", i), "queued"); err != nil {
			t.Fatalf("delivery with no primary: %v", err)
		}
	}
	if u := getUsage(t, c.Nodes[1], "bulk@example.com"); u.Messages != 0 {
		t.Fatalf("usage published without a primary: %+v", u)
	}
	c.Start(0)
	eventually(t, 10*time.Second, "queued reports applied after the primary is back", func() bool {
		return getUsage(t, c.Nodes[1], "bulk@example.com").Messages == 3 && getUsage(t, c.Nodes[0], "bulk@example.com").Messages == 3
	})
}

// TestClusterMailKill kills a node with SIGKILL during a bulk send: every
// message that got a 250 is stored.
func TestClusterMailKill(t *testing.T) {
	c, p := setupMailCluster(t, 3, nil)
	vi := c.Secondaries(p)[0]
	victim := c.Nodes[vi]
	const clients, perClient = 8, 200
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("bulk-%d-%d", w, i)
				if err := sendGo(victim.SMTP, "bulk@example.com", subject, strings.Repeat("data ", 200)); err == nil {
					mu.Lock()
					accepted[subject] = true
					mu.Unlock()
				} else if isConnErr(err) {
					return
				}
			}
		}()
	}
	// Kill it under load: once a number of messages have been accepted.
	eventually(t, waitTimeout, "messages accepted before the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 10
	})
	_ = victim.Signal(syscall.SIGKILL)
	victim.Wait()
	close(stop)
	wg.Wait()
	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	if n == 0 {
		t.Fatal("no message was accepted before the kill")
	}
	stored := allMessages(t, c.Nodes[p], "bulk@example.com")
	for subject := range accepted {
		if _, ok := stored[subject]; !ok {
			t.Errorf("message %s got a 250 but is not stored", subject)
		}
	}
	t.Logf("%d messages accepted before SIGKILL, %d stored, none lost", n, len(stored))
	// The killed node's queued usage reports survive the kill: once it is
	// back, usage counts at least every accepted message and at most what
	// is on disk (a message stored but not acknowledged may be uncounted
	// until a recount).
	c.Start(vi)
	var last int64
	eventually(t, 10*time.Second, "usage counts every accepted message", func() bool {
		u := getUsage(t, c.Nodes[p], "bulk@example.com")
		if u.Messages != last {
			t.Logf("usage %d messages (accepted %d, stored %d)", u.Messages, n, len(stored))
			last = u.Messages
		}
		return u.Messages >= int64(n) && u.Messages <= int64(len(stored))
	})
}

// isConnErr tells a broken connection from an SMTP refusal.
func isConnErr(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se)
}

// TestRecountUsage removes a message file by hand and recounts.
func TestRecountUsage(t *testing.T) {
	n := StartNode(t, t.TempDir(), adminEnv)
	if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	code, body := admin(t, n, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"alice","password":"alice-pass-1"}`)
	if code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	var acc struct {
		MailboxPath string `json:"mailboxPath"`
	}
	_ = json.Unmarshal([]byte(body), &acc)
	for i := range 3 {
		if err := sendGo(n.SMTP, "alice@example.com", fmt.Sprintf("r%d", i), "count me"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitTimeout, "usage 3", func() bool { return getUsage(t, n, "alice@example.com").Messages == 3 })
	files, _ := filepath.Glob(filepath.Join(acc.MailboxPath, "new", "*"))
	if len(files) != 3 {
		t.Fatalf("%d files in %s", len(files), acc.MailboxPath)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	out, stderr, exit := runCLI(t, adminEnv, "recount-usage", "--url", n.BaseURL, "alice@example.com")
	if exit != 0 || !strings.Contains(out, "alice@example.com\t2 messages") {
		t.Fatalf("recount-usage: exit %d\n%s%s", exit, out, stderr)
	}
	if u := getUsage(t, n, "alice@example.com"); u.Messages != 2 {
		t.Fatalf("usage after recount = %+v", u)
	}
	if _, _, exit := runCLI(t, adminEnv, "recount-usage", "--url", n.BaseURL); exit != 2 {
		t.Fatalf("recount-usage without addresses: exit %d, want 2", exit)
	}
	out, _, exit = runCLI(t, adminEnv, "recount-usage", "--url", n.BaseURL, "--all")
	if exit != 0 || !strings.Contains(out, "admin@localhost") || !strings.Contains(out, "alice@example.com\t2 messages") {
		t.Fatalf("recount-usage --all: exit %d\n%s", exit, out)
	}
}
