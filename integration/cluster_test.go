package integration_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

func TestClusterOnePrimaryAndReplication(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	// Every other node has read the primary key held by p: no second
	// primary can appear from this election.
	awaitSettled(t, c, p)
	if ps := c.Primaries(); len(ps) != 1 || ps[0] != p {
		t.Fatalf("primaries = %v, want only n%d", ps, p)
	}
	primary := c.Nodes[p]

	if code, body := admin(t, primary, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain on primary: %d %s", code, body)
	}
	if code, body := admin(t, primary, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"alice","password":"alice-pass-1"}`); code != 201 {
		t.Fatalf("create account on primary: %d %s", code, body)
	}
	if code, body := admin(t, primary, "PUT", "/api/v1/settings/mailcluster/SMTP/Banner", `{"value":"replicated"}`); code >= 300 {
		t.Fatalf("put setting on primary: %d %s", code, body)
	}
	for _, i := range c.Secondaries(p) {
		n := c.Nodes[i]
		eventually(t, waitTimeout, fmt.Sprintf("account visible on n%d", i), func() bool {
			code, _ := admin(t, n, "GET", "/api/v1/domains/example.com/accounts/alice", "")
			return code == 200
		})
		eventually(t, waitTimeout, fmt.Sprintf("ini file on n%d", i), func() bool {
			b, _ := os.ReadFile(filepath.Join(n.DataDir, "app", "mailcluster.ini"))
			return strings.Contains(string(b), "Banner=replicated")
		})
	}
}

// TestClusterSecondaryRefusesWrites sends every write of both APIs to a
// secondary: each is refused naming the primary, and nothing changes.
func TestClusterSecondaryRefusesWrites(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 2, nil)
	p := c.WaitPrimary(10 * time.Second)
	primary, sec := c.Nodes[p], c.Nodes[c.Secondaries(p)[0]]
	if code, body := admin(t, primary, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	if code, body := admin(t, primary, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"alice","password":"alice-pass-1"}`); code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	eventually(t, waitTimeout, "replicated", func() bool {
		code, _ := admin(t, sec, "GET", "/api/v1/domains/example.com/accounts/alice", "")
		return code == 200
	})
	before, _ := primary.Health()
	primaryURL := primary.BaseURL
	rest := []struct{ method, path, body string }{
		{"POST", "/api/v1/domains", `{"name":"new.com"}`},
		{"PATCH", "/api/v1/domains/example.com", `{"description":"x"}`},
		{"DELETE", "/api/v1/domains/example.com?force=true", ""},
		{"POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"bob","password":"bob-pass-12"}`},
		{"PATCH", "/api/v1/domains/example.com/accounts/alice", `{"fullName":"x"}`},
		{"DELETE", "/api/v1/domains/example.com/accounts/alice", ""},
		{"PUT", "/api/v1/settings/mailcluster/SMTP/Banner", `{"value":"x"}`},
		{"DELETE", "/api/v1/settings/mailcluster/Passwords/MinLength", ""},
		{"POST", "/api/v1/cluster/switchover", `{}`},
	}
	for _, r := range rest {
		code, body := admin(t, sec, r.method, r.path, r.body)
		var prob struct {
			Type    string `json:"type"`
			Primary string `json:"primary"`
		}
		_ = json.Unmarshal([]byte(body), &prob)
		if code != 403 || prob.Type != "urn:mailcluster:problem:read-only" || prob.Primary != primaryURL {
			t.Errorf("%s %s on secondary: %d %s; want 403 read-only naming %s", r.method, r.path, code, body, primaryURL)
		}
	}
	code, body := do(t, "PUT", sec.BaseURL+"/api/v1/settings/mailcluster", "admin@localhost", adminPW, "text/plain", "[A]\nB=C\n")
	if code != 403 || !strings.Contains(body, primaryURL) {
		t.Errorf("PUT settings file on secondary: %d %s", code, body)
	}
	xmlOps := []string{
		`<Operation>CreateDomain</Operation><Parameters><Domain>new.com</Domain></Parameters>`,
		`<Operation>UpdateDomain</Operation><Parameters><Domain>example.com</Domain><Description>x</Description></Parameters>`,
		`<Operation>DeleteDomain</Operation><Parameters><Domain>example.com</Domain><Force>Yes</Force></Parameters>`,
		`<Operation>CreateUser</Operation><Parameters><Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><Password>bob-pass-12</Password></Details></Parameters>`,
		`<Operation>UpdateUser</Operation><Parameters><Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>Yes</Frozen></Details></Parameters>`,
		`<Operation>DeleteUser</Operation><Parameters><Domain>example.com</Domain><Mailbox>alice</Mailbox></Parameters>`,
		`<Operation>UpdateIniSettings</Operation><Parameters><File>mailcluster</File><Section name="SMTP"><Key name="Banner">x</Key></Section></Parameters>`,
	}
	for _, op := range xmlOps {
		doc := `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request version="1" echo="0" verbose="0">` + op + `</Request></API></MDaemon>`
		code, body := admin(t, sec, "POST", "/MdMgmtWS", doc)
		if code != 200 || strings.Contains(body, `id="0"`) || !strings.Contains(body, primaryURL) {
			t.Errorf("XML %s on secondary: %d %s", op[:40], code, body)
		}
	}
	// A later write on the primary, applied on both nodes, is the point
	// past which any refused write would have shown.
	if h, _ := primary.Health(); h.Index != before.Index {
		t.Fatalf("refused writes changed the state: index %d -> %d", before.Index, h.Index)
	}
	if code, body := admin(t, primary, "POST", "/api/v1/domains", `{"name":"later.com"}`); code != 201 {
		t.Fatalf("later write on the primary: %d %s", code, body)
	}
	later, _ := primary.Health()
	awaitIndex(t, later.Index, primary, sec)
	for _, n := range []*Node{primary, sec} {
		for _, path := range []string{"/api/v1/domains/new.com", "/api/v1/domains/example.com/accounts/bob"} {
			if code, body := admin(t, n, "GET", path, ""); code != 404 {
				t.Errorf("%s on %s after refused writes: %d %s, want 404", path, n.BaseURL, code, body)
			}
		}
		if code, body := admin(t, n, "GET", "/api/v1/domains/example.com/accounts/alice", ""); code != 200 || strings.Contains(body, `"frozen":true`) || strings.Contains(body, `"fullName":"x"`) {
			t.Errorf("account changed on %s: %d %s", n.BaseURL, code, body)
		}
		if code, body := admin(t, n, "GET", "/api/v1/domains/example.com", ""); code != 200 || strings.Contains(body, `"description":"x"`) {
			t.Errorf("domain changed on %s: %d %s", n.BaseURL, code, body)
		}
		if code, body := admin(t, n, "GET", "/api/v1/settings/mailcluster/SMTP/Banner", ""); strings.Contains(body, `"value":"x"`) {
			t.Errorf("setting changed on %s: %d %s", n.BaseURL, code, body)
		}
	}
}

