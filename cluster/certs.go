package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"mailcluster"
)

// CertSource is what the certificate manager reads: the certificates of
// the replicated state (with sealed keys) and the settings.
type CertSource interface {
	StoredCertificates(withKeys bool) []*mailcluster.Certificate
	Setting(section, key, def string) string
}

// CertManager serves the cluster's certificates to this node's TLS
// listeners (SMTP STARTTLS, HTTPS) and keeps them current: on every change
// of certs/ it unseals the keys, swaps the in-memory certificates (no
// restart) and writes <name>.crt and <name>.key atomically into
// [Directories] PEM. SNI picks a certificate by name; clients without a
// matching name get the default one; before any certificate is imported,
// the node's own self-signed one. A certificate that cannot be unsealed
// (a wrong cluster secret) or loaded is not served and makes the node
// unhealthy (Problems), with a cluster-log error, rather than leaving an
// old certificate in use quietly. Expiry is warned 30, 7 and 1 days ahead.
type CertManager struct {
	src      CertSource
	sealKey  []byte
	fallback *tls.Certificate
	events   mailcluster.ClusterLog
	log      *slog.Logger
	// OnExpiry, when set, receives each served certificate's time left.
	OnExpiry func(name string, left time.Duration)
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.RWMutex
	byName   map[string]*tls.Certificate
	bySAN    map[string]*tls.Certificate
	def      *tls.Certificate
	served   map[string]string // name -> fingerprint in use
	problems map[string]string // name -> problem
	warned   map[string]int    // fingerprint -> smallest threshold warned
	files    map[string][]byte // file name -> content last written
}

// NewCertManager returns a manager; fallback is served until a
// certificate is imported.
func NewCertManager(src CertSource, sealKey []byte, fallback *tls.Certificate, events mailcluster.ClusterLog, log *slog.Logger) *CertManager {
	return &CertManager{src: src, sealKey: sealKey, fallback: fallback, events: events, log: log,
		byName: map[string]*tls.Certificate{}, bySAN: map[string]*tls.Certificate{}, served: map[string]string{},
		problems: map[string]string{}, warned: map[string]int{}, files: map[string][]byte{}}
}

func (m *CertManager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// GetCertificate implements tls.Config.GetCertificate.
func (m *CertManager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c, ok := m.bySAN[name]; ok && name != "" {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := m.bySAN["*"+name[i:]]; ok {
			return c, nil
		}
	}
	if m.def != nil {
		return m.def, nil
	}
	if m.fallback != nil {
		return m.fallback, nil
	}
	return nil, fmt.Errorf("cluster: no certificate")
}

// TLSConfig returns a server configuration using the manager.
func (m *CertManager) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: m.GetCertificate, MinVersion: tls.VersionTLS12}
}

// Problems lists what keeps the node from serving the right certificates.
func (m *CertManager) Problems() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for name, p := range m.problems {
		out = append(out, "certificate "+name+": "+p)
	}
	sort.Strings(out)
	return out
}

// Served returns the fingerprint in use per certificate name.
func (m *CertManager) Served() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.served))
	for k, v := range m.served {
		out[k] = v
	}
	return out
}

