package bench_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// Processes are started through internal/harness, shared with the
// integration tests. Every node's output goes to a file, not through this
// process, so that logging under load costs the load generator nothing.

type (
	// Node is one mailcluster process.
	Node = harness.Node
	// Cluster is a set of nodes joined through one Consul agent.
	Cluster = harness.Cluster
)

const (
	adminUser     = harness.AdminUser
	adminPW       = "bench-admin-pass-1"
	clusterSecret = "bench-cluster-secret-0123456789"
	// readyTimeout bounds a node's start: a node with 100,000 accounts
	// loads its snapshot first.
	readyTimeout = 60 * time.Second
)

var adminEnv = []string{"MAILCLUSTER_ADMIN_PASSWORD=" + adminPW}

// nodeEnv is env plus MAILCLUSTER_BENCH_NODE_ENV, for experiments such as
// GOMEMLIMIT=150MiB or GOGC=50.
func nodeEnv(env ...string) []string {
	return append(env, strings.Fields(os.Getenv("MAILCLUSTER_BENCH_NODE_ENV"))...)
}

// StartProcess runs the binary with args, waits for its "listening" line
// and kills it on cleanup. Its output is appended to logPath.
func StartProcess(t testing.TB, logPath string, env []string, args ...string) *Node {
	t.Helper()
	return harness.Start(t, harness.Process{Args: args, Env: nodeEnv(env...), LogPath: logPath, ReadyTimeout: readyTimeout})
}

// newCluster returns a cluster named name-<number> on consul with no node
// yet: nodes log to files, SMTP and submission are off.
func newCluster(t testing.TB, consul *harness.Consul, name string) *Cluster {
	return harness.NewCluster(t, consul, clusterOptions(t, name))
}

func clusterOptions(t testing.TB, name string) harness.ClusterOptions {
	return harness.ClusterOptions{Name: name, Secret: clusterSecret, AdminPassword: adminPW, Env: nodeEnv(),
		NoMail: true, LogDir: t.TempDir(), Timeout: 20 * time.Second, ReadyTimeout: readyTimeout}
}

// StartCluster starts n nodes named n0..n<n-1> with --auto-admit and
// waits until one is primary and the others are registered secondaries.
func StartCluster(t testing.TB, consul *harness.Consul, name string, n int) *Cluster {
	t.Helper()
	return harness.StartCluster(t, consul, n, clusterOptions(t, name))
}

// waitPrimary waits until exactly one live node of c is primary; not
// within timeout fails t (which may be a subtest of the one that started
// the cluster).
func waitPrimary(t testing.TB, c *Cluster, timeout time.Duration) int {
	t.Helper()
	p, err := c.AwaitPrimary(timeout)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	pollClient  = &http.Client{Timeout: 2 * time.Second}
	setupClient = &http.Client{Timeout: 30 * time.Second} // a loaded 2-CPU box can take seconds for a bcrypt hash
)

// Health reads a node's /health (whatever its status code); ok false
// when it does not answer.
func Health(base string) (h harness.Health, code int, ok bool) {
	return harness.ReadHealth(pollClient, base)
}

// tryDo sends one request as the administrator.
func tryDo(client *http.Client, method, url, contentType, body string) (int, string, error) {
	return harness.Do(client, method, url, adminUser, adminPW, contentType, body)
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

// settle waits until every live node of c has applied the same index for
// 200 ms (the cluster is quiet), at most timeout.
func settle(t testing.TB, c *Cluster, timeout time.Duration) {
	var last uint64
	var since time.Time
	ok := harness.WaitFor(timeout, func() bool {
		var idx []uint64
		for _, n := range c.Nodes {
			if !n.Alive() {
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
