package bench_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness is a trimmed copy of integration/harness_test.go and
// consul_test.go (a package cannot import another's _test files). The
// difference: a process's output goes to a file, not through this
// process, so that logging under load costs the load generator nothing.

const (
	adminUser     = "admin@localhost"
	adminPW       = "bench-admin-pass-1"
	clusterSecret = "bench-cluster-secret-0123456789"
)

var adminEnv = []string{"MAILCLUSTER_ADMIN_PASSWORD=" + adminPW}

// Node is one mailcluster process.
type Node struct {
	t       testing.TB
	cmd     *exec.Cmd
	args    []string
	env     []string
	DataDir string
	LogPath string
	BaseURL string // http://127.0.0.1:port
	SMTP    string // host:port of inbound SMTP ("" when off)
	Started time.Time
	done    chan struct{}
}

var (
	reRest = regexp.MustCompile(`msg=listening .*rest=(http://\S+)/api/v1/`)
	reSMTP = regexp.MustCompile(` smtp=(\S+)`)
)

// StartProcess runs the binary with args, waits for its "listening" line
// and kills it on cleanup. Its output is appended to logPath.
func StartProcess(t testing.TB, logPath string, env []string, args ...string) *Node {
	t.Helper()
	n := &Node{t: t, args: args, env: env, LogPath: logPath}
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			n.DataDir = args[i+1]
		}
	}
	n.start(t)
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("log of %s (last lines other than access log):\n%s", n.DataDir, n.Events(40))
		}
	})
	return n
}

// start execs the process and waits for the ready line.
func (n *Node) start(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := f.Seek(0, io.SeekEnd)
	n.cmd = exec.Command(binPath, n.args...)
	n.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, n.env...)
	// For experiments such as GOMEMLIMIT=150MiB or GOGC=50.
	n.cmd.Env = append(n.cmd.Env, strings.Fields(os.Getenv("MAILCLUSTER_BENCH_NODE_ENV"))...)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	n.done = make(chan struct{})
	n.Started = time.Now()
	if err := n.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	f.Close()
	done := n.done
	cmd := n.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if line := n.readyLine(off); line != "" {
			n.BaseURL = reRest.FindStringSubmatch(line)[1]
			if m := reSMTP.FindStringSubmatch(line); m != nil && m[1] != `""` {
				n.SMTP = m[1]
			}
			return
		}
		select {
		case <-done:
			t.Fatalf("node exited before it was ready:\n%s", n.LogTail(4096))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready within 60s:\n%s", n.LogTail(4096))
		}
	}
}

// readyLine returns the "listening" line written after offset, if any.
func (n *Node) readyLine(off int64) string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	for _, line := range strings.Split(string(b), "\n") {
		if reRest.MatchString(line) {
			return line
		}
	}
	return ""
}

// LogTail returns the last max bytes of the node's log.
func (n *Node) LogTail(max int64) string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Events returns the last max lines of the node's log that are not
// access-log lines, and of its cluster log.
func (n *Node) Events(max int) string {
	b, _ := os.ReadFile(n.LogPath)
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && !strings.Contains(line, `msg="http request"`) {
			keep = append(keep, line)
		}
	}
	if n.DataDir != "" {
		if cl, err := os.ReadFile(filepath.Join(n.DataDir, "logs", "cluster.log")); err == nil {
			keep = append(keep, "cluster.log:")
			keep = append(keep, strings.Split(strings.TrimSpace(string(cl)), "\n")...)
		}
	}
	if len(keep) > max {
		keep = keep[len(keep)-max:]
	}
	return strings.Join(keep, "\n")
}

// Restart starts the stopped process again with the same arguments.
func (n *Node) Restart(t testing.TB) { t.Helper(); n.start(t) }

// Pid is the process id.
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// Signal sends sig to the process.
func (n *Node) Signal(sig syscall.Signal) { _ = n.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits (SIGKILL after 10 s).
func (n *Node) Stop() {
	n.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.Kill()
		n.t.Errorf("node %s did not stop within 10s after SIGTERM", n.DataDir)
	}
}

