package harness

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// DefaultClusterSecret is the cluster secret of a Cluster whose options
// name none.
const DefaultClusterSecret = "harness-cluster-secret-0123456789"

// ClusterOptions configures a Cluster. The zero value of each field means
// its documented default.
type ClusterOptions struct {
	// Name prefixes the cluster name (a number is appended so that runs
	// keep apart on a shared agent); "" means the test's name.
	Name string
	// Secret is every node's MAILCLUSTER_CLUSTER_SECRET; "" means
	// DefaultClusterSecret.
	Secret string
	// AdminPassword is every node's MAILCLUSTER_ADMIN_PASSWORD, also used
	// by StartCluster to see that a node has the initial state.
	AdminPassword string
	// Env adds variables (KEY=VALUE) to every node's environment.
	Env []string
	// Args adds arguments to node i (Start); they come after the ones the
	// cluster sets, so they override them ("--auto-admit=false",
	// "--consul-addr", ...).
	Args map[int][]string
	// NoMail turns the SMTP, submission, IMAP and POP3 listeners off; by
	// default they listen on 127.0.0.1 with a free port.
	NoMail bool
	// Bin is the binary every node runs (Cluster.Bin); "" means the one
	// Build compiles. See BinaryWithTags for a test build.
	Bin string
	// LogDir, when set, receives each node's log as <node name>.log (see
	// Process.LogPath); "" keeps logs in memory and copies them into the
	// test log.
	LogDir string
	// Timeout bounds each wait of StartCluster (initial state,
	// registration, serving); 0 means 10 s.
	Timeout time.Duration
	// ReadyTimeout bounds each node's wait for its "listening" line; 0
	// means 20 s.
	ReadyTimeout time.Duration
}

// Cluster is a set of mailcluster processes joined through one Consul
// agent. Node i is named n<i> and keeps its data dir across Start.
type Cluster struct {
	Consul *Consul
	Name   string  // the --cluster-name of every node
	Nodes  []*Node // node i, nil until started
	// Bin is the binary that Start and NewNode run; "" means the one Build
	// compiles.
	Bin string

	tb   testing.TB
	opts ClusterOptions
	dirs []string // data dir of node i
}

var reNonName = regexp.MustCompile(`[^a-z0-9]+`)

// NewCluster returns a cluster on consul with no node started yet.
func NewCluster(tb testing.TB, consul *Consul, opts ClusterOptions) *Cluster {
	name := opts.Name
	if name == "" {
		name = strings.Trim(reNonName.ReplaceAllString(strings.ToLower(tb.Name()), "-"), "-")
		if len(name) > 40 {
			name = name[:40]
		}
	}
	if opts.Secret == "" {
		opts.Secret = DefaultClusterSecret
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	return &Cluster{tb: tb, Consul: consul, opts: opts, Bin: opts.Bin, Name: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%100000)}
}

