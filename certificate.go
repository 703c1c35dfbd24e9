package mailcluster

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"time"
)

// PrefixCertificates holds the cluster's TLS certificates: certs/<name>.
const PrefixCertificates = "certs/"

// Certificate is a TLS certificate chain of the cluster with its private
// key sealed (AES-256-GCM, key derived from the cluster secret with HKDF).
// SealedKey is never returned by an API.
type Certificate struct {
	Name        string    `json:"name"`
	Default     bool      `json:"default"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the leaf, hex
	ChainPEM    string    `json:"chainPem"`
	SealedKey   string    `json:"sealedKey,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Public returns a copy without the sealed key.
func (c *Certificate) Public() *Certificate {
	p := *c
	p.SealedKey = ""
	return &p
}

var reCertName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ParseCertificate validates a PEM chain (leaf first, each certificate
// signed by the next) and its private key, and describes the leaf.
// Errors (EINVALID): unparsable PEM, no certificate, key not matching the
// leaf, chain out of order, no subject alternative name, expired.
func ParseCertificate(chainPEM, keyPEM string, now time.Time) (*Certificate, error) {
	var chain []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, Errorf(EINVALID, "The chain holds a %q block; only CERTIFICATE blocks belong there (the key goes separately).", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, Errorf(EINVALID, "Certificate %d of the chain cannot be parsed.", len(chain)+1)
		}
		chain = append(chain, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, Errorf(EINVALID, "The chain is not valid PEM after certificate %d.", len(chain))
	}
	if len(chain) == 0 {
		return nil, Errorf(EINVALID, "The chain holds no PEM certificate.")
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			return nil, Errorf(EINVALID, "The chain is out of order: certificate %d is not signed by certificate %d (give the leaf first, then each issuer).", i, i+1)
		}
	}
	if kb, _ := pem.Decode([]byte(keyPEM)); kb == nil || !strings.Contains(kb.Type, "PRIVATE KEY") {
		return nil, Errorf(EINVALID, "The key is not a PEM private key.")
	}
	if _, err := tls.X509KeyPair([]byte(chainPEM), []byte(keyPEM)); err != nil {
		return nil, Errorf(EINVALID, "The private key does not match the certificate (or cannot be parsed).")
	}
	leaf := chain[0]
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		return nil, Errorf(EINVALID, "The certificate has no subject alternative name; clients check names only there.")
	}
	if now.After(leaf.NotAfter) {
		return nil, Errorf(EINVALID, "The certificate expired on %s.", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(leaf.Raw)
	c := &Certificate{Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), NotBefore: leaf.NotBefore.UTC(),
		NotAfter: leaf.NotAfter.UTC(), Fingerprint: hex.EncodeToString(sum[:]), ChainPEM: chainPEM}
	c.SANs = append(c.SANs, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		c.SANs = append(c.SANs, ip.String())
	}
	return c, nil
}

// SealKey derives the key that seals private keys from the cluster secret.
func SealKey(secret string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "mailcluster certificate keys v1", 32)
	if err != nil {
		return nil
	}
	return k
}

// Seal encrypts plaintext with AES-256-GCM; aad binds it to its record.
func Seal(key, plaintext []byte, aad string) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, plaintext, []byte(aad))), nil
}

// ErrUnseal means a sealed value cannot be opened with this key (a wrong
// cluster secret, or damaged data).
var ErrUnseal = errors.New("mailcluster: cannot unseal: wrong cluster secret or damaged data")

// Unseal reverses Seal.
func Unseal(key []byte, sealed, aad string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, ErrUnseal
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ErrUnseal
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil || len(raw) < gcm.NonceSize() {
		return nil, ErrUnseal
	}
	out, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], []byte(aad))
	if err != nil {
		return nil, ErrUnseal
	}
	return out, nil
}

// certAAD binds a sealed key to its certificate.
func certAAD(name, fingerprint string) string { return "certs/" + name + "/" + fingerprint }

// UnsealCertificateKey returns the PEM private key of a stored certificate.
func UnsealCertificateKey(key []byte, c *Certificate) ([]byte, error) {
	return Unseal(key, c.SealedKey, certAAD(c.Name, c.Fingerprint))
}

