package integration_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
	"mailcluster/internal/testcert"
)

// testCert is a leaf certificate signed by a fresh CA.
type testCert struct {
	chain, key, fingerprint string
}

func newTestCert(t testing.TB, names ...string) testCert {
	t.Helper()
	c := testcert.New(testcert.Options{Names: names})
	return testCert{chain: c.Chain, key: c.Key, fingerprint: c.Fingerprint}
}

func importCert(t *testing.T, n *Node, name string, c testCert) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"chainPem": c.chain, "keyPem": c.key, "default": true})
	code, out := admin(t, n, "PUT", "/api/v1/certificates/"+name, string(body))
	if code != 200 && code != 201 {
		t.Fatalf("import: %d %s", code, out)
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Fatal("the private key came back in the answer")
	}
}

var reFingerprint = regexp.MustCompile(`(?i)Fingerprint=([0-9A-F:]+)`)

// opensslFingerprint runs `openssl s_client -starttls smtp` and returns
// the SHA-256 fingerprint of the certificate the server presented.
func opensslFingerprint(t *testing.T, addr, servername string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := exec.CommandContext(ctx, "openssl", "s_client", "-starttls", "smtp", "-connect", addr, "-servername", servername)
	sc.Stdin = strings.NewReader("QUIT\r\n")
	out, _ := sc.Output()
	x := exec.CommandContext(ctx, "openssl", "x509", "-noout", "-fingerprint", "-sha256")
	x.Stdin = strings.NewReader(string(out))
	fp, err := x.Output()
	if err != nil {
		return ""
	}
	m := reFingerprint.FindStringSubmatch(string(fp))
	if m == nil {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(m[1], ":", ""))
}