// TestClusterFailoverKill kills the primary with SIGKILL: another node takes
// over and accepts writes; the killed node rejoins as a secondary and
// catches up.
func TestClusterFailoverKill(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	old := c.Nodes[p]
	if code, body := admin(t, old, "POST", "/api/v1/domains", `{"name":"before.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	start := time.Now()
	if err := old.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	old.Wait()
	var newP int
	eventually(t, 10*time.Second, "a new primary accepts writes", func() bool {
		ps := c.Primaries()
		if len(ps) != 1 {
			return false
		}
		newP = ps[0]
		code, _, _ := tryDo("POST", c.Nodes[newP].BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "application/json", `{"name":"after.com"}`)
		return code == 201
	})
	t.Logf("failover after SIGKILL: a new primary accepted a write %s after the kill", time.Since(start).Round(time.Millisecond))
	if newP == p {
		t.Fatal("the killed node is still primary")
	}
	back := c.Start(p)
	eventually(t, waitTimeout, "killed node rejoined as a secondary and caught up", func() bool {
		h, ok := back.Health()
		if !ok || h.Role != "secondary" {
			return false
		}
		code, _ := admin(t, back, "GET", "/api/v1/domains/after.com", "")
		return code == 200
	})
	if ps := c.Primaries(); len(ps) != 1 || ps[0] != newP {
		t.Fatalf("primaries after rejoin = %v, want [%d]", ps, newP)
	}
}

// TestClusterGracefulHandover stops the primary with SIGTERM: it releases
// the lock and another node takes over at once.
func TestClusterGracefulHandover(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	start := time.Now()
	c.Nodes[p].Stop()
	stopped := time.Since(start)
	var took time.Duration
	eventually(t, waitTimeout, "a new primary accepts writes", func() bool {
		ps := c.Primaries()
		if len(ps) != 1 {
			return false
		}
		code, _, _ := tryDo("POST", c.Nodes[ps[0]].BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "application/json", `{"name":"handover.com"}`)
		took = time.Since(start)
		return code == 201
	})
	t.Logf("graceful handover: the old primary stopped in %s; a new primary accepted a write %s after the stop began",
		stopped.Round(time.Millisecond), took.Round(time.Millisecond))
}

// TestClusterSwitchover moves the primary role to a named node.
func TestClusterSwitchover(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	target := c.Secondaries(p)[1]
	eventually(t, waitTimeout, "all nodes registered and healthy", func() bool {
		code, body := admin(t, c.Nodes[p], "GET", "/api/v1/cluster", "")
		return code == 200 && strings.Count(body, `"healthy":true`) == 3
	})
	code, body := admin(t, c.Nodes[p], "POST", "/api/v1/cluster/switchover", fmt.Sprintf(`{"target":"n%d"}`, target))
	if code != 200 && code != 202 {
		t.Fatalf("switchover: %d %s", code, body)
	}
	eventually(t, waitTimeout, "target became primary", func() bool {
		ps := c.Primaries()
		return len(ps) == 1 && ps[0] == target
	})
	code, body = admin(t, c.Nodes[target], "POST", "/api/v1/cluster/switchover", `{"target":"nobody"}`)
	if code != 400 {
		t.Fatalf("switchover to an unknown node: %d %s", code, body)
	}
}

// TestClusterNeverPrimary keeps a node out of the election even when it is
// the only one left.
func TestClusterNeverPrimary(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 2, map[int][]string{1: {"--never-primary"}})
	p := c.WaitPrimary(10 * time.Second)
	if p != 0 {
		t.Fatalf("the never-primary node n1 became primary")
	}
	c.Nodes[0].Stop()
	// n1 has read the primary key free: the point at which an eligible
	// node takes it.
	awaitNoPrimarySeen(t, c.Nodes[1], "n1")
	code, body := admin(t, c.Nodes[1], "POST", "/api/v1/domains", `{"name":"x.com"}`)
	if code != 503 {
		t.Fatalf("write with no primary: %d %s, want 503", code, body)
	}
	// n0 comes back and takes the key: it stayed free all along.
	c.Start(0)
	eventually(t, waitTimeout, "n0 primary again", func() bool { return role(c.Nodes[0]) == "primary" })
	neverElected(t, c.Nodes[1], "n1")
}

// TestClusterLocalEditOverwritten edits a secondary's ini file by hand.
func TestClusterLocalEditOverwritten(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 2, nil)
	p := c.WaitPrimary(10 * time.Second)
	sec := c.Nodes[c.Secondaries(p)[0]]
	ini := filepath.Join(sec.DataDir, "app", "mailcluster.ini")
	eventually(t, waitTimeout, "ini file written", func() bool {
		b, _ := os.ReadFile(ini)
		return strings.Contains(string(b), "MailboxPath=")
	})
	orig, _ := os.ReadFile(ini)
	if err := os.WriteFile(ini, []byte("[NewAccounts]\nMailboxPath=/tmp/hacked/$MAILBOX$\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, waitTimeout, "file rewritten from the replicated state", func() bool {
		b, _ := os.ReadFile(ini)
		return string(b) == string(orig)
	})
	t.Logf("local edit overwritten after %s", took.Round(time.Millisecond))
	eventually(t, waitTimeout, "cluster log entry", func() bool {
		b, _ := os.ReadFile(filepath.Join(sec.DataDir, "logs", "cluster.log"))
		return strings.Contains(string(b), `"event":"settings-overwritten"`)
	})
}

// TestClusterStatusAndRegistration checks /api/v1/cluster on every node and
// the Consul service registrations.
func TestClusterStatusAndRegistration(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	for i, n := range c.Nodes {
		var st struct {
			Primary struct{ Name string } `json:"primary"`
			Nodes   []struct {
				Name    string `json:"name"`
				Role    string `json:"role"`
				Healthy bool   `json:"healthy"`
				Version string `json:"version"`
			} `json:"nodes"`
		}
		eventually(t, waitTimeout, fmt.Sprintf("status on n%d lists 3 healthy nodes", i), func() bool {
			code, body := admin(t, n, "GET", "/api/v1/cluster", "")
			if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Nodes) != 3 {
				return false
			}
			for _, x := range st.Nodes {
				if !x.Healthy {
					return false
				}
			}
			return true
		})
		if st.Primary.Name != fmt.Sprintf("n%d", p) {
			t.Fatalf("n%d names primary %q, want n%d", i, st.Primary.Name, p)
		}
		roles := map[string]int{}
		for _, x := range st.Nodes {
			roles[x.Role]++
			if x.Version == "" {
				t.Fatalf("node %s has no version", x.Name)
			}
		}
		if roles["primary"] != 1 || roles["secondary"] != 2 {
			t.Fatalf("roles = %v", roles)
		}
	}
	out, stderr, exit := runCLI(t, adminEnv, "status", "--url", c.Nodes[(p+1)%3].BaseURL)
	if exit != 0 || !strings.Contains(out, "cluster: "+c.Name) || !strings.Contains(out, fmt.Sprintf("primary: n%d", p)) {
		t.Fatalf("mailcluster status: exit %d\n%s\n%s", exit, out, stderr)
	}
	for i := range c.Nodes {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^n%d( \*)?\s+(primary|secondary)\s+yes\s`, i)).MatchString(out) {
			t.Fatalf("status table lacks a healthy row for n%d:\n%s", i, out)
		}
	}
	if _, stderr, exit := runCLI(t, nil, "status", "--url", c.Nodes[0].BaseURL); exit != 2 || !strings.Contains(stderr, "MAILCLUSTER_ADMIN_PASSWORD") {
		t.Fatalf("status without a password: exit %d %s", exit, stderr)
	}
	code, body := do(t, "GET", "http://"+c.Consul.Addr+"/v1/health/service/mailcluster?tag=cluster-"+c.Name, "", "", "", "")
	if code != 200 {
		t.Fatalf("consul: %d %s", code, body)
	}
	var entries []struct {
		Service struct {
			Tags []string
			Meta map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &entries); err != nil || len(entries) != 3 {
		t.Fatalf("consul lists %d instances: %v %s", len(entries), err, body)
	}
	for _, e := range entries {
		if e.Service.Meta["version"] == "" || len(e.Service.Meta["node_key_id"]) != 16 || e.Service.Meta["time_zone"] == "" {
			t.Fatalf("meta = %v", e.Service.Meta)
		}
	}
	// The Consul check's output states role and lag in words.
	eventually(t, waitTimeout, "check output states the role", func() bool {
		_, body := do(t, "GET", "http://"+c.Consul.Addr+"/v1/health/checks/mailcluster", "", "", "", "")
		return strings.Contains(body, `primary; lag 0 ms; ok`) && strings.Contains(body, `secondary; lag 0 ms; ok`)
	})
	c.Nodes[p].Stop()
	eventually(t, waitTimeout, "stopped node deregistered", func() bool {
		_, body := do(t, "GET", "http://"+c.Consul.Addr+"/v1/health/service/mailcluster?tag=cluster-"+c.Name, "", "", "", "")
		var left []json.RawMessage
		return json.Unmarshal([]byte(body), &left) == nil && len(left) == 2
	})
}

