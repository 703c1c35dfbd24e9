package pop3svc_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPythonPoplib drives the STLS listener with Python's poplib
// (python3 is a test dependency: make test-deps installs it).
func TestPythonPoplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed for this test (make test-deps installs it)")
	}
	e := mustOpenEnv(t)
	e.deliver(msg2)
	e.deliver(msg1)
	host, port, _ := net.SplitHostPort(e.pop3)
	out, err := exec.Command(python, "testdata/poplib_client.py", host, port, e.certFile, "alice@example.com", alicePass).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("poplib client: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("poplib saw: %s", out)
	var got struct {
		CapaBeforeTLS []string `json:"capa_before_tls"`
		UserBeforeTLS string   `json:"user_before_tls"`
		Capa          []string
		Pass          string
		Stat          []int
		List, UIDL    []string
		Retr, Top     []string
		Quit          string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	size2 := len(msg2) + 1
	switch {
	case !slices.Contains(got.CapaBeforeTLS, "STLS") || slices.Contains(got.CapaBeforeTLS, "USER"):
		t.Fatalf("CAPA before TLS: %v", got.CapaBeforeTLS)
	case !strings.HasPrefix(got.UserBeforeTLS, "-ERR"):
		t.Fatalf("USER before TLS: %q", got.UserBeforeTLS)
	case !slices.Contains(got.Capa, "USER") || !slices.Contains(got.Capa, "SASL") || !slices.Contains(got.Capa, "UIDL"):
		t.Fatalf("CAPA after TLS: %v", got.Capa)
	case !strings.HasPrefix(got.Pass, "+OK"):
		t.Fatalf("PASS: %q", got.Pass)
	case !slices.Equal(got.Stat, []int{2, size2 + len(msg1)}):
		t.Fatalf("STAT: %v", got.Stat)
	case !slices.Equal(got.List, []string{fmt.Sprintf("1 %d", size2), fmt.Sprintf("2 %d", len(msg1))}):
		t.Fatalf("LIST: %v", got.List)
	case len(got.UIDL) != 2 || !strings.HasPrefix(got.UIDL[0], "1 "):
		t.Fatalf("UIDL: %v", got.UIDL)
	case strings.Join(got.Retr, "\r\n")+"\r\n" != strings.ReplaceAll(strings.ReplaceAll(msg2, "\r\n", "\n"), "\n", "\r\n"):
		t.Fatalf("RETR: %q", got.Retr)
	case !slices.Equal(got.Top, []string{"From: carol@remote.test", "To: alice@example.com", "Subject: two", ""}):
		t.Fatalf("TOP: %q", got.Top)
	case !strings.HasPrefix(got.Quit, "+OK"):
		t.Fatalf("QUIT: %q", got.Quit)
	}
	if n := e.inboxFiles(); n != 1 {
		t.Fatalf("INBOX holds %d files after poplib's DELE and QUIT, want 1", n)
	}
}
