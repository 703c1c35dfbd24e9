package mailcluster

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"time"
)

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

// ValidCertificateName reports whether name can name a certificate: 1-64
// lower-case letters, digits, '.', '_' or '-', starting with a letter or
// digit.
func ValidCertificateName(name string) bool { return reCertName.MatchString(name) }

// SealCertificateKey seals a certificate's private key for the replicated
// state, bound to its name and fingerprint.
func SealCertificateKey(key, keyPEM []byte, name, fingerprint string) (string, error) {
	return Seal(key, keyPEM, certAAD(name, fingerprint))
}

// certAAD binds a sealed key to its certificate.
func certAAD(name, fingerprint string) string { return "certs/" + name + "/" + fingerprint }

// UnsealCertificateKey returns the PEM private key of a stored certificate.
func UnsealCertificateKey(key []byte, c *Certificate) ([]byte, error) {
	return Unseal(key, c.SealedKey, certAAD(c.Name, c.Fingerprint))
}