// TestClusterConsulDown stops Consul: every node keeps serving reads from
// its snapshot and refuses writes; a node restarted meanwhile serves its
// last known data.
func TestClusterConsulDown(t *testing.T) {
	consul := harness.OwnConsul(t)
	c := StartCluster(t, consul, 3, nil)
	p := c.WaitPrimary(10 * time.Second)
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"kept.com"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, i := range c.Secondaries(p) {
		eventually(t, waitTimeout, "replicated", func() bool {
			code, _ := admin(t, c.Nodes[i], "GET", "/api/v1/domains/kept.com", "")
			return code == 200
		})
	}
	consul.Stop()
	eventually(t, waitTimeout, "no node claims to be primary", func() bool { return len(c.Primaries()) == 0 })
	for i, n := range c.Nodes {
		if code, body := admin(t, n, "GET", "/api/v1/domains/kept.com", ""); code != 200 {
			t.Fatalf("read on n%d with consul down: %d %s", i, code, body)
		}
		if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"new.com"}`); code != 503 {
			t.Fatalf("write on n%d with consul down: %d %s, want 503", i, code, body)
		}
	}
	c.Nodes[1].Stop()
	n := c.Start(1)
	if code, body := admin(t, n, "GET", "/api/v1/domains/kept.com", ""); code != 200 {
		t.Fatalf("restarted node with consul down: %d %s", code, body)
	}
	if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"new.com"}`); code != 503 {
		t.Fatalf("write on restarted node: %d %s, want 503", code, body)
	}
}
