package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// TestClockOffsetNotInProduction checks that --test-clock-offset, which
// fakes a skewed clock, exists only in a test build: a normal build
// refuses it as a flag, as MAILCLUSTER_TEST_CLOCK_OFFSET and as a key of
// the config file (exit status 2, naming it), and leaves it out of the
// help. A test build (-tags clockskew) knows the flag, checks its value,
// and still takes it from neither the environment nor the file.
func TestClockOffsetNotInProduction(t *testing.T) {
	dir := t.TempDir()
	yaml := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(yaml, []byte("test-clock-offset: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	refusals := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"Flag", nil, []string{"--test-clock-offset", "3s"}, "unknown flag: --test-clock-offset"},
		{"Env", []string{"MAILCLUSTER_TEST_CLOCK_OFFSET=3s"}, nil, "unknown environment variable MAILCLUSTER_TEST_CLOCK_OFFSET"},
		{"File", nil, []string{"--config", yaml}, `unknown key "test-clock-offset"`},
	}
	serve := func(args []string) []string {
		return append([]string{"serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", ""}, args...)
	}
	t.Run("Normal", func(t *testing.T) {
		for _, r := range refusals {
			t.Run(r.name, func(t *testing.T) {
				_, stderr, code := runCLI(t, r.env, serve(r.args)...)
				if code != 2 || !strings.Contains(stderr, r.want) {
					t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, r.want)
				}
			})
		}
		t.Run("Help", func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, "serve", "--help")
			if code != 0 || !strings.Contains(stdout, "--probe-interval") {
				t.Fatalf("help: exit %d\n%s%s", code, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "clock-offset") {
				t.Fatalf("help names the test flag:\n%s", stdout)
			}
		})
	})
	t.Run("TestBuild", func(t *testing.T) {
		bin := harness.BinaryWithTags(t, "clockskew")
		stdout, _, code := runBin(t, bin, nil, "serve", "--help")
		if code != 0 || !strings.Contains(stdout, "--test-clock-offset") {
			t.Fatalf("the test build does not offer --test-clock-offset: exit %d\n%s", code, stdout)
		}
		for _, r := range refusals[1:] {
			t.Run(r.name, func(t *testing.T) {
				_, stderr, code := runBin(t, bin, r.env, serve(r.args)...)
				if code != 2 || !strings.Contains(stderr, r.want) {
					t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, r.want)
				}
			})
		}
		t.Run("OutOfRange", func(t *testing.T) {
			_, stderr, code := runBin(t, bin, nil, serve([]string{"--test-clock-offset", "-25h"})...)
			if code != 2 || !strings.Contains(stderr, "test-clock-offset -25h0m0s: must be within") {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
		})
	})
}

// runBin runs bin with args to completion, bounded to 20 s, with env
// added to PATH and HOME, and returns its output and exit status.
func runBin(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within 20s", args)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}
