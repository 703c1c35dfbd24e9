package integration_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/internal/harness"
)

// haproxyConfig turns docs/haproxy.cfg (the documented configuration)
// into one for this test: the load balancer's example addresses are
// replaced by lb (example port -> loopback address) and the nodes' by
// their loopback addresses.
func haproxyConfig(t *testing.T, c *Cluster, lb map[string]string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for port, addr := range lb {
		cfg = strings.ReplaceAll(cfg, "10.0.0.10:"+port+"\n", addr+"\n")
	}
	for i, n := range c.Nodes {
		ip := fmt.Sprintf("10.0.0.1%d", i+1)
		_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(n.BaseURL, "http://"))
		re := regexp.MustCompile(`(server mx` + fmt.Sprint(i+1) + ` )` + regexp.QuoteMeta(ip) + `:(8080|25|587|143|110)( check)( port 8080)?`)
		cfg = re.ReplaceAllStringFunc(cfg, func(line string) string {
			m := re.FindStringSubmatch(line)
			addr := map[string]string{"8080": strings.TrimPrefix(n.BaseURL, "http://"), "25": n.SMTP, "587": n.Submission,
				"143": n.IMAP, "110": n.POP3}[m[2]]
			out := m[1] + addr + m[3]
			if m[4] != "" {
				out += " port " + httpPort
			}
			return out
		})
	}
	if regexp.MustCompile(`(?m)^[^#]*10\.0\.0\.`).MatchString(cfg) {
		t.Fatalf("example addresses left in the configuration:\n%s", cfg)
	}
	return cfg
}

// startHAProxy runs haproxy in the foreground with cfg; stopped on cleanup.
func startHAProxy(t *testing.T, cfg string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed: `make test` installs it (apt-get install haproxy)")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	var out bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = &lockedWriter{mu: &mu, w: &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		mu.Lock()
		t.Logf("haproxy output:\n%s", out.String())
		mu.Unlock()
	})
}

