// Package certs serves the cluster's TLS certificates on a node: it unseals
// the replicated certificates and keys, picks one per TLS handshake (SNI,
// then the default), swaps them without a restart when the state changes,
// writes them as PEM files into [Directories] PEM (touching only the files
// its manifest says it wrote), warns before they expire, and reports what
// it cannot serve as health problems.
package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"mailcluster/internal/atomicfile"
	"mailcluster/schema"

	"mailcluster"
)

// Source is what the certificate manager reads: the certificates of
// the replicated state (with sealed keys) and the settings.
type Source interface {
	StoredCertificates(withKeys bool) []*mailcluster.Certificate
	Setting(section, key, def string) string
}

// Manager serves the cluster's certificates to this node's TLS
// listeners (SMTP STARTTLS, HTTPS) and keeps them current: on every change
// of certs/ it unseals the keys, swaps the in-memory certificates (no
// restart) and writes <name>.crt and <name>.key atomically into
// [Directories] PEM, touching there only the files it wrote itself (see
// PEMManifest). SNI picks a certificate by name; clients without a
// matching name get the default one; before any certificate is imported,
// the node's own self-signed one. A certificate that cannot be unsealed
// (a wrong cluster secret) or loaded is not served and makes the node
// unhealthy (Problems), with a cluster-log error, rather than leaving an
// old certificate in use quietly. Expiry is warned 30, 7 and 1 days ahead.
type Manager struct {
	src      Source
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
	// fileProblems are the files of [Directories] PEM the node cannot
	// write (file name -> problem); written by writeFiles.
	fileProblems map[string]string

	filesMu sync.Mutex // serialises writeFiles
}

// NewManager returns a manager; fallback is served until a
// certificate is imported.
func NewManager(src Source, sealKey []byte, fallback *tls.Certificate, events mailcluster.ClusterLog, log *slog.Logger) *Manager {
	return &Manager{src: src, sealKey: sealKey, fallback: fallback, events: events, log: log,
		byName: map[string]*tls.Certificate{}, bySAN: map[string]*tls.Certificate{}, served: map[string]string{},
		problems: map[string]string{}, warned: map[string]int{}}
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// GetCertificate implements tls.Config.GetCertificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
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
	return nil, fmt.Errorf("certs: no certificate")
}

// TLSConfig returns a server configuration using the manager.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: m.GetCertificate, MinVersion: tls.VersionTLS12}
}

// Problems lists what keeps the node from serving the right certificates.
func (m *Manager) Problems() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for name, p := range m.problems {
		out = append(out, "certificate "+name+": "+p)
	}
	for name, p := range m.fileProblems {
		out = append(out, "PEM directory file "+name+": "+p)
	}
	sort.Strings(out)
	return out
}

// Served returns the fingerprint in use per certificate name.
func (m *Manager) Served() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.served))
	for k, v := range m.served {
		out[k] = v
	}
	return out
}

// Sync loads the certificates of the replicated state.
func (m *Manager) Sync() {
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
		m.record("error", mailcluster.EventCertificateProblem, "this node cannot serve a replicated certificate and reports unhealthy", map[string]string{"name": n, "problem": p})
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

// PEMManifest is the name of the file in [Directories] PEM that lists the
// files the node wrote there, each with the SHA-256 of what it wrote. The
// node overwrites or deletes only files listed there whose content is
// still what it wrote; every other file of the directory belongs to
// someone else and is left alone.
const PEMManifest = ".mailcluster-pem.json"

// pemManifest is the content of PEMManifest.
type pemManifest struct {
	Version int               `json:"version"`
	Files   map[string]string `json:"files"` // file name -> hex SHA-256 of the content written
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readPEMManifest reads the manifest of dir; a missing one is empty. An
// unreadable or malformed one is an error: the caller then claims no file.
func readPEMManifest(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, PEMManifest))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: read %s: %w", PEMManifest, err)
	}
	var mf pemManifest
	if err := json.Unmarshal(b, &mf); err != nil {
		return nil, fmt.Errorf("certs: decode %s: %w", PEMManifest, err)
	}
	if mf.Files == nil {
		mf.Files = map[string]string{}
	}
	return mf.Files, nil
}

// fileState is what a file of the PEM directory holds now.
type fileState int

const (
	fileAbsent  fileState = iota
	fileOurs              // listed in the manifest, content as written
	fileChanged           // listed in the manifest, content changed since
	fileForeign           // not listed in the manifest
	fileUnknown           // cannot be read
)

