package integration_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// joiner starts a node that asks to join cluster c (without --auto-admit)
// with its own data dir and extra arguments.
func joiner(t *testing.T, c *Cluster, name string, env []string, args ...string) *Node {
	t.Helper()
	return startJoiner(t, env, append(c.NodeArgs(name, t.TempDir()), args...)...)
}

func startJoiner(t *testing.T, env []string, args ...string) *Node {
	t.Helper()
	return StartProcess(t, append([]string{"MAILCLUSTER_CLUSTER_SECRET=" + clusterSecret}, append(adminEnv, env...)...), args...)
}

func role(n *Node) string {
	h, _ := n.Health()
	return h.Role
}

// register asks the primary to register a node and returns the answer.
func register(t *testing.T, primary *Node, node string) (int, string) {
	t.Helper()
	return admin(t, primary, "POST", "/api/v1/cluster/servers", fmt.Sprintf(`{"node":%q}`, node))
}

func clusterLog(t *testing.T, n *Node, query string) string {
	t.Helper()
	code, body := admin(t, n, "GET", "/api/v1/cluster/log?"+query, "")
	if code != 200 {
		t.Fatalf("cluster log: %d %s", code, body)
	}
	return body
}

// TestClusterPendingThenRegistered: a node that is not registered waits
// as pending (no configuration served, no mail, no election) until an
// admin registers it on the primary.
func TestClusterPendingThenRegistered(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 1, map[int][]string{0: {"--auto-admit=false"}})
	p := c.WaitPrimary(10 * time.Second)
	primary := c.Nodes[p]
	n := joiner(t, c, "late", nil)
	eventually(t, waitTimeout, "the new node is pending", func() bool { return role(n) == "pending" })
	if code, body := admin(t, n, "GET", "/api/v1/domains", ""); code != 503 || !strings.Contains(body, "not registered") {
		t.Fatalf("configuration on a pending node: %d %s", code, body)
	}
	if g, _ := smtpGreeting("127.0.0.1", n.SMTP); !strings.HasPrefix(g, "421 4.3.2") {
		t.Fatalf("SMTP on a pending node: %q", g)
	}
	primary.Stop()
	// The pending node reads the primary key free (the point at which an
	// eligible node takes it); the old primary then takes it back, so it
	// stayed free all along.
	awaitNoPrimarySeen(t, n, "late")
	c.Start(p, "--auto-admit=false")
	eventually(t, waitTimeout, "primary back", func() bool { return role(c.Nodes[p]) == "primary" })
	neverElected(t, n, "late")
	primary = c.Nodes[p]
	if code, body := register(t, primary, "late"); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	eventually(t, waitTimeout, "registered node becomes a secondary", func() bool { return role(n) == "secondary" })
	if code, body := admin(t, n, "GET", "/api/v1/domains", ""); code != 200 {
		t.Fatalf("configuration after registration: %d %s", code, body)
	}
	if code, body := register(t, primary, "late"); code != 409 {
		t.Fatalf("second registration: %d %s", code, body)
	}
	code, body := admin(t, n, "GET", "/api/v1/cluster/servers", "")
	if code != 200 || !strings.Contains(body, `"name":"late"`) || !strings.Contains(body, fmt.Sprintf(`"name":"n%d"`, p)) {
		t.Fatalf("servers on the new node: %d %s", code, body)
	}
	if !strings.Contains(clusterLog(t, primary, "limit=1000"), `"event":"registration"`) {
		t.Fatal("no registration entry in the primary's cluster log")
	}
}

