package bench_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// countingSink is Postfix's smtp-sink on a free port of 127.0.0.1 with
// its running counters on (-c): it accepts every message, stores none,
// and counts those whose final "." it received.
type countingSink struct {
	Addr string
	Port int

	mesg   atomic.Int64
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	tail   bytes.Buffer // the last output, for errors
	once   sync.Once
}

// reSinkCount is smtp-sink's message counter in its -c output, which is
// written as "sess=N quit=N mesg=N" lines separated by carriage returns.
var reSinkCount = regexp.MustCompile(`mesg=(\d+)`)

// startCountingSink starts smtp-sink on a free port; it is stopped on
// cleanup (or by Stop). It fails t when the sink does not listen.
func startCountingSink(t testing.TB) *countingSink {
	t.Helper()
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tryCountingSink(t, ports[0])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startSinkOn starts a counting smtp-sink with args on port, which an
// earlier sink may still be releasing: it tries for up to 5 seconds.
func startSinkOn(t testing.TB, port int, args ...string) (*countingSink, error) {
	var last error
	for range 50 {
		s, err := tryCountingSink(t, port, args...)
		if err == nil {
			return s, nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return nil, last
}

// tryCountingSink starts smtp-sink on port of 127.0.0.1 with args added
// to its options and waits until it listens (5 seconds at most); it is
// stopped on cleanup (or by Stop).
func tryCountingSink(t testing.TB, port int, args ...string) (*countingSink, error) {
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		bin = "/usr/sbin/smtp-sink"
	}
	s := &countingSink{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, exited: make(chan struct{})}
	// -u nobody: smtp-sink refuses to keep root's privileges; 256 is the
	// listen backlog.
	s.cmd = exec.Command(bin, append(append([]string{"-c", "-u", "nobody"}, args...), s.Addr, "256")...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	harness.DieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("smtp-sink (make bench-deps installs postfix): %w", err)
	}
	go s.read(out)
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-s.exited:
			s.Stop()
			return nil, fmt.Errorf("smtp-sink on %s exited at start: %s", s.Addr, s.output())
		default:
		}
		// The probe is a session; only messages are counted.
		if c, err := net.Dial("tcp", s.Addr); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("smtp-sink did not listen on %s: %s", s.Addr, s.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read follows the counters until smtp-sink's output ends.
func (s *countingSink) read(r io.Reader) {
	defer close(s.exited)
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\r')
		if m := reSinkCount.FindAllStringSubmatch(line, -1); m != nil {
			if n, err := strconv.ParseInt(m[len(m)-1][1], 10, 64); err == nil {
				s.mesg.Store(n)
			}
		} else if len(line) > 0 {
			s.mu.Lock()
			if s.tail.Len() > 4096 {
				s.tail.Reset()
			}
			s.tail.WriteString(line)
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *countingSink) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.String()
}

// Count is the number of messages received so far.
func (s *countingSink) Count() int { return int(s.mesg.Load()) }

// WaitCount waits until at least n messages were received, at most
// timeout, and returns when the n-th was counted (zero time when not).
func (s *countingSink) WaitCount(n int, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if s.Count() >= n {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stop ends the sink (only the process started here) and waits for it.
func (s *countingSink) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		_ = s.cmd.Wait()
	})
}
