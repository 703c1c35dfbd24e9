package certs_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/certs"
	"mailcluster/internal/testcert"
	"mailcluster/service"
)

// recordingLog is a ClusterLog that keeps events.
type recordingLog struct {
	mu  sync.Mutex
	evs []mailcluster.ClusterEvent
}

func (l *recordingLog) Record(ev mailcluster.ClusterEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *recordingLog) Events(int) ([]mailcluster.ClusterEvent, error) { return nil, nil }

func (l *recordingLog) count(event string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.evs {
		if string(e.Event) == event {
			n++
		}
	}
	return n
}

func fingerprint(c *tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

func TestCertManager(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	secret := "cluster-secret-0123456789"
	svc, _ := MustOpenPrimary(t, func(o *service.Options) { o.SealKey = mailcluster.SealKey(secret) })
	fallback, err := tls.X509KeyPair([]byte(testcert.New(testcert.Options{Names: []string{"self.test"}}).Chain), []byte(testcert.New(testcert.Options{Names: []string{"x"}}).Key))
	if err == nil {
		t.Fatal("mismatched pair loaded")
	}
	self := testcert.New(testcert.Options{Names: []string{"self.test"}})
	fallback, _ = tls.X509KeyPair([]byte(self.Chain), []byte(self.Key))
	events := &recordingLog{}
	m := certs.NewManager(mustLocal(svc), mailcluster.SealKey("cluster-secret-0123456789"), &fallback, events, discard())
	expiries := map[string]time.Duration{}
	m.OnExpiry = func(name string, left time.Duration) { expiries[name] = left }

	m.Sync()
	c, _ := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "anything.test"})
	if fingerprint(c) != self.Fingerprint {
		t.Fatal("without imported certificates the self-signed one must be served")
	}

	a := testcert.New(testcert.Options{Names: []string{"mail.example.test"}})
	b := testcert.New(testcert.Options{Names: []string{"*.other.test"}, NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	if _, err := svc.ImportCertificate(ctx, "mail", a.Chain, a.Key, true); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImportCertificate(ctx, "other", b.Chain, b.Key, false); err != nil {
		t.Fatal(err)
	}
	m.Sync()
	for name, want := range map[string]string{"mail.example.test": a.Fingerprint, "x.other.test": b.Fingerprint, "": a.Fingerprint, "unknown.test": a.Fingerprint} {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || fingerprint(c) != want {
			t.Errorf("SNI %q: wrong certificate (%v)", name, err)
		}
	}
	if len(m.Problems()) != 0 {
		t.Fatalf("problems = %v", m.Problems())
	}
	pemDir := mustLocal(svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyPEM, "")
	crt, _ := os.ReadFile(filepath.Join(pemDir, "mail.crt"))
	key, _ := os.ReadFile(filepath.Join(pemDir, "mail.key"))
	st, _ := os.Stat(filepath.Join(pemDir, "mail.key"))
	if string(crt) != a.Chain || string(key) != a.Key || st.Mode().Perm() != 0o600 {
		t.Fatalf("PEM files not written as expected (key mode %v)", st.Mode().Perm())
	}
	if events.count("certificate-expiry") != 1 {
		t.Fatalf("want one expiry warning (other expires within 7 days), got %d", events.count("certificate-expiry"))
	}
	m.Sync()
	if events.count("certificate-expiry") != 1 {
		t.Fatal("the same expiry warning was repeated")
	}
	if left := expiries["other"]; left <= 0 || left > 5*24*time.Hour {
		t.Fatalf("expiry gauge for other = %v", left)
	}

	// Rotation swaps the certificate in place.
	a2 := testcert.New(testcert.Options{Names: []string{"mail.example.test"}})
	if _, err := svc.ImportCertificate(ctx, "mail", a2.Chain, a2.Key, false); err != nil {
		t.Fatal(err)
	}
	m.Sync()
	if c, _ := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.test"}); fingerprint(c) != a2.Fingerprint {
		t.Fatal("the rotated certificate is not served")
	}

	// A node with another cluster secret cannot unseal: it serves nothing
	// of the replicated certificates and reports the problem.
	wrong := certs.NewManager(mustLocal(svc), mailcluster.SealKey("another-secret-0123456789"), &fallback, events, discard())
	wrong.Sync()
	if p := wrong.Problems(); len(p) != 2 || !strings.Contains(p[0], "cannot be unsealed") {
		t.Fatalf("problems = %v", p)
	}
	if c, _ := wrong.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.test"}); fingerprint(c) != self.Fingerprint {
		t.Fatal("a certificate that cannot be unsealed must not be served")
	}
	if events.count("certificate-problem") != 2 {
		t.Fatalf("certificate-problem events = %d", events.count("certificate-problem"))
	}

	if err := svc.DeleteCertificate(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	m.Sync()
	if _, err := os.Stat(filepath.Join(pemDir, "other.crt")); !os.IsNotExist(err) {
		t.Fatal("the PEM file of a deleted certificate is still there")
	}
}

