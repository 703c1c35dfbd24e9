package integration_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const adminPW = "it-admin-pass-1"

var adminEnv = []string{"MAILCLUSTER_ADMIN_PASSWORD=" + adminPW}

// TestServeCreateRestart starts a node, changes state through both APIs,
// restarts it and reads everything back.
func TestServeCreateRestart(t *testing.T) {
	data := t.TempDir()
	n := StartNode(t, data, adminEnv)

	code, body := do(t, "POST", n.BaseURL+"/api/v1/domains", "admin@localhost", adminPW, "application/json", `{"name":"example.com","description":"it"}`)
	if code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	code, body = do(t, "POST", n.BaseURL+"/api/v1/domains/example.com/accounts", "admin@localhost", adminPW, "application/json",
		`{"mailbox":"alice","fullName":"Alice Example","password":"alice-pass-1","quotaBytes":1048576}`)
	if code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	xmlReq := `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request version="20.0" echo="0" verbose="0"><Operation>CreateUser</Operation><Parameters><Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><FullName>Bob Example</FullName><Password>bob-pass-123</Password></Details></Parameters></Request></API></MDaemon>`
	code, body = do(t, "POST", n.BaseURL+"/MdMgmtWS", "admin@localhost", adminPW, "text/xml", xmlReq)
	if code != 200 || !strings.Contains(body, `id="0"`) {
		t.Fatalf("XML CreateUser: %d %s", code, body)
	}
	code, body = do(t, "PUT", n.BaseURL+"/api/v1/settings/mailcluster/SMTP/Banner", "admin@localhost", adminPW, "application/json", `{"value":"welcome"}`)
	if code != 200 && code != 204 {
		t.Fatalf("put setting: %d %s", code, body)
	}
	ini := filepath.Join(data, "app", "mailcluster.ini")
	eventually(t, waitTimeout, "ini file written", func() bool {
		b, _ := os.ReadFile(ini)
		return strings.Contains(string(b), "Banner=welcome")
	})
	n.Stop()

	n2 := StartNode(t, data, nil) // no password now: the stored hash is kept
	code, body = do(t, "GET", n2.BaseURL+"/api/v1/domains/example.com/accounts", "admin@localhost", adminPW, "", "")
	if code != 200 || !strings.Contains(body, `"alice"`) || !strings.Contains(body, `"bob"`) {
		t.Fatalf("after restart: %d %s", code, body)
	}
	if strings.Contains(body, "$2a$") || strings.Contains(body, "alice-pass-1") {
		t.Fatalf("a password or hash leaked: %s", body)
	}
	getUser := `<MDaemon><API><Request><Operation>GetUserInfo</Operation><Parameters><Domain>example.com</Domain><Mailbox>bob</Mailbox><Get><All/></Get></Parameters></Request></API></MDaemon>`
	code, body = do(t, "POST", n2.BaseURL+"/MdMgmtWS", "admin@localhost", adminPW, "text/xml", getUser)
	if code != 200 || !strings.Contains(body, "Bob Example") {
		t.Fatalf("XML GetUserInfo after restart: %d %s", code, body)
	}
	code, body = do(t, "GET", n2.BaseURL+"/api/v1/settings/mailcluster/SMTP/Banner", "admin@localhost", adminPW, "", "")
	if code != 200 || !strings.Contains(body, "welcome") {
		t.Fatalf("setting after restart: %d %s", code, body)
	}
	if strings.Contains(n.Stderr()+n2.Stderr(), adminPW) {
		t.Fatal("the admin password appears in the log")
	}
}

var reGenerated = regexp.MustCompile(`Generated password for admin@localhost: (\S+)`)

func TestGeneratedAdminPassword(t *testing.T) {
	data := t.TempDir()
	n := StartNode(t, data, nil)
	m := reGenerated.FindStringSubmatch(n.Stdout())
	if m == nil {
		t.Fatalf("no generated password printed; stdout:\n%s", n.Stdout())
	}
	pw := m[1]
	if code, body := do(t, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", pw, "", ""); code != 200 {
		t.Fatalf("generated password refused: %d %s", code, body)
	}
	if code, _ := do(t, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", pw+"x", "", ""); code != 401 {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	if strings.Contains(n.Stderr(), pw) {
		t.Fatal("the generated password appears in the log")
	}
	n.Stop()
	n2 := StartNode(t, data, nil)
	if strings.Contains(n2.Stdout(), "Generated password") {
		t.Fatal("a password was generated again on the second start")
	}
	if code, _ := do(t, "GET", n2.BaseURL+"/api/v1/node", "admin@localhost", pw, "", ""); code != 200 {
		t.Fatalf("generated password refused after restart: %d", code)
	}
}

