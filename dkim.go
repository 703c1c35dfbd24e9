package mailcluster

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"time"
)

// DKIM signing algorithms (RFC 6376, RFC 8463).
const (
	DKIMRSASHA256     = "rsa-sha256"     // RSA key, 2048 bits when generated
	DKIMEd25519SHA256 = "ed25519-sha256" // Ed25519 key
)

// DKIM RSA key sizes: generated keys have DKIMRSABits; imported keys
// have between DKIMRSAMinBits (RFC 8301) and DKIMRSAMaxBits.
const (
	DKIMRSABits    = 2048
	DKIMRSAMinBits = 1024
	DKIMRSAMaxBits = 4096
)

// DKIMKey is the DKIM signing key of a domain (one per domain) with its
// private key sealed (AES-256-GCM with the key derived from the cluster
// secret, as certificate keys). SealedKey is never returned by an API:
// answers use Public.
type DKIMKey struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"` // DKIMRSASHA256 or DKIMEd25519SHA256
	// PublicKey is the p= value of the DNS record, base64: the DER
	// SubjectPublicKeyInfo of an RSA key, the 32 raw bytes of an Ed25519
	// key (RFC 8463).
	PublicKey string    `json:"publicKey"`
	SealedKey string    `json:"sealedKey,omitempty"` // PKCS#8 DER, sealed
	Created   time.Time `json:"created"`
}

// Public returns a copy without the sealed key.
func (k *DKIMKey) Public() *DKIMKey {
	p := *k
	p.SealedKey = ""
	return &p
}

// TXTRecord returns the DNS TXT record to publish for the key: its name
// ("<selector>._domainkey.<domain>") and value ("v=DKIM1; k=rsa; p=...",
// k=ed25519 for an Ed25519 key). A value longer than 255 bytes goes into
// one TXT record as several strings, which resolvers join.
func (k *DKIMKey) TXTRecord() (name, value string) {
	alg := "rsa"
	if k.Algorithm == DKIMEd25519SHA256 {
		alg = "ed25519"
	}
	return k.Selector + "._domainkey." + k.Domain, "v=DKIM1; k=" + alg + "; p=" + k.PublicKey
}

// NormalizeSelector returns a selector as stored: trimmed and lower-cased.
func NormalizeSelector(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ValidateSelector checks a normalized DKIM selector: 1-63 characters,
// one or more DNS labels of a-z, 0-9 and '-' separated by dots, no label
// empty or starting or ending with '-'. Errors: EINVALID.
func ValidateSelector(s string) error {
	bad := Errorf(EINVALID, "Selector %q must be 1-63 characters: DNS labels of a-z, 0-9 and '-' separated by dots (e.g. mail2026).", clipString(s, 80))
	if len(s) == 0 || len(s) > 63 {
		return bad
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return bad
			}
		}
	}
	return nil
}

// clipString shortens s to at most n bytes for a message.
func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ParseDKIMPrivateKey reads a PEM private key for DKIM: an RSA key
// (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY") of DKIMRSAMinBits to
// DKIMRSAMaxBits, or an Ed25519 key (PKCS#8). It returns the key and its
// algorithm. Errors: EINVALID (not PEM, encrypted, another key type or
// size, trailing data).
func ParseDKIMPrivateKey(keyPEM string) (crypto.Signer, string, error) {
	b, rest := pem.Decode([]byte(keyPEM))
	if b == nil {
		return nil, "", Errorf(EINVALID, "The private key is not PEM: give one PEM block of type PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY (PKCS#1).")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, "", Errorf(EINVALID, "The private key is followed by other data; give exactly one PEM block.")
	}
	var key any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		if _, encrypted := b.Headers["Proc-Type"]; encrypted {
			return nil, "", Errorf(EINVALID, "The private key is encrypted; give it unencrypted.")
		}
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, "", Errorf(EINVALID, "The private key is encrypted; give it unencrypted.")
	default:
		return nil, "", Errorf(EINVALID, "A %q block is not a supported private key: give an RSA key (PKCS#1 or PKCS#8) or an Ed25519 key (PKCS#8).", clipString(b.Type, 40))
	}
	if err != nil {
		return nil, "", Errorf(EINVALID, "The private key cannot be parsed.")
	}
	return checkDKIMKey(key)
}

// checkDKIMKey checks the type and size of a parsed private key.
func checkDKIMKey(key any) (crypto.Signer, string, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		bits := k.N.BitLen()
		if bits < DKIMRSAMinBits || bits > DKIMRSAMaxBits {
			return nil, "", Errorf(EINVALID, "The RSA key has %d bits; DKIM keys must have %d to %d.", bits, DKIMRSAMinBits, DKIMRSAMaxBits)
		}
		if err := k.Validate(); err != nil {
			return nil, "", Errorf(EINVALID, "The RSA key is not valid.")
		}
		return k, DKIMRSASHA256, nil
	case ed25519.PrivateKey:
		return k, DKIMEd25519SHA256, nil
	default:
		return nil, "", Errorf(EINVALID, "The private key is neither RSA nor Ed25519; DKIM signs with one of those.")
	}
}

// NewDKIMKey describes key as the DKIM key of domain with selector and
// seals it with sealKey (see SealKey), bound to domain and selector.
// Errors: EINVALID (a key of another type or size), EINTERNAL.
func NewDKIMKey(sealKey []byte, domain, selector string, key crypto.Signer, created time.Time) (*DKIMKey, error) {
	_, alg, err := checkDKIMKey(key)
	if err != nil {
		return nil, err
	}
	k := &DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, Created: created.UTC()}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, &Error{Code: EINTERNAL, Message: "The public key could not be encoded.", Err: err}
		}
		k.PublicKey = base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		k.PublicKey = base64.StdEncoding.EncodeToString(pub)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "The private key could not be encoded.", Err: err}
	}
	if k.SealedKey, err = Seal(sealKey, der, k.aad()); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "The private key could not be sealed.", Err: err}
	}
	return k, nil
}

// aad binds a sealed DKIM key to its record.
func (k *DKIMKey) aad() string {
	return "dkim/" + k.Domain + "/" + k.Selector + "/" + k.Algorithm + "/" + k.PublicKey
}

// UnsealDKIMKey returns the private key of a stored DKIM key. Errors:
// ErrUnseal (a wrong cluster secret, a damaged or moved record), or an
// error when the opened key is not a DKIM key.
func UnsealDKIMKey(sealKey []byte, k *DKIMKey) (crypto.Signer, error) {
	der, err := Unseal(sealKey, k.SealedKey, k.aad())
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, ErrUnseal
	}
	signer, _, err := checkDKIMKey(key)
	return signer, err
}
