package integration_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// The processes are started through internal/harness, shared with the
// benchmarks; this file binds it to the credentials of these tests.

type (
	// Node is one mailcluster process started by a test.
	Node = harness.Node
	// Cluster is a set of mailcluster processes joined through one Consul.
	Cluster = harness.Cluster
	// Consul is a Consul agent on loopback ports.
	Consul = harness.Consul
)

const clusterSecret = "it-cluster-secret-0123456789"

// binPath is the mailcluster binary built once by TestMain; StartProcess
// runs it (a test may point it at another build for a while).
var binPath string

func TestMain(m *testing.M) {
	bin, err := harness.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	harness.Close()
	os.Exit(code)
}

// StartNode runs `mailcluster serve` on 127.0.0.1 with a free port and the
// data dir, waits for its "listening" line and stops it on cleanup.
// env adds variables (KEY=VALUE) to a minimal environment.
func StartNode(t testing.TB, dataDir string, env []string, args ...string) *Node {
	t.Helper()
	full := append([]string{"serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--node-name", "it-node",
		"--smtp-addr", "127.0.0.1:0", "--submission-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"}, args...)
	return StartProcess(t, env, full...)
}

// StartProcess runs binPath with exactly args (which must make it serve
// on a loopback address), waits for the "listening" line and stops the
// process on cleanup.
func StartProcess(t testing.TB, env []string, args ...string) *Node {
	t.Helper()
	return harness.Start(t, harness.Process{Bin: binPath, Env: env, Args: args})
}

// StartCluster starts n nodes named n0..n<n-1> in cluster <test name>
// with this package's secret and administrator; extra adds arguments per
// node index.
func StartCluster(t testing.TB, consul *Consul, n int, extra map[int][]string) *Cluster {
	t.Helper()
	return harness.StartCluster(t, consul, n, harness.ClusterOptions{Secret: clusterSecret, AdminPassword: adminPW, Args: extra})
}

// runCLI runs the binary to completion (bounded to 20s) and returns its
// output and exit status.
func runCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return harness.Run(t, env, args...)
}

// do sends one HTTP request with basic auth and returns status and body;
// a transport error fails the test.
func do(t testing.TB, method, url, user, pass, contentType, body string) (int, string) {
	t.Helper()
	code, b, err := tryDo(method, url, user, pass, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// tryDo is do that returns transport errors.
func tryDo(method, url, user, pass, contentType, body string) (int, string, error) {
	return harness.Do(nil, method, url, user, pass, contentType, body)
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
	return do(t, method, n.BaseURL+path, harness.AdminUser, adminPW, ct, body)
}

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return harness.Eventually(t, timeout, what, cond)
}

// lockedWriter serialises writes into w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