// ImportCertificate validates and stores a certificate under name (a new
// one or a replacement); with makeDefault it becomes the default for
// clients that send no matching server name. Errors: EINVALID,
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) ImportCertificate(ctx context.Context, name, chainPEM, keyPEM string, makeDefault bool) (*Certificate, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	if !reCertName.MatchString(name) {
		return nil, Errorf(EINVALID, "Certificate name %q must be 1-64 lower-case letters, digits, '.', '_' or '-'.", name)
	}
	if len(chainPEM) > 64<<10 || len(keyPEM) > 16<<10 {
		return nil, Errorf(ETOOLARGE, "The chain or key is too large.")
	}
	c, err := ParseCertificate(chainPEM, keyPEM, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if len(s.SealKey) != 32 {
		return nil, Errorf(EUNAVAILABLE, "This node has no key to seal private keys with.")
	}
	c.Name, c.CreatedAt = name, s.now()
	if c.SealedKey, err = Seal(s.SealKey, []byte(keyPEM), certAAD(name, c.Fingerprint)); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "The key could not be sealed.", Err: err}
	}
	existing := s.store.List(PrefixCertificates, "", 0)
	c.Default = makeDefault || len(existing) == 0 || (len(existing) == 1 && existing[0].Key == PrefixCertificates+name)
	var ops []Op
	for _, kv := range existing {
		if kv.Key == PrefixCertificates+name {
			var old Certificate
			if json.Unmarshal(kv.Value, &old) == nil && old.Default {
				c.Default = true // a replacement keeps the default role
			}
			continue
		}
		if !makeDefault {
			continue
		}
		var other Certificate
		if json.Unmarshal(kv.Value, &other) == nil && other.Default {
			other.Default = false
			b, _ := json.Marshal(other)
			ops = append(ops, Op{Verb: OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex})
		}
	}
	b, _ := json.Marshal(c)
	ops = append(ops, Op{Verb: OpSet, Key: PrefixCertificates + name, Value: b})
	if err := s.txn(ctx, ops); err != nil {
		return nil, conflictAs(err, "The certificates changed concurrently; try again.")
	}
	s.log.Info("certificate imported", "name", name, "fingerprint", c.Fingerprint, "not_after", c.NotAfter)
	return c.Public(), nil
}

// Certificates lists the stored certificates without keys. Errors: EFORBIDDEN.
func (s *Service) Certificates(ctx context.Context) ([]*Certificate, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	return s.StoredCertificates(false), nil
}

// StoredCertificates returns the certificates of the replicated state,
// with their sealed keys when withKeys (for the node's TLS machinery).
func (s *Service) StoredCertificates(withKeys bool) []*Certificate {
	var out []*Certificate
	for _, kv := range s.store.List(PrefixCertificates, "", 0) {
		var c Certificate
		if json.Unmarshal(kv.Value, &c) != nil {
			continue
		}
		if !withKeys {
			c.SealedKey = ""
		}
		out = append(out, &c)
	}
	return out
}

// Certificate returns one certificate without its key.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) Certificate(ctx context.Context, name string) (*Certificate, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	if !reCertName.MatchString(name) {
		return nil, Errorf(EINVALID, "Certificate name %q is not valid.", name)
	}
	kv, ok := s.store.Get(PrefixCertificates + name)
	if !ok {
		return nil, Errorf(ENOTFOUND, "Certificate %s does not exist.", name)
	}
	var c Certificate
	if err := json.Unmarshal(kv.Value, &c); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "A stored certificate is damaged.", Err: err}
	}
	return c.Public(), nil
}

// DeleteCertificate removes a certificate. Errors: EINVALID, ENOTFOUND,
// EFORBIDDEN, EREADONLY.
func (s *Service) DeleteCertificate(ctx context.Context, name string) error {
	if err := authorizeServer(ctx); err != nil {
		return err
	}
	if !reCertName.MatchString(name) {
		return Errorf(EINVALID, "Certificate name %q is not valid.", name)
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(PrefixCertificates + name)
	if !ok {
		return Errorf(ENOTFOUND, "Certificate %s does not exist.", name)
	}
	if err := s.txn(ctx, []Op{{Verb: OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Certificate %s was changed concurrently; try again.", name)
	}
	return nil
}