// xmlCreateDomain sends an XML-API CreateDomain through client and
// reports whether the answer was status 0.
func xmlCreateDomain(client *http.Client, url, domain string) (bool, string) {
	doc := `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request version="1" echo="0" verbose="0"><Operation>CreateDomain</Operation><Parameters><Domain>` +
		domain + `</Domain></Parameters></Request></API></MDaemon>`
	req, _ := http.NewRequest("POST", url+"/MdMgmtWS", strings.NewReader(doc))
	req.SetBasicAuth("admin@localhost", adminPW)
	req.Header.Set("Content-Type", "text/xml")
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode == 200 && strings.Contains(b.String(), `<Status id="0"`), b.String()
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(addr, src string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// sendFrom is sendGo from the loopback address src.
func sendFrom(addr, src, to, subject, body string) error {
	conn, err := dialFrom(addr, src)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	msg := "From: sender@remote.test\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
	return c.SendMail("sender@remote.test", []string{to}, strings.NewReader(msg))
}

// greetingFrom connects to addr from src and returns the first line the
// server sends.
func greetingFrom(t *testing.T, addr, src string) string {
	t.Helper()
	conn, err := dialFrom(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return line
}

// TestLoadBalancerHAProxy runs the documented HAProxy configuration in
// front of three nodes: writes reach the primary, mail reaches every
// node, and the nodes see the clients behind HAProxy (PROXY protocol):
// in the Received header and in screening, on every mail protocol.
func TestLoadBalancerHAProxy(t *testing.T) {
	extra := map[int][]string{}
	for i := range 3 {
		extra[i] = []string{"--smtp-hostname", fmt.Sprintf("n%d.test", i)}
	}
	c := StartCluster(t, harness.SharedConsul(t), 3, extra)
	p := c.WaitPrimary(10 * time.Second)
	ports, err := harness.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	lbAddr := map[string]string{}
	for i, port := range []string{"8080", "25", "587", "143", "110"} {
		lbAddr[port] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	lbHTTP, lbSMTP := lbAddr["8080"], lbAddr["25"]
	// HAProxy connects to the nodes from 127.0.0.1 and sends a PROXY
	// header (send-proxy-v2); the clients below connect to HAProxy from
	// other loopback addresses, which the nodes must see.
	if code, body := admin(t, c.Nodes[p], "PUT", "/api/v1/settings/mailcluster/"+mailcluster.SectionNetwork+"/"+mailcluster.KeyProxyProtocolFrom,
		`{"value":"127.0.0.1"}`); code >= 300 {
		t.Fatalf("set ProxyProtocolFrom: %d %s", code, body)
	}
	for _, n := range c.Nodes {
		eventually(t, waitTimeout, "ProxyProtocolFrom replicated", func() bool {
			code, body := admin(t, n, "GET", "/api/v1/settings/mailcluster", "")
			return code == 200 && strings.Contains(body, `"ProxyProtocolFrom":"127.0.0.1"`)
		})
	}
	startHAProxy(t, haproxyConfig(t, c, lbAddr))
	lb := "http://" + lbHTTP
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 5 * time.Second, Jar: jar}

	eventually(t, 10*time.Second, "an XML-API write through HAProxy succeeds", func() bool {
		ok, _ := xmlCreateDomain(client, lb, "lb-first.example")
		return ok
	})
	for i := range 5 {
		if ok, body := xmlCreateDomain(client, lb, fmt.Sprintf("lb-%d.example", i)); !ok {
			t.Fatalf("write %d through HAProxy: %s", i, body)
		}
	}

	// SMTP through HAProxy reaches every node.
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"alice","password":"alice-pass-1"}`); code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	for _, n := range c.Nodes {
		eventually(t, waitTimeout, "account replicated", func() bool {
			code, _ := admin(t, n, "GET", "/api/v1/domains/example.com/accounts/alice", "")
			return code == 200
		})
	}
	const sender, blocked, other = "127.0.0.9", "127.0.0.7", "127.0.0.8"
	eventually(t, waitTimeout, "SMTP through HAProxy", func() bool { return sendFrom(lbSMTP, sender, "alice@example.com", "probe", "x") == nil })
	for i := range 9 {
		if err := sendFrom(lbSMTP, sender, "alice@example.com", fmt.Sprintf("via-lb-%d", i), "hello"); err != nil {
			t.Fatalf("SMTP %d through HAProxy: %v", i, err)
		}
	}
	seen := map[string]bool{}
	for _, id := range allMessages(t, c.Nodes[p], "alice@example.com") {
		_, raw := admin(t, c.Nodes[p], "GET", "/api/v1/domains/example.com/accounts/alice/messages/"+id, "")
		if m := regexp.MustCompile(`by (n\d)\.test \(mailcluster\)`).FindStringSubmatch(raw); m != nil {
			seen[m[1]] = true
		}
		// The node names the client, not HAProxy, in the Received header.
		if !strings.Contains(raw, "(["+sender+"])") || strings.Contains(raw, "[127.0.0.1]") {
			t.Fatalf("a message through HAProxy does not name the client %s:\n%s", sender, raw)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("SMTP through HAProxy reached %v, want all three nodes", seen)
	}

	// Screening blocks the client behind HAProxy, not HAProxy: on every
	// mail protocol the blocked client is refused and another is not.
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/screening/ips", `{"ip":"`+blocked+`"}`); code != 201 {
		t.Fatalf("block %s: %d %s", blocked, code, body)
	}
	for _, n := range c.Nodes {
		eventually(t, waitTimeout, "block replicated", func() bool {
			code, body := admin(t, n, "GET", "/api/v1/screening/ips", "")
			return code == 200 && strings.Contains(body, `"`+blocked+`"`)
		})
	}
	for _, tc := range []struct{ port, refused, welcome string }{
		{"25", "421 ", "220 "}, {"587", "421 ", "220 "}, {"143", "* BYE ", "* OK"}, {"110", "-ERR ", "+OK"},
	} {
		for range 3 { // round-robin: each node once
			if g := greetingFrom(t, lbAddr[tc.port], blocked); !strings.HasPrefix(g, tc.refused) || !strings.Contains(g, blocked) {
				t.Fatalf("port %s through HAProxy greeted the blocked client %s with %q", tc.port, blocked, g)
			}
			if g := greetingFrom(t, lbAddr[tc.port], other); !strings.HasPrefix(g, tc.welcome) {
				t.Fatalf("port %s through HAProxy greeted %s with %q", tc.port, other, g)
			}
		}
	}

	// Kill the primary: writes through HAProxy succeed again soon.
	start := time.Now()
	_ = c.Nodes[p].Signal(syscall.SIGKILL)
	c.Nodes[p].Wait()
	eventually(t, 10*time.Second, "XML-API writes through HAProxy after the primary was killed", func() bool {
		ok, _ := xmlCreateDomain(client, lb, fmt.Sprintf("after-%d.example", time.Now().UnixNano()))
		return ok
	})
	t.Logf("writes through HAProxy succeeded again %s after SIGKILL of the primary", time.Since(start).Round(time.Millisecond))
}
