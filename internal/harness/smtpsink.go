package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// StartSMTPSink runs Postfix's smtp-sink (`make bench-deps` installs it),
// which speaks SMTP and stores nothing, on a free port of 127.0.0.1 and
// returns its address; it is stopped on cleanup. It serves as the ceiling
// of an SMTP load generator and the loopback on the machine.
func StartSMTPSink(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		bin = "/usr/sbin/smtp-sink"
	}
	ports, err := FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-u", "nobody", "-c", addr, "256")
	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	cmd.Stdout = &lockedWriter{mu: &mu, w: &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("smtp-sink (make bench-deps installs postfix): %v", err)
	}
	tb.Cleanup(func() { cancel(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			tb.Fatalf("smtp-sink did not listen: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
