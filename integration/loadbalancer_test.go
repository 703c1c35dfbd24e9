package integration_test

import (
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

	"mailcluster/internal/harness"
)

// haproxyConfig turns docs/haproxy.cfg (the documented configuration)
// into one for this test: the load balancer's and the nodes' example
// addresses are replaced by the loopback addresses of the test.
func haproxyConfig(t *testing.T, c *Cluster, lbHTTP, lbSMTP, lbSub string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	cfg = strings.NewReplacer("10.0.0.10:8080", lbHTTP, "10.0.0.10:25", lbSMTP, "10.0.0.10:587", lbSub).Replace(cfg)
	for i, n := range c.Nodes {
		ip := fmt.Sprintf("10.0.0.1%d", i+1)
		_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(n.BaseURL, "http://"))
		re := regexp.MustCompile(`(server mx` + fmt.Sprint(i+1) + ` )` + regexp.QuoteMeta(ip) + `:(8080|25|587)( check)( port 8080)?`)
		cfg = re.ReplaceAllStringFunc(cfg, func(line string) string {
			m := re.FindStringSubmatch(line)
			addr := map[string]string{"8080": strings.TrimPrefix(n.BaseURL, "http://"), "25": n.SMTP, "587": n.Submission}[m[2]]
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

// TestLoadBalancerHAProxy runs the documented HAProxy configuration in
// front of three nodes.
func TestLoadBalancerHAProxy(t *testing.T) {
	extra := map[int][]string{}
	for i := range 3 {
		extra[i] = []string{"--smtp-hostname", fmt.Sprintf("n%d.test", i)}
	}
	c := StartCluster(t, harness.SharedConsul(t), 3, extra)
	p := c.WaitPrimary(10 * time.Second)
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	lbHTTP, lbSMTP, lbSub := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	startHAProxy(t, haproxyConfig(t, c, lbHTTP, lbSMTP, lbSub))
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
	eventually(t, waitTimeout, "SMTP through HAProxy", func() bool { return sendGo(lbSMTP, "alice@example.com", "probe", "x") == nil })
	for i := range 9 {
		if err := sendGo(lbSMTP, "alice@example.com", fmt.Sprintf("via-lb-%d", i), "hello"); err != nil {
			t.Fatalf("SMTP %d through HAProxy: %v", i, err)
		}
	}
	seen := map[string]bool{}
	for _, id := range allMessages(t, c.Nodes[p], "alice@example.com") {
		_, raw := admin(t, c.Nodes[p], "GET", "/api/v1/domains/example.com/accounts/alice/messages/"+id, "")
		if m := regexp.MustCompile(`by (n\d)\.test \(mailcluster\)`).FindStringSubmatch(raw); m != nil {
			seen[m[1]] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("SMTP through HAProxy reached %v, want all three nodes", seen)
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
