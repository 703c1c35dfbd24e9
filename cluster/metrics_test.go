package cluster_test

import (
	"bytes"
	"context"
	"mailcluster/internal/harness"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/cluster"
)

// unreachableConsul is a client of an address where nothing listens.
func unreachableConsul(t *testing.T) *api.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsulStoreWatchErrors(t *testing.T) {
	st, err := cluster.OpenConsulStore(unreachableConsul(t), "metrics", filepath.Join(t.TempDir(), "snapshot.db"), discard())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n := st.WatchErrors(); n != 0 {
		t.Fatalf("WatchErrors before Run = %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	waitFor(t, func() bool { return st.WatchErrors() >= 2 })
	cancel()
	<-done
	if lag := st.Lag(); lag != -1 {
		t.Errorf("Lag without any answer = %v, want -1", lag)
	}
}

func TestElectionWatchErrors(t *testing.T) {
	e := cluster.NewElection(cluster.ElectionConfig{Client: unreachableConsul(t), Cluster: "metrics",
		Self: mailcluster.PrimaryRef{Name: "n1", APIURL: "http://127.0.0.1:1"}, Log: discard(), NeverPrimary: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	waitFor(t, func() bool { return e.WatchErrors() >= 2 })
	cancel()
	<-done
	if e.Role() != mailcluster.RoleUnknown || e.Elections() != 0 || e.PrimaryDuration() != 0 {
		t.Errorf("role %s, elections %d, primary for %v; want unknown, 0, 0", e.Role(), e.Elections(), e.PrimaryDuration())
	}
}

// TestElectionPrimaryDuration runs an election against a real Consul
// agent: the time as primary grows while the node is primary and stops
// when it steps down.
func TestElectionPrimaryDuration(t *testing.T) {
	client := MustStartConsul(t)
	e := cluster.NewElection(cluster.ElectionConfig{Client: client, Cluster: "metrics",
		Self: mailcluster.PrimaryRef{Name: "n1", APIURL: "http://127.0.0.1:1"}, Log: discard()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return e.Role() == mailcluster.RolePrimary })
	if n := e.Elections(); n != 1 {
		t.Errorf("Elections = %d, want 1", n)
	}
	d1 := e.PrimaryDuration()
	time.Sleep(50 * time.Millisecond)
	d2 := e.PrimaryDuration()
	if d2-d1 < 50*time.Millisecond {
		t.Errorf("PrimaryDuration grew by %v in 50ms", d2-d1)
	}
	cancel()
	<-done // steps down and releases the key
	d3 := e.PrimaryDuration()
	time.Sleep(20 * time.Millisecond)
	if d4 := e.PrimaryDuration(); d4 != d3 || d3 < d2 {
		t.Errorf("after stepping down PrimaryDuration = %v then %v (was %v while primary)", d3, d4, d2)
	}
}

// MustStartConsul starts a dev Consul agent on free loopback ports for one
// test and returns a client of it. The agent is $MAILCLUSTER_CONSUL_BIN,
// consul on PATH or ../bin/consul (`make consul`); without one the test
// is skipped.
func MustStartConsul(t *testing.T) *api.Client {
	t.Helper()
	c, _ := mustStartConsulAddr(t)
	return c
}

// mustStartConsulAddr is MustStartConsul, also returning the agent's
// HTTP address.
func mustStartConsulAddr(t *testing.T) (*api.Client, string) {
	t.Helper()
	bin := os.Getenv("MAILCLUSTER_CONSUL_BIN")
	if bin == "" {
		bin, _ = exec.LookPath("consul")
	}
	if bin == "" {
		if p, err := filepath.Abs("../bin/consul"); err == nil {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Skip("no Consul agent: set MAILCLUSTER_CONSUL_BIN or run `make consul`")
	}
	ports := freePorts(t, 4)
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", ports[0], "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", ports[1], "-serf-wan-port", ports[2], "-server-port", ports[3], "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = out, out
	harness.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := "127.0.0.1:" + ports[0]
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("consul exited: %s", out)
		default:
		}
		if harness.ConsulReady(addr) {
			c, err := api.NewClient(&api.Config{Address: addr})
			if err != nil {
				t.Fatal(err)
			}
			return c, addr
		}
	}
	t.Fatalf("consul has no leader after 30s: %s", out)
	return nil, ""
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until all are chosen, so that they differ
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
