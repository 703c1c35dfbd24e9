package harness

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process describes a mailcluster process to start. The zero value of each
// optional field means its documented default.
type Process struct {
	// Bin is the binary to run; "" means the one Build compiles.
	Bin string
	// Args are the command-line arguments. They must make the process serve
	// on loopback addresses and write the "listening" line (`serve ...`).
	Args []string
	// Env adds variables (KEY=VALUE) to a minimal environment (PATH, HOME).
	Env []string
	// LogPath, when set, is a file that standard output and standard error
	// are appended to, so that logging under load costs the test process
	// nothing; the last lines other than the access log go into the test
	// log if the test fails. "" keeps the output in memory and copies the
	// whole log into the test log at cleanup.
	LogPath string
	// ReadyTimeout bounds the wait for the "listening" line; 0 means 20 s.
	ReadyTimeout time.Duration
}

// Node is one started mailcluster process. Its address fields are those of
// the last "listening" line; Restart fills them again.
type Node struct {
	DataDir    string    // the --data-dir argument ("" when none)
	LogPath    string    // the log file ("" when the log is in memory)
	BaseURL    string    // http://127.0.0.1:port
	HTTPS      string    // host:port of HTTPS ("" when off)
	SMTP       string    // host:port of inbound SMTP ("" when off)
	Submission string    // host:port of submission ("" when off)
	IMAP       string    // host:port of IMAP with STARTTLS ("" when off)
	POP3       string    // host:port of POP3 with STLS ("" when off)
	Started    time.Time // when the process was last started

	tb   testing.TB
	spec Process

	mu     sync.Mutex // guards what follows
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	stdout bytes.Buffer  // in-memory mode only
	stderr bytes.Buffer  // in-memory mode only
}

var (
	reRest       = regexp.MustCompile(`msg=listening .*rest=(http://\S+)/api/v1/`)
	reSMTP       = regexp.MustCompile(` smtp=(\S+)`)
	reSubmission = regexp.MustCompile(` submission=(\S+)`)
	reHTTPS      = regexp.MustCompile(` https=(\S+)`)
	reIMAP       = regexp.MustCompile(` imap=(\S+)`)
	rePOP3       = regexp.MustCompile(` pop3=(\S+)`)
)

// Start runs the process p describes, waits for its "listening" line and
// kills it on cleanup, also when the test fails. A process that exits or is
// not ready in time fails the test.
func Start(tb testing.TB, p Process) *Node {
	tb.Helper()
	if p.Bin == "" {
		p.Bin = Binary(tb)
	}
	if p.ReadyTimeout == 0 {
		p.ReadyTimeout = 20 * time.Second
	}
	n := &Node{tb: tb, spec: p, LogPath: p.LogPath}
	for i, a := range p.Args {
		if a == "--data-dir" && i+1 < len(p.Args) {
			n.DataDir = p.Args[i+1]
		}
	}
	tb.Cleanup(func() {
		n.Kill()
		switch {
		case n.LogPath == "":
			tb.Logf("node %s log:\n%s", n.DataDir, n.Stderr())
		case tb.Failed():
			tb.Logf("log of %s (last lines other than access log):\n%s", n.DataDir, n.Events(40))
		}
	})
	n.start(tb)
	return n
}

// Restart starts the process again, after it stopped, with the same
// binary, arguments, environment and log; tb becomes the test that Stop
// reports to.
func (n *Node) Restart(tb testing.TB) {
	tb.Helper()
	n.start(tb)
}

// start execs the process and waits for the ready line.
func (n *Node) start(tb testing.TB) {
	tb.Helper()
	n.tb = tb
	cmd := exec.Command(n.spec.Bin, n.spec.Args...)
	DieWithParent(cmd)
	cmd.Env = baseEnv(n.spec.Env)
	done := make(chan struct{})
	var (
		ready <-chan string
		file  *os.File
		off   int64
	)
	if n.LogPath != "" {
		f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			tb.Fatal(err)
		}
		off, _ = f.Seek(0, io.SeekEnd)
		cmd.Stdout, cmd.Stderr = f, f
		file = f
	} else {
		cmd.Stdout = &lockedWriter{mu: &n.mu, w: &n.stdout}
		pr, pw := io.Pipe()
		cmd.Stderr = pw
		ready = n.scan(pr)
		go func() { <-done; pw.Close() }()
	}
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.Started = time.Now()
	err := cmd.Start()
	n.mu.Unlock()
	if file != nil {
		file.Close()
	}
	if err != nil {
		close(done)
		tb.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.After(n.spec.ReadyTimeout)
	var line string
	for line == "" {
		var poll <-chan time.Time
		if file != nil {
			if line = n.readyLine(off); line != "" {
				break
			}
			poll = time.After(5 * time.Millisecond)
		}
		select {
		case line = <-ready:
		case <-poll:
		case <-done:
			if file == nil {
				// The scanner may still hold the last lines.
				select {
				case line = <-ready:
					continue
				case <-time.After(100 * time.Millisecond):
				}
			}
			tb.Fatalf("node exited before it was ready:\n%s", n.tail())
		case <-deadline:
			tb.Fatalf("node not ready within %s:\n%s", n.spec.ReadyTimeout, n.tail())
		}
	}
	n.BaseURL = reRest.FindStringSubmatch(line)[1]
	n.SMTP = listenField(reSMTP, line)
	n.Submission = listenField(reSubmission, line)
	n.HTTPS = listenField(reHTTPS, line)
	n.IMAP = listenField(reIMAP, line)
	n.POP3 = listenField(rePOP3, line)
}