// TestCertManagerPEMDirectory shares [Directories] PEM with files the node
// did not write: they survive every sync and certificate removal, a file
// the operator replaced is left alone, a name taken by someone else's file
// is reported, and only the node's own files of deleted certificates go.
func TestCertManagerPEMDirectory(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenPrimary(t, func(o *service.Options) { o.SealKey = mailcluster.SealKey("cluster-secret-0123456789") })
	self := testcert.New(testcert.Options{Names: []string{"self.test"}})
	fallback, _ := tls.X509KeyPair([]byte(self.Chain), []byte(self.Key))
	m := certs.NewManager(mustLocal(svc), mailcluster.SealKey("cluster-secret-0123456789"), &fallback, &recordingLog{}, discard())
	pemDir := mustLocal(svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyPEM, "")
	if err := os.MkdirAll(pemDir, 0o750); err != nil {
		t.Fatal(err)
	}
	path := func(name string) string { return filepath.Join(pemDir, name) }
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(path(name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	content := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(path(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(b)
	}
	absent := func(name string) {
		t.Helper()
		if _, err := os.Stat(path(name)); !os.IsNotExist(err) {
			t.Fatalf("%s is still there (%v)", name, err)
		}
	}
	// Files of the operator, among them one with the name of a
	// certificate imported below.
	foreign := map[string]string{"other.pem": "operator pem\n", "other.key": "operator key\n", "other.crt": "operator crt\n", "taken.crt": "operator taken\n"}
	for n, b := range foreign {
		write(n, b)
	}
	pairs := map[string]testcert.Cert{}
	for _, name := range []string{"mail", "old", "taken"} {
		p := testcert.New(testcert.Options{Names: []string{name + ".example.test"}})
		pairs[name] = p
		if _, err := svc.ImportCertificate(ctx, name, p.Chain, p.Key, name == "mail"); err != nil {
			t.Fatal(err)
		}
	}
	m.Sync()
	for _, n := range []string{"mail", "old"} {
		if content(n+".crt") != pairs[n].Chain || content(n+".key") != pairs[n].Key {
			t.Fatalf("the files of %s were not written", n)
		}
	}
	if content("taken.crt") != foreign["taken.crt"] {
		t.Fatal("a file the node did not write was overwritten")
	}
	if content("taken.key") != pairs["taken"].Key {
		t.Fatal("taken.key (a free name) was not written")
	}
	if p := strings.Join(m.Problems(), "\n"); !strings.Contains(p, "taken.crt") {
		t.Fatalf("the taken name is not reported: problems = %q", p)
	}
	if _, err := os.Stat(path(certs.PEMManifest)); err != nil {
		t.Fatalf("no manifest: %v", err)
	}

	// The operator replaces old.key; then old and mail are deleted.
	write("old.key", "operator's own old.key\n")
	for _, n := range []string{"old", "mail"} {
		if err := svc.DeleteCertificate(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	m.Sync()
	absent("old.crt")
	absent("mail.crt")
	absent("mail.key")
	if content("old.key") != "operator's own old.key\n" {
		t.Fatal("a file the operator replaced was deleted")
	}
	for n, b := range foreign {
		if content(n) != b {
			t.Fatalf("%s was changed", n)
		}
	}
	// A later certificate named old may not take the operator's old.key.
	if _, err := svc.ImportCertificate(ctx, "old", pairs["old"].Chain, pairs["old"].Key, false); err != nil {
		t.Fatal(err)
	}
	m.Sync()
	if content("old.key") != "operator's own old.key\n" || content("old.crt") != pairs["old"].Chain {
		t.Fatal("old.key was overwritten or old.crt not written")
	}

	// Once the operator frees the name, the node writes its file and is
	// healthy again.
	if err := os.Remove(path("taken.crt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("old.key")); err != nil {
		t.Fatal(err)
	}
	m.Sync()
	if content("taken.crt") != pairs["taken"].Chain || content("old.key") != pairs["old"].Key {
		t.Fatal("freed names were not written")
	}
	if p := m.Problems(); len(p) != 0 {
		t.Fatalf("problems = %v", p)
	}
	// Removing every certificate leaves exactly the operator's files.
	for _, n := range []string{"old", "taken"} {
		if err := svc.DeleteCertificate(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	m.Sync()
	entries, _ := os.ReadDir(pemDir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{certs.PEMManifest, "other.crt", "other.key", "other.pem"}; strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("directory holds %v, want %v", left, want)
	}
}
