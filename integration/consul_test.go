package integration_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// consulBinary finds the Consul agent: $MAILCLUSTER_CONSUL_BIN, consul on
// PATH, or bin/consul built by `make consul`.
func consulBinary() (string, error) {
	if p := os.Getenv("MAILCLUSTER_CONSUL_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	p, _ := filepath.Abs("../bin/consul")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Consul agent: run `make consul` (builds bin/consul) or put consul on PATH")
	}
	return p, nil
}

// Consul is a dev-mode Consul agent on loopback ports.
type Consul struct {
	Addr string // host:port of its HTTP API
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
	args []string
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

// startConsul starts a dev agent and waits until it has a leader.
func startConsul() (*Consul, error) { return startConsulIn("") }

// startConsulIn starts a dev agent, or, with a data dir, a single-server
// agent that keeps its state across restarts.
func startConsulIn(dataDir string) (*Consul, error) {
	bin, err := consulBinary()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(ports[0])}
	mode := []string{"-dev"}
	if dataDir != "" {
		mode = []string{"-server", "-bootstrap-expect", "1", "-data-dir", dataDir, "-node", "it-consul"}
	}
	c.args = append(mode, "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]), "-log-level", "warn")
	c.args = append([]string{"agent"}, c.args...)
	if err := c.start(bin); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Consul) start(bin string) error {
	c.cmd = exec.Command(bin, c.args...)
	c.cmd.Stdout = &lockedWriter{mu: &c.mu, w: &c.out}
	c.cmd.Stderr = c.cmd.Stdout
	c.done = make(chan struct{})
	if err := c.cmd.Start(); err != nil {
		return err
	}
	done := c.done
	go func() { _ = c.cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + c.Addr + "/v1/status/leader")
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(bytes.Trim(b.Bytes(), "\" \n")) > 0 {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("consul exited: %s", c.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.Stop()
	return fmt.Errorf("consul has no leader after 30s: %s", c.Output())
}

// Restart starts the agent again on the same ports (a dev agent starts
// with an empty state).
func (c *Consul) Restart() error {
	bin, err := consulBinary()
	if err != nil {
		return err
	}
	return c.start(bin)
}

// Output returns what the agent printed.
func (c *Consul) Output() string { c.mu.Lock(); defer c.mu.Unlock(); return c.out.String() }

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

var (
	sharedConsulOnce sync.Once
	sharedConsul     *Consul
	sharedConsulErr  error
)

// SharedConsul returns the package's Consul agent, started on first use
// and stopped by TestMain. Tests keep apart by cluster name.
func SharedConsul(t testing.TB) *Consul {
	t.Helper()
	sharedConsulOnce.Do(func() { sharedConsul, sharedConsulErr = startConsul() })
	if sharedConsulErr != nil {
		t.Fatal(sharedConsulErr)
	}
	return sharedConsul
}

// PersistentConsul starts a single-server agent with a data dir for one
// test, so that it can be stopped and started again with its state.
func PersistentConsul(t testing.TB) *Consul {
	t.Helper()
	c, err := startConsulIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// OwnConsul starts an agent for one test (for tests that stop it).
func OwnConsul(t testing.TB) *Consul {
	t.Helper()
	c, err := startConsul()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}
