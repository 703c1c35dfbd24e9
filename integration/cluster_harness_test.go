package integration_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const clusterSecret = "it-cluster-secret-0123456789"

// Cluster is a set of mailcluster processes joined through one Consul.
type Cluster struct {
	t      testing.TB
	Consul *Consul
	Name   string
	Nodes  []*Node
	dirs   []string
	extra  map[int][]string
}

var reNonName = regexp.MustCompile(`[^a-z0-9]+`)

// StartCluster starts n nodes named n0..n<n-1> in cluster <test name>;
// extra adds arguments per node index.
func StartCluster(t testing.TB, consul *Consul, n int, extra map[int][]string) *Cluster {
	t.Helper()
	name := strings.Trim(reNonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	c := &Cluster{t: t, Consul: consul, Name: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%100000), extra: extra}
	c.Nodes = make([]*Node, n)
	for i := range n {
		c.dirs = append(c.dirs, t.TempDir())
		c.Start(i)
	}
	// The first primary initialises the state (admin account, settings);
	// wait until every node has it.
	for i, node := range c.Nodes {
		eventually(t, 10*time.Second, fmt.Sprintf("n%d has the initial state", i), func() bool {
			code, _, _ := tryDo("GET", node.BaseURL+"/api/v1/node", "admin@localhost", adminPW, "", "")
			return code == 200
		})
	}
	// With --auto-admit (the default here) the primary registers the
	// others; wait until none is pending.
	autoAdmit := true
	for _, a := range extra {
		for _, x := range a {
			if x == "--auto-admit=false" {
				autoAdmit = false
			}
		}
	}
	if autoAdmit {
		eventually(t, 10*time.Second, "every node registered", func() bool {
			ps := c.Primaries()
			if len(ps) != 1 {
				return false
			}
			code, body, err := tryDo("GET", c.Nodes[ps[0]].BaseURL+"/api/v1/cluster/servers", "admin@localhost", adminPW, "", "")
			if err != nil || code != 200 {
				return false
			}
			for i := range c.Nodes {
				if !strings.Contains(body, fmt.Sprintf(`"name":"n%d"`, i)) {
					return false
				}
			}
			return true
		})
		for i, node := range c.Nodes {
			eventually(t, 10*time.Second, fmt.Sprintf("n%d serves", i), func() bool {
				h, ok := Health(node)
				return ok && (h.Role == "primary" || h.Role == "secondary")
			})
		}
	}
	return c
}

// Start (re)starts node i with its data dir.
func (c *Cluster) Start(i int, args ...string) *Node {
	c.t.Helper()
	full := []string{"serve", "--data-dir", c.dirs[i], "--http-addr", "127.0.0.1:0", "--node-name", fmt.Sprintf("n%d", i),
		"--consul-addr", c.Consul.Addr, "--cluster-name", c.Name, "--smtp-addr", "127.0.0.1:0", "--submission-addr", "127.0.0.1:0",
		"--auto-admit"}
	full = append(full, c.extra[i]...)
	full = append(full, args...)
	env := append([]string{"MAILCLUSTER_CLUSTER_SECRET=" + clusterSecret}, adminEnv...)
	c.Nodes[i] = StartProcess(c.t, env, full...)
	return c.Nodes[i]
}

// health is the /health answer.
type health struct {
	Status string `json:"status"`
	Role   string `json:"role"`
	Name   string `json:"name"`
	Index  uint64 `json:"index"`
}

// Health reads a node's /health; ok false when it does not answer.
func Health(n *Node) (health, bool) {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(n.BaseURL + "/health")
	if err != nil {
		return health{}, false
	}
	defer resp.Body.Close()
	var h health
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return health{}, false
	}
	return h, true
}

func (n *Node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Primaries returns the indexes of the live nodes that say they are primary.
func (c *Cluster) Primaries() []int {
	var out []int
	for i, n := range c.Nodes {
		if n == nil || !n.alive() {
			continue
		}
		if h, ok := Health(n); ok && h.Role == "primary" {
			out = append(out, i)
		}
	}
	return out
}

// WaitPrimary waits until exactly one live node is primary and returns it.
func (c *Cluster) WaitPrimary(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if p := c.Primaries(); len(p) == 1 {
			return p[0]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no single primary within %s (primaries: %v)", timeout, c.Primaries())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Secondaries returns the live nodes other than i.
func (c *Cluster) Secondaries(primary int) []int {
	var out []int
	for i, n := range c.Nodes {
		if i != primary && n != nil && n.alive() {
			out = append(out, i)
		}
	}
	return out
}

// admin sends a request as the cluster's administrator.
func admin(t testing.TB, n *Node, method, path, body string) (int, string) {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
		if strings.HasPrefix(body, "<") {
			ct = "text/xml"
		}
	}
	return do(t, method, n.BaseURL+path, "admin@localhost", adminPW, ct, body)
}

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