// StartCluster starts n nodes named n0..n<n-1> with --auto-admit (unless
// their Args say --auto-admit=false) and waits until every node has the
// initial state (its administrator can read /api/v1/node); with auto-admit
// also until the single primary lists every node as registered and every
// node serves as primary or secondary.
func StartCluster(tb testing.TB, consul *Consul, n int, opts ClusterOptions) *Cluster {
	tb.Helper()
	c := NewCluster(tb, consul, opts)
	c.Nodes = make([]*Node, n)
	for i := range n {
		c.dirs = append(c.dirs, tb.TempDir())
		c.Start(i)
	}
	timeout := c.opts.Timeout
	// The first primary initialises the state (admin account, settings);
	// wait until every node has it.
	for i, node := range c.Nodes {
		Eventually(tb, timeout, fmt.Sprintf("n%d has the initial state", i), func() bool {
			code, _, _ := Do(nil, "GET", node.BaseURL+"/api/v1/node", AdminUser, c.opts.AdminPassword, "", "")
			return code == 200
		})
	}
	autoAdmit := true
	for _, a := range c.opts.Args {
		for _, x := range a {
			if x == "--auto-admit=false" {
				autoAdmit = false
			}
		}
	}
	if !autoAdmit {
		return c
	}
	// The primary registers the others; wait until none is pending.
	Eventually(tb, timeout, "every node registered", func() bool {
		ps := c.Primaries()
		if len(ps) != 1 {
			return false
		}
		code, body, err := Do(nil, "GET", c.Nodes[ps[0]].BaseURL+"/api/v1/cluster/servers", AdminUser, c.opts.AdminPassword, "", "")
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
		Eventually(tb, timeout, fmt.Sprintf("n%d serves", i), func() bool {
			h, ok := node.Health()
			return ok && (h.Role == "primary" || h.Role == "secondary")
		})
	}
	return c
}

// NodeArgs returns the `serve` arguments of a node of this cluster named
// name with data dir dataDir: HTTP (and, unless NoMail, SMTP,
// submission, IMAP and POP3) on 127.0.0.1 with free ports, the cluster's Consul
// agent and name.
func (c *Cluster) NodeArgs(name, dataDir string) []string {
	mail := "127.0.0.1:0"
	if c.opts.NoMail {
		mail = ""
	}
	return []string{"serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--node-name", name,
		"--consul-addr", c.Consul.Addr, "--cluster-name", c.Name, "--smtp-addr", mail, "--submission-addr", mail, "--imap-addr", mail, "--pop3-addr", mail}
}

// NodeEnv returns the environment of a node of this cluster: the cluster
// secret, the administrator's password, then ClusterOptions.Env.
func (c *Cluster) NodeEnv() []string {
	env := []string{"MAILCLUSTER_CLUSTER_SECRET=" + c.opts.Secret}
	if c.opts.AdminPassword != "" {
		env = append(env, "MAILCLUSTER_ADMIN_PASSWORD="+c.opts.AdminPassword)
	}
	return append(env, c.opts.Env...)
}

// Start (re)starts node i with its data dir, --auto-admit, its Args and
// args, and returns it (also as Nodes[i]).
func (c *Cluster) Start(i int, args ...string) *Node {
	c.tb.Helper()
	name := fmt.Sprintf("n%d", i)
	full := append(c.NodeArgs(name, c.dirs[i]), "--auto-admit")
	full = append(full, c.opts.Args[i]...)
	full = append(full, args...)
	c.Nodes[i] = c.start(name, full)
	return c.Nodes[i]
}

// NewNode starts one more node of the cluster, outside Nodes, named name
// with a fresh data dir and args after NodeArgs (add "--auto-admit" for a
// node that the primary registers).
func (c *Cluster) NewNode(name string, args ...string) *Node {
	c.tb.Helper()
	return c.start(name, append(c.NodeArgs(name, c.tb.TempDir()), args...))
}

func (c *Cluster) start(name string, args []string) *Node {
	c.tb.Helper()
	p := Process{Bin: c.Bin, Args: args, Env: c.NodeEnv(), ReadyTimeout: c.opts.ReadyTimeout}
	if c.opts.LogDir != "" {
		p.LogPath = filepath.Join(c.opts.LogDir, name+".log")
	}
	return Start(c.tb, p)
}

// Primaries returns the indexes of the live nodes that say they are
// primary.
func (c *Cluster) Primaries() []int {
	var out []int
	for i, n := range c.Nodes {
		if n == nil || !n.Alive() {
			continue
		}
		if h, ok := n.Health(); ok && h.Role == "primary" {
			out = append(out, i)
		}
	}
	return out
}

// AwaitPrimary waits until exactly one live node is primary and returns
// its index, or an error after timeout.
func (c *Cluster) AwaitPrimary(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		if p := c.Primaries(); len(p) == 1 {
			return p[0], nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no single primary within %s (primaries: %v)", timeout, c.Primaries())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitPrimary is AwaitPrimary that fails the test which started the
// cluster (from a subtest, call AwaitPrimary).
func (c *Cluster) WaitPrimary(timeout time.Duration) int {
	c.tb.Helper()
	p, err := c.AwaitPrimary(timeout)
	if err != nil {
		c.tb.Fatal(err)
	}
	return p
}

// Secondaries returns the live nodes other than primary.
func (c *Cluster) Secondaries(primary int) []int {
	var out []int
	for i, n := range c.Nodes {
		if i != primary && n != nil && n.Alive() {
			out = append(out, i)
		}
	}
	return out
}