// Sync loads the certificates of the replicated state.
func (m *CertManager) Sync() {
	certs := m.src.StoredCertificates(true)
	byName := map[string]*tls.Certificate{}
	bySAN := map[string]*tls.Certificate{}
	served := map[string]string{}
	problems := map[string]string{}
	var def *tls.Certificate
	var files []pemFile
	for _, c := range certs {
		key, err := mailcluster.UnsealCertificateKey(m.sealKey, c)
		if err != nil {
			problems[c.Name] = "its private key cannot be unsealed with this node's cluster secret (is MAILCLUSTER_CLUSTER_SECRET the same on every node?)"
			continue
		}
		tc, err := tls.X509KeyPair([]byte(c.ChainPEM), key)
		if err != nil {
			problems[c.Name] = "the stored chain and key cannot be loaded"
			continue
		}
		sum := sha256.Sum256(tc.Certificate[0])
		if fp := hex.EncodeToString(sum[:]); fp != c.Fingerprint {
			problems[c.Name] = "the loaded certificate does not match the replicated fingerprint"
			continue
		}
		tcp := &tc
		byName[c.Name] = tcp
		served[c.Name] = c.Fingerprint
		for _, san := range c.SANs {
			bySAN[strings.ToLower(san)] = tcp
		}
		if c.Default || def == nil {
			def = tcp
		}
		files = append(files, pemFile{c.Name + ".crt", []byte(c.ChainPEM), 0o644}, pemFile{c.Name + ".key", key, 0o600})
	}
	m.mu.Lock()
	newProblems := map[string]string{}
	for n, p := range problems {
		if m.problems[n] != p {
			newProblems[n] = p
		}
	}
	changed := map[string]string{}
	for n, fp := range served {
		if m.served[n] != fp {
			changed[n] = fp
		}
	}
	m.byName, m.bySAN, m.def, m.served, m.problems = byName, bySAN, def, served, problems
	m.mu.Unlock()
	for n, p := range newProblems {
		m.record("error", "certificate-problem", "this node cannot serve a replicated certificate and reports unhealthy", map[string]string{"name": n, "problem": p})
	}
	for n, fp := range changed {
		m.log.Info("certificate in use", "name", n, "fingerprint", fp)
	}
	m.writeFiles(files, certs)
	m.checkExpiry(certs)
}

// pemFile is one file of [Directories] PEM.
type pemFile struct {
	name string
	body []byte
	mode os.FileMode
}

// writeFiles puts the PEM files into [Directories] PEM; files edited or
// removed by hand are rewritten.
func (m *CertManager) writeFiles(files []pemFile, certs []*mailcluster.Certificate) {
	dir := m.src.Setting(mailcluster.SectionDirectories, mailcluster.KeyPEM, "")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		m.log.Error("certificate dir", "dir", dir, "err", err)
		return
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.name] = true
		path := filepath.Join(dir, f.name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, f.body) {
			continue
		}
		if err := writeFileAtomic(path, f.body, f.mode); err != nil {
			m.log.Error("writing a certificate file", "file", f.name, "err", err)
		}
	}
	names := map[string]bool{}
	for _, c := range certs {
		names[c.Name] = true
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		base := strings.TrimSuffix(strings.TrimSuffix(n, ".crt"), ".key")
		if base != n && !want[n] && !names[base] {
			_ = os.Remove(filepath.Join(dir, n)) // a deleted certificate
		}
	}
}

var expiryThresholds = []int{30, 7, 1}

func (m *CertManager) checkExpiry(certs []*mailcluster.Certificate) {
	now := m.now()
	for _, c := range certs {
		left := c.NotAfter.Sub(now)
		if m.OnExpiry != nil {
			m.OnExpiry(c.Name, left)
		}
		days := int(left.Hours() / 24)
		th := 0 // the smallest threshold the certificate is within
		for _, x := range expiryThresholds {
			if days < x {
				th = x
			}
		}
		if th == 0 {
			continue
		}
		m.mu.Lock()
		prev, ok := m.warned[c.Fingerprint]
		if ok && prev <= th {
			m.mu.Unlock()
			continue
		}
		m.warned[c.Fingerprint] = th
		m.mu.Unlock()
		m.record("warn", "certificate-expiry", fmt.Sprintf("certificate expires in less than %d day(s)", th),
			map[string]string{"name": c.Name, "not_after": c.NotAfter.Format(time.RFC3339)})
	}
}

func (m *CertManager) record(level, event, msg string, fields map[string]string) {
	if m.events != nil {
		m.events.Record(mailcluster.ClusterEvent{Level: level, Event: event, Message: msg, Fields: fields})
		return
	}
	m.log.Warn(msg, "event", event)
}

// Run keeps the certificates current until ctx ends: on every change of
// certs/ (and of settings, for the PEM directory) and every minute.
func (m *CertManager) Run(ctx context.Context, store mailcluster.Store) {
	certs, stop := store.Notify(mailcluster.PrefixCertificates)
	defer stop()
	settings, stop2 := store.Notify(mailcluster.PrefixSettings)
	defer stop2()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	m.Sync()
	for {
		select {
		case <-ctx.Done():
			return
		case <-certs:
		case <-settings:
		case <-tick.C:
		}
		m.Sync()
	}
}
