package integration_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/internal/harness"
	"mailcluster/internal/nodeauth"
)

// submitFrom opens a submission session from a local address (a loopback
// address other than 127.0.0.1 keeps failures away from the test's own
// address), upgrades it with STARTTLS and authenticates with mech.
func submitFrom(ip, addr string, mech sasl.Client) (*smtp.Client, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Auth(mech); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// TestSecretsNotLogged runs a three-node cluster at debug level through
// everything that handles a secret: the cluster secret and the internal
// token (joins, replication, usage reports), the administrator's password
// (REST and XML-API), a certificate's private key (import, sealing,
// replication), SMTP AUTH with an account's password (PLAIN and LOGIN),
// failed logins with a known wrong password on every surface, and a thaw
// token (mailed, redeemed, and a wrong one). No secret, nor its Basic or
// SASL encoding, may appear in any node's standard error or output (but
// for the one line that announces a generated password), in any
// cluster.log, or in any file of the data directories (the private key
// only in the PEM directory's .key files, the thaw token only in the
// account's mailbox).
func TestSecretsNotLogged(t *testing.T) {
	debug := []string{"--log-level", "debug"}
	c := StartCluster(t, harness.SharedConsul(t), 3, map[int][]string{0: debug, 1: debug, 2: debug})
	p := c.WaitPrimary(10 * time.Second)
	primary := c.Nodes[p]

	const (
		alicePW = "alice-Secret-pw-4711"
		wrongPW = "Wrong-Guess-pw-0815"
	)
	for _, b := range []string{`{"name":"example.com"}`} {
		if code, body := admin(t, primary, "POST", "/api/v1/domains", b); code != 201 {
			t.Fatalf("create domain: %d %s", code, body)
		}
	}
	for _, a := range []string{
		`{"mailbox":"alice","password":"` + alicePW + `"}`,
		`{"mailbox":"bob","password":"bob-Secret-pw-2342"}`,
	} {
		if code, body := admin(t, primary, "POST", "/api/v1/domains/example.com/accounts", a); code != 201 {
			t.Fatalf("create account: %d %s", code, body)
		}
	}
	cert := newTestCert(t, "mail.example.test")
	importCert(t, primary, "mail", cert)
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("n%d has the accounts and the certificate", i), func() bool {
			code, body := admin(t, n, "GET", "/api/v1/certificates/mail", "")
			code2, _ := admin(t, n, "GET", "/api/v1/domains/example.com/accounts/bob", "")
			return code == 200 && strings.Contains(body, cert.fingerprint) && code2 == 200
		})
	}

	// SMTP AUTH with the right password on every node, and a message.
	for i, n := range c.Nodes {
		for _, mech := range []sasl.Client{sasl.NewPlainClient("", "alice@example.com", alicePW), sasl.NewLoginClient("alice@example.com", alicePW)} {
			s, err := submitFrom("127.0.0.1", n.Submission, mech)
			if err != nil {
				t.Fatalf("n%d: SMTP AUTH: %v", i, err)
			}
			if err := s.SendMail("alice@example.com", []string{"bob@example.com"},
				strings.NewReader("Subject: hi\r\n\r\nhello\r\n")); err != nil {
				t.Fatalf("n%d: send: %v", i, err)
			}
			s.Close()
		}
	}
	// Failed logins with a known wrong password, from another address,
	// on every surface of every node. Every failure counts toward the
	// address, so each node gets its own attacker address (four failures,
	// under the default limit of five) and every answer is a plain 401;
	// the test's own address keeps its failures for the wrong thaw token
	// below (and a node polled before its administrator exists).
	xml := `<MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`
	for i, n := range c.Nodes {
		attacker := fmt.Sprintf("127.0.0.%d", 61+i)
		if code, _, err := fromIP(attacker, "GET", n.BaseURL+"/api/v1/node", "admin@localhost", wrongPW); err != nil || code != 401 {
			t.Fatalf("n%d: wrong password over REST: %d %v", i, code, err)
		}
		if code, body, err := fromIPWithBody(attacker, "POST", n.BaseURL+"/MdMgmtWS", "admin@localhost", wrongPW, "text/xml", xml); err != nil ||
			code != 401 || !strings.Contains(body, `id="8"`) {
			t.Fatalf("n%d: wrong password over the XML-API: %d %s %v", i, code, body, err)
		}
		if _, err := submitFrom(attacker, n.Submission, sasl.NewPlainClient("", "alice@example.com", wrongPW)); err == nil {
			t.Fatalf("n%d: SMTP AUTH with a wrong password succeeded", i)
		}
		if _, err := submitFrom(attacker, n.Submission, sasl.NewLoginClient("bob@example.com", wrongPW)); err == nil {
			t.Fatalf("n%d: SMTP AUTH LOGIN with a wrong password succeeded", i)
		}
	}

	// A thaw token: freeze bob, read the token from his mailbox, try a
	// wrong one, redeem the right one.
	if code, body := admin(t, primary, "POST", "/api/v1/screening/accounts", `{"address":"bob@example.com","reason":"test"}`); code != 201 {
		t.Fatalf("freeze: %d %s", code, body)
	}
	var thawToken string
	eventually(t, waitTimeout, "thaw token mailed", func() bool {
		for _, id := range allMessages(t, primary, "bob@example.com") {
			_, raw := admin(t, primary, "GET", "/api/v1/domains/example.com/accounts/bob/messages/"+id, "")
			if m := reToken.FindStringSubmatch(raw); m != nil {
				thawToken = m[1]
				return true
			}
		}
		return false
	})
	wrongToken := strings.Repeat("Q", len(thawToken))
	if code, body, _ := tryDo("POST", primary.BaseURL+"/api/v1/screening/thaw", "", "", "application/json",
		fmt.Sprintf(`{"address":"bob@example.com","token":%q}`, wrongToken)); code != 401 {
		t.Fatalf("wrong thaw token: %d %s", code, body)
	}
	if code, body := do(t, "POST", primary.BaseURL+"/api/v1/screening/thaw", "", "", "application/json",
		fmt.Sprintf(`{"address":"bob@example.com","token":%q}`, thawToken)); code != 204 {
		t.Fatalf("thaw: %d %s", code, body)
	}
	// Wait until the thaw is logged on the primary and replicated (and
	// logged) on every secondary: the last writes have left their traces.
	thawed, _ := primary.Health()
	awaitEvent(t, primary, fmt.Sprintf("n%d", p), mailcluster.EventAccountThawed, fieldIs("address", "bob@example.com"))
	awaitReplicationLogged(t, c, p, thawed.Index)

	secrets := map[string]string{
		"admin password":     adminPW,
		"account password":   alicePW,
		"wrong password":     wrongPW,
		"cluster secret":     clusterSecret,
		"internal key":       hex.EncodeToString(nodeauth.Key(clusterSecret)),
		"thaw token":         thawToken,
		"wrong thaw token":   wrongToken,
		"admin Basic":        base64.StdEncoding.EncodeToString([]byte("admin@localhost:" + adminPW)),
		"wrong Basic":        base64.StdEncoding.EncodeToString([]byte("admin@localhost:" + wrongPW)),
		"SASL PLAIN":         base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + alicePW)),
		"SASL LOGIN":         base64.StdEncoding.EncodeToString([]byte(alicePW)),
		"wrong SASL PLAIN":   base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + wrongPW)),
		"wrong SASL LOGIN":   base64.StdEncoding.EncodeToString([]byte(wrongPW)),
		"private key header": "PRIVATE KEY-----",
	}
	keyLines := map[string]string{}
	for i, line := range strings.Split(cert.key, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			keyLines[fmt.Sprintf("private key line %d", i)] = line
		}
	}
	if len(keyLines) == 0 || thawToken == "" {
		t.Fatalf("no key lines (%d) or no thaw token (%q)", len(keyLines), thawToken)
	}
	check := func(where, text string, allowed func(name string) bool) {
		t.Helper()
		lower := strings.ToLower(text)
		for _, set := range []map[string]string{secrets, keyLines} {
			for name, s := range set {
				if allowed != nil && allowed(name) {
					continue
				}
				if strings.Contains(lower, strings.ToLower(s)) {
					t.Errorf("%s contains the %s", where, name)
				}
			}
		}
	}

	for i, n := range c.Nodes {
		check(fmt.Sprintf("n%d's standard error", i), n.Stderr(), nil)
		var out []string
		for _, line := range strings.Split(n.Stdout(), "\n") {
			if !strings.HasPrefix(line, "Generated password for ") {
				out = append(out, line)
			}
		}
		check(fmt.Sprintf("n%d's standard output", i), strings.Join(out, "\n"), nil)
		logb, err := os.ReadFile(filepath.Join(n.DataDir, "logs", "cluster.log"))
		if err != nil || len(logb) == 0 {
			t.Fatalf("n%d cluster.log: %d bytes, %v", i, len(logb), err)
		}
		check(fmt.Sprintf("n%d's cluster.log", i), string(logb), nil)

		// Every other file of the data directory: the key only in the PEM
		// directory's .key files, the thaw token only in mailboxes.
		err = filepath.WalkDir(n.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(n.DataDir, path)
			inMailbox := strings.Contains(filepath.ToSlash(rel), "/new/") || strings.Contains(filepath.ToSlash(rel), "/cur/")
			check(n.DataDir+"/"+rel, string(b), func(name string) bool {
				switch {
				case name == "private key header": // the node's own self-signed key too
					return strings.HasSuffix(rel, ".key")
				case strings.HasPrefix(name, "private key"):
					return strings.HasSuffix(rel, ".key") && !strings.HasPrefix(rel, "tls"+string(filepath.Separator))
				}
				return name == "thaw token" && inMailbox
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if t.Failed() {
		t.Logf("primary log:\n%s", primary.Stderr())
	}
}