// starttlsFingerprint does the same with the go-smtp client.
func starttlsFingerprint(addr, servername string) (string, error) {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true, ServerName: servername})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Noop(); err != nil { // completes the TLS handshake
		return "", err
	}
	st, ok := c.TLSConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		return "", fmt.Errorf("no TLS")
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// TestClusterCertificates imports a certificate on the primary: every
// node serves it for STARTTLS (seen by openssl s_client), submission and
// HTTPS. Rotating to a second certificate (imported as the default) moves
// inbound SMTP, submission STARTTLS and HTTPS of every node to it without
// a restart, refuses no connection meanwhile, and no connection begun
// after a listener served the new certificate gets the old one.
func TestClusterCertificates(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: `make test` installs it")
	}
	https := []string{"--https-addr", "127.0.0.1:0"}
	c := StartCluster(t, harness.SharedConsul(t), 3, map[int][]string{0: https, 1: https, 2: https})
	p := c.WaitPrimary(10 * time.Second)
	first := newTestCert(t, "mail.example.test")
	importCert(t, c.Nodes[p], "mail", first)
	start := time.Now()
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("n%d serves the imported certificate (openssl)", i), func() bool {
			return opensslFingerprint(t, n.SMTP, "mail.example.test") == first.fingerprint
		})
	}
	t.Logf("all nodes served the new certificate %s after the import", time.Since(start).Round(time.Millisecond))
	if code, body := do(t, "GET", c.Nodes[0].BaseURL+"/metrics", "", "", "", ""); code != 200 ||
		!regexp.MustCompile(`(?m)^mailcluster_certificate_expiry_seconds\{name="mail"\} [0-9.e+]+$`).MatchString(body) {
		t.Fatalf("metrics lack the certificate expiry gauge: %d\n%s", code, body)
	}
	for i, n := range c.Nodes {
		if n.HTTPS == "" {
			t.Fatalf("n%d has no HTTPS listener", i)
		}
		conn, err := tls.Dial("tcp", n.HTTPS, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.test"})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
		conn.Close()
		if hex.EncodeToString(sum[:]) != first.fingerprint {
			t.Fatalf("n%d HTTPS serves another certificate", i)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := client.Get("https://" + n.HTTPS + "/health")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("n%d HTTPS /health: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}

	for i, n := range c.Nodes {
		if fp, err := starttlsFingerprint(n.Submission, "mail.example.test"); err != nil || fp != first.fingerprint {
			t.Fatalf("n%d submission STARTTLS serves %s (%v), want the imported certificate", i, fp, err)
		}
	}

	// Rotate while clients keep connecting to every listener of every
	// node: inbound SMTP and submission (STARTTLS) and HTTPS.
	pids := make([]int, len(c.Nodes))
	var ls []*certListener
	for i, n := range c.Nodes {
		pids[i] = n.Pid()
		ls = append(ls,
			&certListener{name: fmt.Sprintf("n%d SMTP", i), dial: func() (string, error) { return starttlsFingerprint(n.SMTP, "mail.example.test") }},
			&certListener{name: fmt.Sprintf("n%d submission", i), dial: func() (string, error) { return starttlsFingerprint(n.Submission, "mail.example.test") }},
			&certListener{name: fmt.Sprintf("n%d HTTPS", i), dial: func() (string, error) { return tlsFingerprint(n.HTTPS, "mail.example.test") }},
		)
	}
	second := newTestCert(t, "mail.example.test", "smtp.example.test")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(stop, second.fingerprint)
		}()
	}
	stopped := false
	stopClients := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopClients()
	// Connections before the rotation: every listener has answered a few.
	for _, l := range ls {
		eventually(t, waitTimeout, l.name+" handshakes before the rotation", func() bool { return l.handshakes.Load() >= 3 })
	}
	importCert(t, c.Nodes[p], "mail", second)
	for _, l := range ls {
		var last string
		var lastErr error
		eventually(t, waitTimeout, l.name+" serves the rotated certificate", func() bool {
			last, lastErr = l.dial()
			return last == second.fingerprint
		})
		if lastErr != nil {
			t.Fatalf("%s: %v", l.name, lastErr)
		}
		l.rotated.Store(time.Now().UnixNano())
	}
	// Connections after it: every listener has answered a few more, each
	// begun after that listener was seen serving the new certificate.
	for _, l := range ls {
		eventually(t, waitTimeout, l.name+" handshakes after the rotation", func() bool { return l.after.Load() >= 3 })
	}
	stopClients()
	var total int64
	for _, l := range ls {
		total += l.handshakes.Load()
		if f := l.failures.Load(); f > 0 {
			t.Errorf("%s: %d of %d handshakes failed during the rotation", l.name, f, l.handshakes.Load())
		}
		if o := l.old.Load(); o > 0 {
			t.Errorf("%s: %d of %d connections begun after it served the new certificate still got the old one", l.name, o, l.after.Load())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("rotation: %d handshakes during it, none refused, none with the old certificate once the new one was served", total)
	for i, n := range c.Nodes {
		if fp := opensslFingerprint(t, n.SMTP, "mail.example.test"); fp != second.fingerprint {
			t.Fatalf("n%d (openssl) serves %s after the rotation", i, fp)
		}
		if n.Pid() != pids[i] {
			t.Fatalf("n%d was restarted during the rotation", i)
		}
	}
}

// certListener is one TLS listener of a node that a client keeps
// connecting to during a certificate rotation.
type certListener struct {
	name string
	dial func() (fingerprint string, err error)
	// rotated is when the listener was first seen serving the new
	// certificate (Unix ns; 0 before).
	rotated                          atomic.Int64
	handshakes, failures, after, old atomic.Int64
}

// run connects until stop is closed, counting handshakes, failures, and
// among the connections begun after rotated those that got another
// certificate than want.
func (l *certListener) run(stop <-chan struct{}, want string) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		begun := time.Now().UnixNano()
		fp, err := l.dial()
		l.handshakes.Add(1)
		if err != nil {
			l.failures.Add(1)
			continue
		}
		if r := l.rotated.Load(); r != 0 && begun > r {
			l.after.Add(1)
			if fp != want {
				l.old.Add(1)
			}
		}
	}
}

// tlsFingerprint connects with TLS to addr (the HTTPS listener) and
// returns the SHA-256 fingerprint of the leaf certificate it presents.
func tlsFingerprint(addr, servername string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: servername})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "", fmt.Errorf("no peer certificate")
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// TestClusterCertificateWrongSecret starts a node with another cluster
// secret: it cannot unseal the key, and says so as unhealthy.
func TestClusterCertificateWrongSecret(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 2, nil)
	p := c.WaitPrimary(10 * time.Second)
	importCert(t, c.Nodes[p], "mail", newTestCert(t, "mail.example.test"))
	dir := t.TempDir()
	env := append([]string{"MAILCLUSTER_CLUSTER_SECRET=another-secret-0123456789"}, adminEnv...)
	odd := StartProcess(t, env, c.NodeArgs("odd", dir)...)
	eventually(t, waitTimeout, "the node with the wrong secret reports unhealthy", func() bool {
		code, body, err := tryDo("GET", odd.BaseURL+"/health", "", "", "", "")
		return err == nil && code == 503 && strings.Contains(body, "cannot be unsealed")
	})
	eventually(t, waitTimeout, "cluster log error", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", "cluster.log"))
		return strings.Contains(string(b), `"event":"certificate-problem"`)
	})
	if code, _, _ := tryDo("GET", c.Nodes[p].BaseURL+"/health", "", "", "", ""); code != 200 {
		t.Fatalf("the primary is unhealthy: %d", code)
	}
}