// listenField returns the address re finds in the ready line; "" when the
// listener is off (the line says "").
func listenField(re *regexp.Regexp, line string) string {
	if m := re.FindStringSubmatch(line); m != nil && m[1] != `""` {
		return m[1]
	}
	return ""
}

// scan copies the process's standard error into memory line by line and
// sends the first "listening" line.
func (n *Node) scan(r io.Reader) <-chan string {
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.stderr.WriteString(line + "\n")
			n.mu.Unlock()
			if !sent && reRest.MatchString(line) {
				ready <- line
				sent = true
			}
		}
	}()
	return ready
}

// readyLine returns the "listening" line written to the log file after
// offset, if any.
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

// tail is the end of the log for a failure message.
func (n *Node) tail() string {
	if n.LogPath != "" {
		return n.LogTail(4096)
	}
	return n.Stderr()
}

// proc returns the current process and its exit channel.
func (n *Node) proc() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

// Stdout returns what the process printed on standard output so far (with
// a log file: the whole file, standard error included).
func (n *Node) Stdout() string {
	if n.LogPath != "" {
		b, _ := os.ReadFile(n.LogPath)
		return string(b)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stdout.String()
}

// Stderr returns the process's log so far (with a log file: the whole
// file, standard output included).
func (n *Node) Stderr() string {
	if n.LogPath != "" {
		b, _ := os.ReadFile(n.LogPath)
		return string(b)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stderr.String()
}

// LogTail returns the last max bytes of the log.
func (n *Node) LogTail(max int64) string {
	if n.LogPath == "" {
		s := n.Stderr()
		return s[len(s)-min(len(s), int(max)):]
	}
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

// Events returns the last max lines of the log that are not access-log
// lines, followed by the node's cluster log (<data dir>/logs/cluster.log).
func (n *Node) Events(max int) string {
	var keep []string
	for _, line := range strings.Split(n.Stderr(), "\n") {
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

// Pid is the process id of the current (or last) process.
func (n *Node) Pid() int {
	cmd, _ := n.proc()
	return cmd.Process.Pid
}

// Signal sends sig to the process.
func (n *Node) Signal(sig os.Signal) error {
	cmd, _ := n.proc()
	return cmd.Process.Signal(sig)
}

// Pause stops the process with SIGSTOP: it keeps its sockets and answers
// nothing until Resume.
func (n *Node) Pause() error { return n.Signal(syscall.SIGSTOP) }

// Resume lets a paused process go on (SIGCONT).
func (n *Node) Resume() error { return n.Signal(syscall.SIGCONT) }

// Alive reports whether the process still runs.
func (n *Node) Alive() bool {
	_, done := n.proc()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Wait waits until the process has exited.
func (n *Node) Wait() {
	_, done := n.proc()
	<-done
}

// Stop sends SIGTERM and waits for a clean exit: not exiting within 10 s
// (the process is then killed) or an exit status other than 0 fails the
// test that started (or last restarted) the node.
func (n *Node) Stop() {
	n.tb.Helper()
	cmd, done := n.proc()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.Kill()
		n.tb.Fatalf("node %s did not stop within 10s after SIGTERM", n.DataDir)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		n.tb.Fatalf("node exited with status %d after SIGTERM:\n%s", code, n.tail())
	}
}

// Kill ends the process with SIGKILL if it still runs and waits for it.
func (n *Node) Kill() {
	cmd, done := n.proc()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-done
}

// Health reads the node's /health (see ReadHealth); ok is false when it
// does not answer within a second.
func (n *Node) Health() (h Health, ok bool) {
	h, _, ok = ReadHealth(nil, n.BaseURL)
	return h, ok
}
