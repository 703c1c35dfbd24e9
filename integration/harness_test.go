package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the mailcluster binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailcluster-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "mailcluster")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/mailcluster")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mailcluster:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if sharedConsul != nil {
		sharedConsul.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// Node is one mailcluster process started by a test.
type Node struct {
	t          testing.TB
	cmd        *exec.Cmd
	DataDir    string
	BaseURL    string // http://127.0.0.1:port
	HTTPS      string // host:port of HTTPS ("" when off)
	SMTP       string // host:port of inbound SMTP ("" when off)
	Submission string // host:port of submission ("" when off)

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
}

var (
	reRest       = regexp.MustCompile(`msg=listening .*rest=(http://\S+)/api/v1/`)
	reSMTP       = regexp.MustCompile(` smtp=(\S+)`)
	reSubmission = regexp.MustCompile(` submission=(\S+)`)
	reHTTPS      = regexp.MustCompile(` https=(\S+)`)
)

// StartNode runs `mailcluster serve` on 127.0.0.1 with a free port and the
// data dir, waits for its "listening" line and stops it on cleanup.
// env adds variables (KEY=VALUE) to a minimal environment.
func StartNode(t testing.TB, dataDir string, env []string, args ...string) *Node {
	t.Helper()
	full := append([]string{"serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--node-name", "it-node",
		"--smtp-addr", "127.0.0.1:0", "--submission-addr", "127.0.0.1:0"}, args...)
	return StartProcess(t, env, full...)
}

// StartProcess runs the binary with exactly args (which must make it serve
// on a loopback address), waits for the "listening" line and stops the
// process on cleanup.
func StartProcess(t testing.TB, env []string, args ...string) *Node {
	t.Helper()
	n := &Node{t: t, done: make(chan struct{})}
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			n.DataDir = args[i+1]
		}
	}
	n.cmd = exec.Command(binPath, args...)
	n.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	n.cmd.Stdout = &lockedWriter{mu: &n.mu, w: &n.stdout}
	pr, pw := io.Pipe()
	n.cmd.Stderr = pw
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.stderr.WriteString(line + "\n")
			n.mu.Unlock()
			if m := reRest.FindStringSubmatch(line); m != nil {
				if sm := reSMTP.FindStringSubmatch(line); sm != nil {
					n.SMTP = sm[1]
				}
				if sm := reSubmission.FindStringSubmatch(line); sm != nil {
					n.Submission = sm[1]
				}
				if sm := reHTTPS.FindStringSubmatch(line); sm != nil && sm[1] != `""` {
					n.HTTPS = sm[1]
				}
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		_ = n.cmd.Wait()
		pw.Close()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.Kill()
		t.Logf("node %s log:\n%s", n.DataDir, n.Stderr())
	})
	select {
	case n.BaseURL = <-ready:
	case <-n.done:
		t.Fatalf("node exited before it was ready:\n%s", n.Stderr())
	case <-time.After(20 * time.Second):
		t.Fatalf("node not ready within 20s:\n%s", n.Stderr())
	}
	return n
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stdout returns what the process printed on standard output so far.
func (n *Node) Stdout() string { n.mu.Lock(); defer n.mu.Unlock(); return n.stdout.String() }

// Stderr returns the process's log so far.
func (n *Node) Stderr() string { n.mu.Lock(); defer n.mu.Unlock(); return n.stderr.String() }

// Stop sends SIGTERM and waits for a clean exit (exit status 0).
func (n *Node) Stop() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.Kill()
		n.t.Fatalf("node did not stop within 10s after SIGTERM")
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("node exited with status %d after SIGTERM:\n%s", code, n.Stderr())
	}
}

// Kill ends the process with SIGKILL if it still runs and waits for it.
func (n *Node) Kill() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	<-n.done
}

// runCLI runs the binary to completion (bounded to 20s) and returns its
// output and exit status.
func runCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within 20s", args)
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
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
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