func TestConfigPrecedence(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "mailcluster.yaml")
	if err := os.WriteFile(cfg, []byte("node-name: from-file\nlog-level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodeName := func(n *Node) string {
		code, body := do(t, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", adminPW, "", "")
		if code != 200 {
			t.Fatalf("node: %d %s", code, body)
		}
		var info struct{ Name string }
		if err := json.Unmarshal([]byte(body), &info); err != nil {
			t.Fatal(err)
		}
		return info.Name
	}
	// StartNode passes --node-name it-node, so flags win over both.
	n := StartNode(t, data, append(adminEnv, "MAILCLUSTER_NODE_NAME=from-env"), "--config", cfg)
	if got := nodeName(n); got != "it-node" {
		t.Fatalf("flag: node name %q", got)
	}
	n.Stop()
	// Without the flag: the environment wins over the file.
	n = StartProcess(t, append(adminEnv, "MAILCLUSTER_NODE_NAME=from-env"), "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "", "--config", cfg)
	if got := nodeName(n); got != "from-env" {
		t.Fatalf("env: node name %q", got)
	}
	n.Stop()
	n = StartProcess(t, adminEnv, "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--submission-addr", "", "--imap-addr", "", "--pop3-addr", "", "--config", cfg)
	if got := nodeName(n); got != "from-file" {
		t.Fatalf("file: node name %q", got)
	}
	if !strings.Contains(n.Stderr(), "level=DEBUG") && !strings.Contains(n.Stderr(), "msg=listening") {
		t.Fatal("no log output")
	}
	n.Stop()
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad-key.yaml")
	os.WriteFile(badKey, []byte("node-name: x\nsmtp-port: 25\n"), 0o600)
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("node-name: [unclosed\n"), 0o600)
	data := filepath.Join(dir, "data")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"UnknownFlag", nil, []string{"serve", "--no-such-flag"}, "unknown flag"},
		{"BadHTTPAddr", nil, []string{"serve", "--data-dir", data, "--http-addr", "nonsense"}, "http-addr"},
		{"BadHTTPPort", nil, []string{"serve", "--data-dir", data, "--http-addr", "127.0.0.1:99999"}, "http-addr"},
		{"BadNodeName", nil, []string{"serve", "--data-dir", data, "--node-name", "bad name"}, "node-name"},
		{"BadAdminAddress", nil, []string{"serve", "--data-dir", data, "--admin-address", "nobody"}, "admin-address"},
		{"BadLogLevel", []string{"MAILCLUSTER_LOG_LEVEL=loud"}, []string{"serve", "--data-dir", data}, "log-level"},
		{"BadMailSync", nil, []string{"serve", "--data-dir", data, "--mail-sync", "never"}, "mail-sync"},
		{"NegativeHeapFloor", nil, []string{"serve", "--data-dir", data, "--heap-floor", "-1"}, "heap-floor"},
		{"HugeHeapFloor", []string{"MAILCLUSTER_HEAP_FLOOR=100000"}, []string{"serve", "--data-dir", data}, "heap-floor"},
		{"BadHeapFloor", []string{"MAILCLUSTER_HEAP_FLOOR=lots"}, []string{"serve", "--data-dir", data}, "heap-floor"},
		{"UnknownEnv", []string{"MAILCLUSTER_SMTP_PORT=25"}, []string{"serve", "--data-dir", data}, "MAILCLUSTER_SMTP_PORT"},
		{"UnknownConfigKey", nil, []string{"serve", "--data-dir", data, "--config", badKey}, "smtp-port"},
		{"BadYAML", nil, []string{"serve", "--data-dir", data, "--config", badYAML}, "config file"},
		{"MissingConfig", nil, []string{"serve", "--data-dir", data, "--config", filepath.Join(dir, "none.yaml")}, "config file"},
		{"ShortPassword", []string{"MAILCLUSTER_ADMIN_PASSWORD=short"}, []string{"serve", "--data-dir", data}, "MAILCLUSTER_ADMIN_PASSWORD"},
		{"ExtraArgs", nil, []string{"serve", "extra"}, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, tc.env, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatal("a refused start created the data dir")
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runCLI(t, nil, "version")
	if code != 0 || !regexp.MustCompile(`^mailcluster \S+ \(go`).MatchString(out) {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestDataDirInUse(t *testing.T) {
	data := t.TempDir()
	StartNode(t, data, adminEnv)
	_, stderr, code := runCLI(t, adminEnv, "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--smtp-addr", "127.0.0.1:0", "--submission-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "in use") {
		t.Fatalf("second node on the same data dir: exit %d, %s", code, stderr)
	}
}