// writeFiles puts the PEM files into [Directories] PEM and removes those
// of deleted certificates. It touches only files the manifest lists with
// their content unchanged (and writes missing ones): a file that is not
// in the manifest, or that someone changed since the node wrote it, is
// never overwritten or deleted. A wanted file name taken by such a file
// is logged and reported by Problems until the name is free again. A file
// not in the manifest whose content is exactly what the node would write
// is adopted into the manifest (files written before the manifest existed).
// The files of a certificate that still exists but cannot be loaded now
// stay as they are.
func (m *Manager) writeFiles(files []pemFile, certs []*mailcluster.Certificate) {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	dir := m.src.Setting(mailcluster.SectionDirectories, mailcluster.KeyPEM, "")
	if dir == "" {
		m.setFileProblems(nil)
		return
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		m.log.Error("certificate dir", "dir", dir, "err", err)
		m.setFileProblems(map[string]string{PEMManifest: "the directory " + dir + " cannot be created"})
		return
	}
	owned, err := readPEMManifest(dir)
	if err != nil {
		m.log.Error("certificate dir: manifest unreadable; no file of the directory is overwritten or deleted",
			"dir", dir, "err", err)
		m.setFileProblems(map[string]string{PEMManifest: "the manifest of the PEM directory cannot be read; the node writes no file there"})
		return
	}
	changed := false
	state := func(name string) (fileState, []byte) {
		cur, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fileAbsent, nil
		case err != nil:
			m.log.Error("certificate dir: reading a file", "file", name, "err", err)
			return fileUnknown, nil
		}
		sum, ok := owned[name]
		switch {
		case !ok:
			return fileForeign, cur
		case sum == sha256Hex(cur):
			return fileOurs, cur
		}
		return fileChanged, cur
	}

	problems := map[string]string{}
	want := map[string]bool{}
	for _, f := range files {
		want[f.name] = true
		st, cur := state(f.name)
		if st != fileAbsent && st != fileUnknown && bytes.Equal(cur, f.body) {
			if st != fileOurs {
				owned[f.name] = sha256Hex(f.body) // identical content: the node's own
				changed = true
			}
			continue
		}
		switch st {
		case fileForeign, fileChanged:
			problems[f.name] = "a file this node did not write (or that was changed since) holds the name; it is left alone and the certificate is not written there"
			if _, ok := owned[f.name]; ok {
				delete(owned, f.name) // changed by someone else: theirs from now on
				changed = true
			}
			continue
		case fileUnknown:
			problems[f.name] = "the file cannot be read"
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.body, f.mode); err != nil {
			m.log.Error("writing a certificate file", "file", f.name, "err", err)
			problems[f.name] = "the file cannot be written"
			continue
		}
		owned[f.name] = sha256Hex(f.body)
		changed = true
	}
	stored := map[string]bool{}
	for _, c := range certs {
		stored[c.Name+".crt"], stored[c.Name+".key"] = true, true
	}
	for name := range owned {
		if want[name] || stored[name] {
			continue
		}
		switch st, _ := state(name); st {
		case fileAbsent:
		case fileOurs:
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				m.log.Error("removing the file of a deleted certificate", "file", name, "err", err)
				continue
			}
		case fileChanged:
			m.log.Warn("certificate dir: a file of a deleted certificate was changed since this node wrote it; it is left alone",
				"dir", dir, "file", name)
		default:
			continue // unreadable: try again next time
		}
		delete(owned, name)
		changed = true
	}
	if changed {
		b, err := json.MarshalIndent(pemManifest{Version: 1, Files: owned}, "", "  ")
		if err == nil {
			err = atomicfile.Write(filepath.Join(dir, PEMManifest), append(b, '\n'), 0o600)
		}
		if err != nil {
			m.log.Error("certificate dir: writing the manifest", "dir", dir, "err", err)
			problems[PEMManifest] = "the manifest of the PEM directory cannot be written"
		}
	}
	m.setFileProblems(problems)
}

// setFileProblems replaces the problems of the PEM directory, logging
// those that are new.
func (m *Manager) setFileProblems(problems map[string]string) {
	m.mu.Lock()
	old := m.fileProblems
	m.fileProblems = problems
	m.mu.Unlock()
	for name, p := range problems {
		if old[name] != p {
			m.log.Warn("certificate dir: "+p, "file", name)
		}
	}
}

var expiryThresholds = []int{30, 7, 1}

func (m *Manager) checkExpiry(certs []*mailcluster.Certificate) {
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
		m.record("warn", mailcluster.EventCertificateExpiry, fmt.Sprintf("certificate expires in less than %d day(s)", th),
			map[string]string{"name": c.Name, "not_after": c.NotAfter.Format(time.RFC3339)})
	}
}

func (m *Manager) record(level string, event mailcluster.EventKind, msg string, fields map[string]string) {
	if m.events != nil {
		m.events.Record(mailcluster.ClusterEvent{Level: level, Event: event, Message: msg, Fields: fields})
		return
	}
	m.log.Warn(msg, "event", event)
}

// Run keeps the certificates current until ctx ends: on every change of
// certs/ and of the PEM directory setting, and every minute.
func (m *Manager) Run(ctx context.Context, store mailcluster.Store) {
	certs, stop := store.Notify(schema.PrefixCertificates)
	defer stop()
	// Of the settings, only the PEM directory matters here.
	settings, stop2 := store.Notify(schema.Setting(mailcluster.MainSettingsFile, mailcluster.SectionDirectories, mailcluster.KeyPEM))
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
