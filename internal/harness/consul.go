package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ConsulBinary finds the Consul agent: $MAILCLUSTER_CONSUL_BIN, consul on
// PATH, or bin/consul of the module (built by `make consul`).
func ConsulBinary() (string, error) {
	if p := os.Getenv("MAILCLUSTER_CONSUL_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "consul")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("harness: no Consul agent: run `make consul` (builds bin/consul) or put consul on PATH")
}

// moduleRoot is the nearest directory above the working directory (a
// test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Consul is a Consul agent listening on 127.0.0.1 only, with its output
// kept in memory.
type Consul struct {
	Addr string // host:port of its HTTP API

	args []string
	mu   sync.Mutex // guards what follows
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// consulPorts are the agent arguments for a loopback agent on the ports
// http, serf LAN, serf WAN and server RPC (DNS and gRPC off).
func consulPorts(p []int) []string {
	return []string{"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(p[1]), "-serf-wan-port", strconv.Itoa(p[2]), "-server-port", strconv.Itoa(p[3])}
}

// startConsul starts a dev agent (state in memory) or, with a data dir, a
// single-server agent that keeps its state across restarts, and waits
// until it has a leader.
func startConsul(dataDir string) (*Consul, error) {
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	mode := []string{"-dev"}
	if dataDir != "" {
		mode = []string{"-server", "-bootstrap-expect", "1", "-data-dir", dataDir, "-node", "it-consul"}
	}
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(ports[0])}
	c.args = append(append(append([]string{"agent"}, mode...), consulPorts(ports)...), "-log-level", "warn")
	if err := c.start(); err != nil {
		return nil, err
	}
	return c, nil
}

// ConsulReady reports whether the agent at addr has a leader and its own
// node is registered with a passing serfHealth check: before that, a
// session or a write can fail with "Missing node registration" (seen on
// a loaded machine right after the agent reported a leader).
func ConsulReady(addr string) bool {
	resp, err := healthClient.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(bytes.Trim(b.Bytes(), "\" \n")) == 0 {
		return false
	}
	var self struct{ Config struct{ NodeName string } }
	if !getJSON("http://"+addr+"/v1/agent/self", &self) || self.Config.NodeName == "" {
		return false
	}
	var checks []struct{ Node, CheckID string }
	if !getJSON("http://"+addr+"/v1/health/state/passing", &checks) {
		return false
	}
	for _, c := range checks {
		if c.Node == self.Config.NodeName && c.CheckID == "serfHealth" {
			return true
		}
	}
	return false
}

// getJSON decodes the JSON answer of a GET of url into v; false on any
// failure or a status other than 200.
func getJSON(url string, v any) bool {
	resp, err := healthClient.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(v) == nil
}

// start execs the agent and waits (30 s at most) until it is ready
// (ConsulReady).
func (c *Consul) start() error {
	bin, err := ConsulBinary()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, c.args...)
	DieWithParent(cmd)
	cmd.Stdout = &lockedWriter{mu: &c.mu, w: &c.out}
	cmd.Stderr = cmd.Stdout
	done := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	err = cmd.Start()
	c.mu.Unlock()
	if err != nil {
		close(done)
		return err
	}
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ConsulReady(c.Addr) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("harness: consul exited: %s", c.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.Stop()
	return fmt.Errorf("harness: consul has no leader after 30s: %s", c.Output())
}

// Restart starts the stopped agent again on the same ports (a dev agent
// starts with an empty state, one with a data dir with its old state).
func (c *Consul) Restart() error { return c.start() }

// Output returns what the agent printed.
func (c *Consul) Output() string { c.mu.Lock(); defer c.mu.Unlock(); return c.out.String() }

// Pid is the agent's process id.
func (c *Consul) Pid() int { c.mu.Lock(); defer c.mu.Unlock(); return c.cmd.Process.Pid }

// Version asks the agent for its version ("" when it does not say).
func (c *Consul) Version() string {
	resp, err := healthClient.Get("http://" + c.Addr + "/v1/agent/self")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var self struct{ Config struct{ Version string } }
	if json.NewDecoder(resp.Body).Decode(&self) != nil {
		return ""
	}
	return self.Config.Version
}

// Stop ends the agent (SIGTERM, then SIGKILL after 5 s) and waits for it.
// Stopping an agent that does not run does nothing.
func (c *Consul) Stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

var (
	sharedConsulOnce sync.Once
	sharedConsul     *Consul
	sharedConsulErr  error
)

// SharedConsul returns the dev agent of the whole test process, started on
// first use and stopped by Close. Tests keep apart by cluster name.
func SharedConsul(tb testing.TB) *Consul {
	tb.Helper()
	sharedConsulOnce.Do(func() { sharedConsul, sharedConsulErr = startConsul("") })
	if sharedConsulErr != nil {
		tb.Fatal(sharedConsulErr)
	}
	return sharedConsul
}

// OwnConsul starts a dev agent (state in memory) for one test, for tests
// that stop it or measure it; it is stopped on cleanup.
func OwnConsul(tb testing.TB) *Consul {
	tb.Helper()
	c, err := startConsul("")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// PersistentConsul starts a single-server agent with a data dir for one
// test, so that it can be stopped and started again with its state; it is
// stopped on cleanup.
func PersistentConsul(tb testing.TB) *Consul {
	tb.Helper()
	c, err := startConsul(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// ConsulServers is a cluster of three Consul servers on 127.0.0.1
// (distinct ports, one data dir each), so that a server can be stopped and
// started again with its state.
type ConsulServers struct {
	Agents      []*Consul // agent i is the Consul node it-consul-<i>
	serverPorts []int     // each agent's Raft (server RPC) port
}

// StartConsulServers starts three Consul servers that join each other
// (-bootstrap-expect 3, -retry-join) and waits until they have a leader;
// they are stopped on cleanup, and their output goes into the test log if
// the test failed. Raft runs with raft_multiplier 1 (Consul's
// recommendation for production; its default of 5 suits slow development
// machines): losing the leader costs about 2.5-4.5 s on loopback.
func StartConsulServers(tb testing.TB) *ConsulServers {
	tb.Helper()
	ports, err := FreePorts(12)
	if err != nil {
		tb.Fatal(err)
	}
	cs := &ConsulServers{}
	for i := range 3 {
		p := ports[4*i : 4*i+4] // http, serf LAN, serf WAN, server
		a := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(p[0])}
		a.args = append([]string{"agent", "-server", "-bootstrap-expect", "3", "-data-dir", tb.TempDir(),
			"-node", fmt.Sprintf("it-consul-%d", i)}, consulPorts(p)...)
		a.args = append(a.args, "-retry-interval", "1s", "-log-level", "warn", "-hcl", "performance { raft_multiplier = 1 }")
		for j := range 3 {
			if j != i {
				a.args = append(a.args, "-retry-join", "127.0.0.1:"+strconv.Itoa(ports[4*j+1]))
			}
		}
		cs.Agents = append(cs.Agents, a)
		cs.serverPorts = append(cs.serverPorts, p[3])
	}
	tb.Cleanup(func() {
		for i, a := range cs.Agents {
			a.Stop()
			if tb.Failed() {
				tb.Logf("consul server it-consul-%d output:\n%s", i, a.Output())
			}
		}
	})
	if err := cs.start(0, 1, 2); err != nil {
		tb.Fatal(err)
	}
	return cs
}

// start starts the agents idx at once and waits until each sees a leader.
func (cs *ConsulServers) start(idx ...int) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Go(func() { errs[k] = cs.Agents[i].start() })
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			return fmt.Errorf("consul server %d: %w", idx[k], err)
		}
	}
	return nil
}

// Restart starts the stopped agents idx again with their data dirs and
// ports; an error fails the test.
func (cs *ConsulServers) Restart(tb testing.TB, idx ...int) {
	tb.Helper()
	if err := cs.start(idx...); err != nil {
		tb.Fatal(err)
	}
}

// Leader returns the index of the Raft leader as seen by agent via, or -1.
func (cs *ConsulServers) Leader(via int) int {
	resp, err := healthClient.Get("http://" + cs.Agents[via].Addr + "/v1/status/leader")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var addr string
	if json.NewDecoder(resp.Body).Decode(&addr) != nil {
		return -1
	}
	for i, p := range cs.serverPorts {
		if strings.HasSuffix(addr, ":"+strconv.Itoa(p)) {
			return i
		}
	}
	return -1
}
