package imapsvc_test

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestPythonImaplib drives the STARTTLS listener with Python's imaplib
// (python3 is a test dependency: make test-deps installs it).
func TestPythonImaplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed for this test (make test-deps installs it)")
	}
	e := mustOpenEnv(t)
	host, port, _ := net.SplitHostPort(e.node.imap)
	cmd := exec.Command(python, "testdata/imaplib_client.py", host, port, e.certFile, "alice@example.com", alicePass)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("imaplib client: %v\n%s\n%s", err, out, stderr)
	}
	var got struct {
		CapsBeforeTLS []string `json:"caps_before_tls"`
		Login         string
		Caps          []string
		List          []string
		Append        []string
		Select        []string
		Search        string
		Fetch         []string
		Store         []string
		Copy          []string
		Expunge       []any
		Status        string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("imaplib saw: %s", out)
	has := func(list []string, s string) bool {
		for _, x := range list {
			if strings.Contains(x, s) {
				return true
			}
		}
		return false
	}
	switch {
	case !has(got.CapsBeforeTLS, "LOGINDISABLED") || !has(got.CapsBeforeTLS, "STARTTLS"):
		t.Fatalf("capabilities before TLS: %v", got.CapsBeforeTLS)
	case got.Login != "OK" || !has(got.Caps, "IMAP4REV2") || !has(got.Caps, "IDLE"):
		t.Fatalf("login %s, capabilities %v", got.Login, got.Caps)
	case !has(got.List, `(\HasNoChildren \Sent) "." "Sent"`):
		t.Fatalf("LIST: %v", got.List)
	case got.Append[0] != "OK" || !strings.Contains(got.Append[1], "APPENDUID"):
		t.Fatalf("APPEND: %v", got.Append)
	case got.Select[0] != "OK" || got.Select[1] != "1":
		t.Fatalf("SELECT: %v", got.Select)
	case got.Search != "1":
		t.Fatalf("SEARCH: %q", got.Search)
	case len(got.Fetch) == 0 || !strings.Contains(got.Fetch[0], "UID 1") || !strings.Contains(got.Fetch[0], `\Seen`) ||
		!strings.Contains(got.Fetch[0], "Subject: from imaplib"):
		t.Fatalf("FETCH: %v", got.Fetch)
	case got.Store[0] != "OK" || !strings.Contains(got.Store[1], `\Flagged`):
		t.Fatalf("STORE: %v", got.Store)
	case got.Copy[0] != "OK":
		t.Fatalf("UID COPY: %v", got.Copy)
	case !strings.Contains(got.Status, "MESSAGES 1"):
		t.Fatalf("STATUS Sent: %q", got.Status)
	}
	files := e.folderFiles("alice@example.com", "Sent")
	if len(files) != 1 || !strings.HasSuffix(files[0], ":2,FS") {
		t.Fatalf("Sent holds %v, want the copy with flags FS in its name", files)
	}
	if files := e.folderFiles("alice@example.com", "INBOX"); len(files) != 0 {
		t.Fatalf("INBOX holds %v after the expunge", files)
	}
}
