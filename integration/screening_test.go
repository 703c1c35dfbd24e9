package integration_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// fromIP sends an HTTP request whose source address is ip (a loopback
// address other than 127.0.0.1, so that screening sees a distinct client).
func fromIP(ip, method, url, user, pass string) (int, string, error) {
	return fromIPWithBody(ip, method, url, user, pass, "", "")
}

// fromIPWithBody is fromIP with a request body of a content type ("" for
// none).
func fromIPWithBody(ip, method, url, user, pass, contentType, body string) (int, string, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// smtpGreeting connects from ip and returns the server's first reply line.
func smtpGreeting(ip, addr string) (string, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func setScreening(t *testing.T, n *Node, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if code, body := admin(t, n, "PUT", "/api/v1/settings/mailcluster/Screening/"+k, fmt.Sprintf(`{"value":%q}`, v)); code >= 300 {
			t.Fatalf("set %s: %d %s", k, code, body)
		}
	}
}

// TestClusterScreeningBlock spreads failed logins over two secondaries;
// the primary blocks the address, and the third node refuses it within a
// second, on the APIs and at SMTP connect.
func TestClusterScreeningBlock(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	setScreening(t, c.Nodes[p], map[string]string{"IPFailures": "4"})
	secs := c.Secondaries(p)
	eventually(t, waitTimeout, "setting replicated", func() bool {
		for _, i := range secs {
			code, body := admin(t, c.Nodes[i], "GET", "/api/v1/settings/mailcluster/Screening/IPFailures", "")
			if code != 200 || !strings.Contains(body, `"4"`) {
				return false
			}
		}
		return true
	})
	const attacker = "127.0.0.9"
	for i := range 4 {
		n := c.Nodes[secs[i%2]]
		code, _, err := fromIP(attacker, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", fmt.Sprintf("guess-%d-xyz", i))
		if err != nil || code != 401 {
			t.Fatalf("guess %d on n%d: %d %v", i, secs[i%2], code, err)
		}
	}
	start := time.Now()
	third := c.Nodes[p]
	eventually(t, waitTimeout, "blocked on the third node", func() bool {
		code, _, _ := fromIP(attacker, "GET", third.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
		return code == 403
	})
	t.Logf("block enforced on the third node %s after the last failure", time.Since(start).Round(time.Millisecond))
	code, body, _ := fromIP(attacker, "GET", third.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
	if code != 403 || !strings.Contains(body, "urn:mailcluster:problem:forbidden") || !strings.Contains(body, "blocked") {
		t.Fatalf("blocked request: %d %s", code, body)
	}
	for _, n := range c.Nodes {
		g, err := smtpGreeting(attacker, n.SMTP)
		if err != nil || !strings.HasPrefix(g, "421 4.7.0") {
			t.Fatalf("SMTP greeting for a blocked address: %q %v", g, err)
		}
		if g, _ := smtpGreeting("127.0.0.1", n.SMTP); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("SMTP greeting for another address: %q", g)
		}
	}
	if code, _, _ := fromIP("127.0.0.10", "GET", third.BaseURL+"/api/v1/node", "admin@localhost", adminPW); code != 200 {
		t.Fatalf("another address is refused: %d", code)
	}
	if code, body := admin(t, c.Nodes[secs[0]], "DELETE", "/api/v1/screening/ips/"+attacker, ""); code != 403 {
		t.Fatalf("unblock on a secondary: %d %s", code, body)
	}
	if code, body := admin(t, third, "DELETE", "/api/v1/screening/ips/"+attacker, ""); code != 204 {
		t.Fatalf("unblock on the primary: %d %s", code, body)
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("unblocked on n%d", i), func() bool {
			code, _, _ := fromIP(attacker, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
			return code == 200
		})
	}
}

var reToken = regexp.MustCompile(`(?m)^\s{4}([A-Z2-7]{20,})\s*$`)

// TestClusterScreeningThawByToken freezes a domain administrator by failed
// logins; the token mailed to the account thaws it on the primary, and it
// can log in on every node.
func TestClusterScreeningThawByToken(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	primary := c.Nodes[p]
	setScreening(t, primary, map[string]string{"AccountFailures": "3", "IPFailures": "100"})
	admin(t, primary, "POST", "/api/v1/domains", `{"name":"example.com"}`)
	if code, body := admin(t, primary, "POST", "/api/v1/domains/example.com/accounts",
		`{"mailbox":"boss","password":"boss-pass-123","adminRights":"domain"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, "account replicated", func() bool {
			code, _ := do(t, "GET", n.BaseURL+"/api/v1/node", "boss@example.com", "boss-pass-123", "", "")
			return code == 200
		})
		if code, _, _ := fromIP(fmt.Sprintf("127.0.0.%d", 20+i), "GET", n.BaseURL+"/api/v1/node", "boss@example.com", fmt.Sprintf("bad-%d-pass", i)); code != 401 {
			t.Fatalf("wrong password: %d", code)
		}
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("frozen on n%d", i), func() bool {
			code, _ := do(t, "GET", n.BaseURL+"/api/v1/node", "boss@example.com", "boss-pass-123", "", "")
			return code == 401
		})
	}
	// The token was mailed to the account; read it as the global admin.
	var token string
	eventually(t, waitTimeout, "thaw token mailed", func() bool {
		for _, id := range allMessages(t, primary, "boss@example.com") {
			_, raw := admin(t, primary, "GET", "/api/v1/domains/example.com/accounts/boss/messages/"+id, "")
			if m := reToken.FindStringSubmatch(raw); m != nil {
				token = m[1]
				return true
			}
		}
		return false
	})
	sec := c.Nodes[c.Secondaries(p)[0]]
	thaw := fmt.Sprintf(`{"address":"boss@example.com","token":%q}`, token)
	if code, body := do(t, "POST", sec.BaseURL+"/api/v1/screening/thaw", "", "", "application/json", thaw); code != 403 || !strings.Contains(body, primary.BaseURL) {
		t.Fatalf("thaw on a secondary: %d %s", code, body)
	}
	if code, body := do(t, "POST", primary.BaseURL+"/api/v1/screening/thaw", "", "", "application/json", thaw); code != 204 {
		t.Fatalf("thaw on the primary: %d %s", code, body)
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("login on n%d after thaw", i), func() bool {
			code, _ := do(t, "GET", n.BaseURL+"/api/v1/node", "boss@example.com", "boss-pass-123", "", "")
			return code == 200
		})
	}
	if code, _ := do(t, "POST", primary.BaseURL+"/api/v1/screening/thaw", "", "", "application/json", thaw); code != 401 {
		t.Fatalf("second use of the token: %d, want 401", code)
	}
}

// TestClusterScreeningConsulDown stops Consul: a secondary blocks a
// guessing address on its own; when Consul is back, the queued failures
// are counted by the primary (the address is blocked cluster-wide), and
// the primary's view wins over the secondary's own decision.
func TestClusterScreeningConsulDown(t *testing.T) {
	consul := harness.PersistentConsul(t)
	c := StartCluster(t, consul, 3, nil)
	p := c.WaitPrimary(15 * time.Second)
	setScreening(t, c.Nodes[p], map[string]string{"IPFailures": "3"})
	si := c.Secondaries(p)[0]
	sec := c.Nodes[si]
	eventually(t, waitTimeout, "setting replicated", func() bool {
		_, body := admin(t, sec, "GET", "/api/v1/settings/mailcluster/Screening/IPFailures", "")
		return strings.Contains(body, `"3"`)
	})
	consul.Stop()
	eventually(t, waitTimeout, "no primary", func() bool { return len(c.Primaries()) == 0 })

	const attacker = "127.0.0.30"
	for i := range 3 {
		if code, _, err := fromIP(attacker, "GET", sec.BaseURL+"/api/v1/node", "admin@localhost", fmt.Sprintf("g-%d-xyz123", i)); err != nil || code != 401 {
			t.Fatalf("guess %d: %d %v", i, code, err)
		}
	}
	eventually(t, waitTimeout, "the secondary blocks on its own", func() bool {
		code, _, _ := fromIP(attacker, "GET", sec.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
		return code == 403
	})
	other := c.Nodes[p]
	if code, _, _ := fromIP(attacker, "GET", other.BaseURL+"/api/v1/node", "admin@localhost", adminPW); code != 200 {
		t.Fatalf("a local decision leaked to another node: %d", code)
	}

	if err := consul.Restart(); err != nil {
		t.Fatal(err)
	}
	np := c.WaitPrimary(30 * time.Second)
	primary := c.Nodes[np]
	// The queued failures reach the primary, which blocks the address for
	// the whole cluster.
	eventually(t, 10*time.Second, "primary blocked the address from the queued failures", func() bool {
		code, body := admin(t, primary, "GET", "/api/v1/screening/ips", "")
		return code == 200 && strings.Contains(body, `"ip":"`+attacker+`"`)
	})
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("blocked on n%d", i), func() bool {
			code, _, _ := fromIP(attacker, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
			return code == 403
		})
	}
	// The primary's view wins: once it unblocks, the secondary's own
	// decision is gone too.
	// After Consul restarts, every session may be invalidated once more and
	// a second, short election follow: send the unblock to whichever node
	// is primary at the time.
	eventually(t, 10*time.Second, "unblock on the current primary", func() bool {
		ps := c.Primaries()
		if len(ps) != 1 {
			return false
		}
		code, _, _ := tryDo("DELETE", c.Nodes[ps[0]].BaseURL+"/api/v1/screening/ips/"+attacker, "admin@localhost", adminPW, "", "")
		return code == 204 || code == 404 // 404: an earlier try went through
	})
	eventually(t, waitTimeout, "unblocked on the secondary", func() bool {
		code, _, _ := fromIP(attacker, "GET", sec.BaseURL+"/api/v1/node", "admin@localhost", adminPW)
		return code == 200
	})
	logb, _ := os.ReadFile(filepath.Join(sec.DataDir, "logs", "cluster.log"))
	for _, ev := range []string{"screening-local", "screening-primary-back"} {
		if !strings.Contains(string(logb), `"event":"`+ev+`"`) {
			t.Errorf("cluster log of the secondary lacks %s:\n%s", ev, logb)
		}
	}
}