// TestClusterRefusals: a duplicate node key, another version, an unshared
// path and attachment linking are each refused with the reason in the
// answer and the cluster log.
func TestClusterRefusals(t *testing.T) {
	shared := t.TempDir()
	c := StartCluster(t, harness.SharedConsul(t), 1, map[int][]string{0: {"--auto-admit=false", "--shared-path", shared}})
	p := c.WaitPrimary(10 * time.Second)
	primary := c.Nodes[p]
	eventually(t, waitTimeout, "probe written", func() bool {
		_, err := os.Stat(filepath.Join(shared, ".mailcluster-probe"))
		return err == nil
	})
	primaryKey, err := os.ReadFile(filepath.Join(primary.DataDir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	refused := func(name, want string) {
		t.Helper()
		var code int
		var body string
		eventually(t, waitTimeout, name+" listed by Consul", func() bool {
			code, body = register(t, primary, name)
			return !strings.Contains(body, "is running")
		})
		if code != 400 || !strings.Contains(body, want) {
			t.Fatalf("register %s: %d %s; want 400 with %q", name, code, body, want)
		}
		if !strings.Contains(clusterLog(t, primary, "level=warn&limit=1000"), want) {
			t.Fatalf("the refusal of %s is not in the cluster log", name)
		}
	}

	t.Run("DuplicateKey", func(t *testing.T) {
		joiner(t, c, "twin", nil, "--shared-path", shared, "--node-key", strings.TrimSpace(string(primaryKey)))
		refused("twin", "same node key")
	})
	t.Run("OtherVersion", func(t *testing.T) {
		other := buildOtherVersion(t)
		saved := binPath
		binPath = other
		joiner(t, c, "newer", nil, "--shared-path", shared)
		binPath = saved
		refused("newer", "runs version 9.9.9-other")
	})
	t.Run("UnsharedPath", func(t *testing.T) {
		joiner(t, c, "island", nil, "--shared-path", t.TempDir())
		refused("island", "not the cluster's shared path")
	})
	t.Run("AttachmentLinking", func(t *testing.T) {
		dir := t.TempDir()
		// The node ran standalone with attachment linking on.
		solo := StartProcess(t, adminEnv, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "")
		if code, body := admin(t, solo, "PUT", "/api/v1/settings/mailcluster/AttachmentLinking/Enabled", `{"value":"Yes"}`); code >= 300 {
			t.Fatalf("standalone setting: %d %s", code, body)
		}
		solo.Stop()
		startJoiner(t, nil, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--node-name", "linker",
			"--consul-addr", c.Consul.Addr, "--cluster-name", c.Name, "--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "", "--shared-path", shared)
		refused("linker", "attachment linking")
	})
	t.Run("AttachmentLinkingSetting", func(t *testing.T) {
		code, body := admin(t, primary, "PUT", "/api/v1/settings/mailcluster/AttachmentLinking/Enabled", `{"value":"Yes"}`)
		if code != 400 || !strings.Contains(body, "Attachment linking cannot be used in a cluster") {
			t.Fatalf("enable attachment linking in a cluster: %d %s", code, body)
		}
	})
	t.Run("SharedPathSettings", func(t *testing.T) {
		code, body := admin(t, primary, "GET", "/api/v1/settings/mailcluster", "")
		for _, k := range []string{"MailboxRoot", "LockFiles", "PEM", "PublicFolders"} {
			if code != 200 || !strings.Contains(body, `"`+k+`":"`+shared) {
				t.Fatalf("[Directories] %s is not under the shared path: %s", k, body)
			}
		}
	})
}

// TestClusterClockWarning fakes a secondary's clock 3 s ahead: the
// primary's probe warns in the cluster log and the cluster status. The
// nodes run a test build (-tags clockskew), the only one with
// --test-clock-offset (TestClockOffsetNotInProduction).
func TestClusterClockWarning(t *testing.T) {
	c := harness.StartCluster(t, harness.SharedConsul(t), 2, harness.ClusterOptions{Secret: clusterSecret, AdminPassword: adminPW,
		Bin: harness.BinaryWithTags(t, "clockskew"), Args: map[int][]string{
			0: {"--probe-interval", "200ms"}, 1: {"--probe-interval", "200ms", "--test-clock-offset", "3s", "--never-primary"}}})
	p := c.WaitPrimary(10 * time.Second)
	if p != 0 {
		t.Fatalf("primary is n%d", p)
	}
	eventually(t, waitTimeout, "clock warning in the status", func() bool {
		code, body := admin(t, c.Nodes[1], "GET", "/api/v1/cluster", "")
		return code == 200 && strings.Contains(body, "clock differs from the primary's by")
	})
	eventually(t, waitTimeout, "clock warning in the primary's cluster log", func() bool {
		return strings.Contains(clusterLog(t, c.Nodes[0], "level=warn"), `"event":"clock-warning"`)
	})
	code, body := admin(t, c.Nodes[0], "GET", "/api/v1/cluster", "")
	var st struct {
		Nodes []struct {
			Name     string `json:"name"`
			OffsetMs int64  `json:"offsetMs"`
		} `json:"nodes"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status: %d %s", code, body)
	}
	for _, n := range st.Nodes {
		if n.Name == "n1" && (n.OffsetMs < 2500 || n.OffsetMs > 3500) {
			t.Fatalf("offset of n1 = %d ms, want about 3000", n.OffsetMs)
		}
	}
	// Reading another node's log through any node.
	eventually(t, waitTimeout, "n0's log read through n1", func() bool {
		return strings.Contains(clusterLog(t, c.Nodes[1], "node=n0&level=warn"), `"event":"clock-warning"`)
	})
}

// buildOtherVersion builds the binary with another version string.
func buildOtherVersion(t *testing.T) string {
	t.Helper()
	other := filepath.Join(t.TempDir(), "mailcluster-other")
	build := exec.Command("go", "build", "-ldflags", "-X mailcluster.Version=9.9.9-other", "-o", other, "../cmd/mailcluster")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return other
}

// TestClusterUpgradedNode restarts a registered node with another
// version: it is flagged in the status and the cluster log, and it does
// not become primary even when it is the only node left.
func TestClusterUpgradedNode(t *testing.T) {
	other := buildOtherVersion(t)
	c := StartCluster(t, harness.SharedConsul(t), 2, nil)
	p := c.WaitPrimary(10 * time.Second)
	s := c.Secondaries(p)[0]
	c.Nodes[s].Stop()
	c.Bin = other
	c.Start(s)
	c.Bin = ""
	eventually(t, waitTimeout, "the upgraded node is flagged", func() bool {
		code, body := admin(t, c.Nodes[p], "GET", "/api/v1/cluster", "")
		return code == 200 && strings.Contains(body, "runs version 9.9.9-other")
	})
	if !strings.Contains(clusterLog(t, c.Nodes[s], "level=error"), `"event":"version-mismatch"`) {
		t.Fatal("no version-mismatch entry in the upgraded node's cluster log")
	}
	c.Nodes[p].Stop()
	// The upgraded node reads the primary key free (the point at which an
	// eligible node takes it); the old primary then takes it back, so it
	// stayed free all along.
	awaitNoPrimarySeen(t, c.Nodes[s], fmt.Sprintf("n%d", s))
	c.Start(p)
	eventually(t, waitTimeout, "primary back", func() bool { return role(c.Nodes[p]) == "primary" })
	neverElected(t, c.Nodes[s], fmt.Sprintf("n%d", s))
}

// TestClusterZoneWarning starts a node in another time zone (TZ from the
// system's zone database, package tzdata): the primary's clock probe warns.
func TestClusterZoneWarning(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 1, map[int][]string{0: {"--probe-interval", "200ms"}})
	p := c.WaitPrimary(10 * time.Second)
	if _, err := os.Stat("/usr/share/zoneinfo/Asia/Tokyo"); err != nil {
		t.Fatal("the zone database is missing (Debian package tzdata)")
	}
	joiner(t, c, "faraway", []string{"TZ=Asia/Tokyo"})
	eventually(t, 10*time.Second, "time zone warning in the status", func() bool {
		code, body := admin(t, c.Nodes[p], "GET", "/api/v1/cluster", "")
		return code == 200 && strings.Contains(body, "time zone JST differs from the primary's")
	})
	eventually(t, waitTimeout, "zone warning in the cluster log", func() bool {
		return strings.Contains(clusterLog(t, c.Nodes[p], "level=warn"), "time zone JST differs")
	})
}
