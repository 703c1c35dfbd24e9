package cluster_test

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
	"mailcluster/cluster"
	"mailcluster/internal/testcert"
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
		if e.Event == event {
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
	ctx := context.Background()
	svc, _ := MustOpenPrimary(t)
	secret := "cluster-secret-0123456789"
	svc.SealKey = mailcluster.SealKey(secret)
	fallback, err := tls.X509KeyPair([]byte(testcert.New(testcert.Options{Names: []string{"self.test"}}).Chain), []byte(testcert.New(testcert.Options{Names: []string{"x"}}).Key))
	if err == nil {
		t.Fatal("mismatched pair loaded")
	}
	self := testcert.New(testcert.Options{Names: []string{"self.test"}})
	fallback, _ = tls.X509KeyPair([]byte(self.Chain), []byte(self.Key))
	events := &recordingLog{}
	m := cluster.NewCertManager(svc, svc.SealKey, &fallback, events, discard())
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
	pemDir := svc.Setting(mailcluster.SectionDirectories, mailcluster.KeyPEM, "")
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
	wrong := cluster.NewCertManager(svc, mailcluster.SealKey("another-secret-0123456789"), &fallback, events, discard())
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