// Kill ends the process with SIGKILL if it still runs and waits for it.
func (n *Node) Kill() {
	if n.cmd == nil || !n.alive() {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.done
}

func (n *Node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// health is the /health answer.
type health struct {
	Status string `json:"status"`
	Role   string `json:"role"`
	Name   string `json:"name"`
	Index  uint64 `json:"index"`
}

var (
	pollClient  = &http.Client{Timeout: 2 * time.Second}
	setupClient = &http.Client{Timeout: 30 * time.Second} // a loaded 2-CPU box can take seconds for a bcrypt hash
)

// Health reads a node's /health (whatever its status code); ok false
// when it does not answer.
func Health(base string) (h health, code int, ok bool) {
	resp, err := pollClient.Get(base + "/health")
	if err != nil {
		return health{}, 0, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return health{}, resp.StatusCode, false
	}
	return h, resp.StatusCode, true
}

// tryDo sends one request as the administrator.
func tryDo(client *http.Client, method, url, contentType, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(adminUser, adminPW)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustDo is tryDo that fails the test unless the status is want.
func mustDo(t testing.TB, method, url, body string, want int) string {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
		if strings.HasPrefix(body, "<") {
			ct = "text/xml"
		}
	}
	code, out, err := tryDo(setupClient, method, url, ct, body)
	if err != nil || code != want {
		t.Fatalf("%s %s: %d %s %v", method, url, code, out, err)
	}
	return out
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

// waitFor polls cond every 5 ms until it holds (true) or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Cluster is a set of nodes joined through one Consul agent.
type Cluster struct {
	t      testing.TB
	Consul *Consul
	Name   string
	Nodes  []*Node
	dir    string
}

// StartCluster starts n nodes named n0..n<n-1> with --auto-admit and
// waits until one is primary and the others are registered secondaries.
func StartCluster(t testing.TB, consul *Consul, name string, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Consul: consul, Name: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%100000), dir: t.TempDir()}
	for i := range n {
		c.Nodes = append(c.Nodes, c.NewNode(fmt.Sprintf("n%d", i), true))
	}
	for i, node := range c.Nodes {
		eventually(t, 20*time.Second, fmt.Sprintf("n%d serves", i), func() bool {
			h, code, ok := Health(node.BaseURL)
			return ok && code == 200 && (h.Role == "primary" || h.Role == "secondary")
		})
	}
	c.WaitPrimary(t, 10*time.Second)
	return c
}

// NewNode starts one more node of the cluster with a fresh data dir.
func (c *Cluster) NewNode(name string, autoAdmit bool, extra ...string) *Node {
	c.t.Helper()
	dir := filepath.Join(c.dir, name)
	args := []string{"serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--node-name", name,
		"--consul-addr", c.Consul.Addr, "--cluster-name", c.Name, "--smtp-addr", "", "--submission-addr", ""}
	if autoAdmit {
		args = append(args, "--auto-admit")
	}
	args = append(args, extra...)
	env := append([]string{"MAILCLUSTER_CLUSTER_SECRET=" + clusterSecret}, adminEnv...)
	return StartProcess(c.t, filepath.Join(c.dir, name+".log"), env, args...)
}

// Primaries returns the indexes of the live nodes that say they are primary.
func (c *Cluster) Primaries() []int {
	var out []int
	for i, n := range c.Nodes {
		if !n.alive() {
			continue
		}
		if h, _, ok := Health(n.BaseURL); ok && h.Role == "primary" {
			out = append(out, i)
		}
	}
	return out
}

// WaitPrimary waits until exactly one live node is primary.
func (c *Cluster) WaitPrimary(t testing.TB, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if p := c.Primaries(); len(p) == 1 {
			return p[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single primary within %s (primaries: %v)", timeout, c.Primaries())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until every live node has applied the same index for
// 200 ms (the cluster is quiet), at most timeout.
func (c *Cluster) settle(t testing.TB, timeout time.Duration) {
	var last uint64
	var since time.Time
	ok := waitFor(timeout, func() bool {
		var idx []uint64
		for _, n := range c.Nodes {
			if !n.alive() {
				continue
			}
			h, _, ok := Health(n.BaseURL)
			if !ok {
				return false
			}
			idx = append(idx, h.Index)
		}
		for _, i := range idx {
			if i != idx[0] {
				return false
			}
		}
		if len(idx) == 0 || idx[0] != last {
			last, since = idx[0], time.Now()
			return false
		}
		return time.Since(since) >= 200*time.Millisecond
	})
	if !ok {
		t.Logf("cluster not quiet within %s", timeout)
	}
}

// Secondaries returns the live nodes other than primary.
func (c *Cluster) Secondaries(primary int) []int {
	var out []int
	for i, n := range c.Nodes {
		if i != primary && n.alive() {
			out = append(out, i)
		}
	}
	return out
}

// ---- Consul ----

// consulBinary finds the agent: $MAILCLUSTER_CONSUL_BIN, consul on PATH,
// or bin/consul built by `make consul`.
func consulBinary() (string, error) {
	if p := os.Getenv("MAILCLUSTER_CONSUL_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	p, _ := filepath.Abs("../bin/consul")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Consul agent: run `make consul` or put consul on PATH")
	}
	return p, nil
}

// Consul is a dev-mode agent on loopback ports.
type Consul struct {
	Addr    string // host:port of its HTTP API
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
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

// StartConsul starts a dev agent (state in memory) and waits for a leader;
// it is stopped on cleanup.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	bin, err := consulBinary()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), logPath: filepath.Join(t.TempDir(), "consul.log"), done: make(chan struct{})}
	f, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.cmd = exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]), "-log-level", "warn")
	c.cmd.Stdout, c.cmd.Stderr = f, f
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := pollClient.Get("http://" + c.Addr + "/v1/status/leader")
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(bytes.Trim(b.Bytes(), "\" \n")) > 0 {
				return c
			}
		}
		select {
		case <-c.done:
			out, _ := os.ReadFile(c.logPath)
			t.Fatalf("consul exited: %s", out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("consul has no leader after 30s")
	return nil
}

// Version asks the agent for its version ("" when it does not say).
func (c *Consul) Version() string {
	resp, err := pollClient.Get("http://" + c.Addr + "/v1/agent/self")
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

// Pid is the agent's process id.
func (c *Consul) Pid() int { return c.cmd.Process.Pid }

// Stop ends the agent (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (c *Consul) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// procStatus reads one "Key: value kB" field of /proc/<pid>/status in MiB.
func procStatus(pid int, key string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb / 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// profile records a CPU profile of process pid with Linux perf into
// $MAILCLUSTER_BENCH_PROFILE/<name>.perf.data until the returned func is
// called. Without that variable (or without perf) it does nothing. Read
// a profile with `perf report -i <file> --no-children --sort symbol`.
func profile(t testing.TB, pid int, name string) (stop func()) {
	dir := os.Getenv("MAILCLUSTER_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Logf("profile %s: no perf: %v", name, err)
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("profile %s: %v", name, err)
		return func() {}
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command(perf, "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		t.Logf("profile %s: %v", name, err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
			t.Logf("profile of %s written to %s", name, out)
		})
	}
	t.Cleanup(stop)
	return stop
}

// cpuSeconds returns the user+system CPU time process pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 per second).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
