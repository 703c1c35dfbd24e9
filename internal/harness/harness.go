// Package harness starts and stops the real processes that the integration
// tests (integration/) and the benchmarks (bench/) drive: the mailcluster
// binary, built once per test process, and Consul agents, all on loopback
// addresses with ports chosen at random.
//
// A node is a started `mailcluster` process (Node): it is ready once it has
// written its "listening" line, its log goes into memory and from there
// into the test log, or into a file when logging under load must cost the
// test process nothing. A Cluster is a set of nodes joined through one
// Consul agent. Every process is ended in t.Cleanup, also when the test
// fails; the agent shared by a whole test process is ended by Close.
//
// The package is imported only by tests and benchmarks. Its helpers take a
// testing.TB and fail the test on a setup error.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// binPackage is the import path of the command that Build compiles.
const binPackage = "mailcluster/cmd/mailcluster"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Build compiles the mailcluster binary into a temporary directory, once
// per test process, and returns its path. Later calls return the same
// path (or the same error). Close removes the directory.
func Build() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailcluster-harness-")
		if err != nil {
			buildErr = fmt.Errorf("harness: build: %w", err)
			return
		}
		bin := filepath.Join(dir, "mailcluster")
		out, err := exec.Command("go", "build", "-o", bin, binPackage).CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			buildErr = fmt.Errorf("harness: building mailcluster: %w\n%s", err, out)
			return
		}
		buildDir, buildBin = dir, bin
	})
	return buildBin, buildErr
}

// Binary returns the path of the mailcluster binary (see Build); a build
// error fails the test.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := Build()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// Close stops the Consul agent shared by the test process (SharedConsul)
// and removes the built binary. TestMain calls it after m.Run.
func Close() {
	if sharedConsul != nil {
		sharedConsul.Stop()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// baseEnv is the environment of a started process: PATH and HOME of the
// test process, then env (KEY=VALUE).
func baseEnv(env []string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
}

// Run runs the mailcluster binary with args to completion, bounded to
// 20 s, and returns its output and exit status. env adds variables to a
// minimal environment (PATH and HOME). Not finishing in time, or not
// starting at all, fails the test.
func Run(tb testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(tb), args...)
	cmd.Env = baseEnv(env)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("%v did not finish within 20s", args)
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			tb.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// lockedWriter serialises writes into w (a process's output is written
// from one goroutine and read from others).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
