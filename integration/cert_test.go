package integration_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
// node serves it for STARTTLS (seen by openssl s_client) and HTTPS within
// 2 s; rotating to a second certificate refuses no connection.
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
		eventually(t, 2*time.Second, fmt.Sprintf("n%d serves the imported certificate (openssl)", i), func() bool {
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

	// Rotate while clients keep connecting to every node.
	var failures, handshakes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := starttlsFingerprint(n.SMTP, "mail.example.test"); err != nil {
					failures.Add(1)
				}
				handshakes.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // connections before the rotation
	second := newTestCert(t, "mail.example.test", "smtp.example.test")
	importCert(t, c.Nodes[p], "mail", second)
	for i, n := range c.Nodes {
		var last string
		var lastErr error
		defer func() {
			if t.Failed() {
				t.Logf("n%d last STARTTLS: %s %v", i, last, lastErr)
			}
		}()
		eventually(t, 2*time.Second, fmt.Sprintf("n%d serves the rotated certificate", i), func() bool {
			last, lastErr = starttlsFingerprint(n.SMTP, "mail.example.test")
			return last == second.fingerprint
		})
	}
	time.Sleep(300 * time.Millisecond) // and after it
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d STARTTLS connections failed during the rotation", f, handshakes.Load())
	}
	t.Logf("rotation: %d STARTTLS handshakes during it, none refused", handshakes.Load())
	for i, n := range c.Nodes {
		if fp := opensslFingerprint(t, n.SMTP, "mail.example.test"); fp != second.fingerprint {
			t.Fatalf("n%d (openssl) serves %s after the rotation", i, fp)
		}
	}
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
	eventually(t, 5*time.Second, "the node with the wrong secret reports unhealthy", func() bool {
		code, body, err := tryDo("GET", odd.BaseURL+"/health", "", "", "", "")
		return err == nil && code == 503 && strings.Contains(body, "cannot be unsealed")
	})
	eventually(t, 2*time.Second, "cluster log error", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", "cluster.log"))
		return strings.Contains(string(b), `"event":"certificate-problem"`)
	})
	if code, _, _ := tryDo("GET", c.Nodes[p].BaseURL+"/health", "", "", "", ""); code != 200 {
		t.Fatalf("the primary is unhealthy: %d", code)
	}
}
