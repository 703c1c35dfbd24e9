package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"time"
)

// PKICert is a certificate chain with its private key, as PEM.
type PKICert struct {
	ChainPEM string
	KeyPEM   string
	// Fingerprint is the SHA-256 of the leaf's DER, hex.
	Fingerprint string
	Leaf        *x509.Certificate
}

// PKI is a small CA with the certificates the tests import.
type PKI struct {
	CAPEM    string
	InterPEM string
	Leaf     PKICert // mail.example.com, smtp.example.com; chain leaf, CA
	Leaf2    PKICert // another leaf for mail.example.com
	Inter    PKICert // a leaf issued by the intermediate; chain leaf, intermediate, CA
	Expired  PKICert // expired yesterday
	NoSAN    PKICert // a common name only
	// OtherKeyPEM belongs to no certificate of the PKI.
	OtherKeyPEM string
}

// Keys returns every private key of the PKI.
func (p *PKI) Keys() []string {
	return []string{p.Leaf.KeyPEM, p.Leaf2.KeyPEM, p.Inter.KeyPEM, p.Expired.KeyPEM, p.NoSAN.KeyPEM, p.OtherKeyPEM}
}

// KeyMarkers returns texts that betray a private key: the PEM armour of
// a key and every line of the base64 bodies of the PKI's keys.
func (p *PKI) KeyMarkers() []string {
	out := []string{"PRIVATE KEY-----"}
	for _, k := range p.Keys() {
		for _, line := range strings.Split(k, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}

// NewPKI makes a CA, an intermediate and the leaves of a PKI.
func NewPKI() *PKI {
	now := time.Now()
	caKey, _ := mustKey()
	ca := mustIssue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "mailcluster test CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &caKey.PublicKey, caKey)
	interKey, _ := mustKey()
	inter := mustIssue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "mailcluster test intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, ca, &interKey.PublicKey, caKey)

	leaf := func(cn string, dns []string, notBefore, notAfter time.Time, issuers ...*x509.Certificate) PKICert {
		key, keyPEM := mustKey()
		signer := caKey
		if issuers[0] == inter {
			signer = interKey
		}
		c := mustIssue(&x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, DNSNames: dns, NotBefore: notBefore, NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, issuers[0], &key.PublicKey, signer)
		chain := CertPEM(c)
		for _, i := range issuers {
			chain += CertPEM(i)
		}
		sum := sha256.Sum256(c.Raw)
		return PKICert{ChainPEM: chain, KeyPEM: keyPEM, Fingerprint: hex.EncodeToString(sum[:]), Leaf: c}
	}
	p := &PKI{CAPEM: CertPEM(ca), InterPEM: CertPEM(inter)}
	valid := now.AddDate(0, 0, 90)
	p.Leaf = leaf("mail.example.com", []string{"mail.example.com", "smtp.example.com"}, now.Add(-time.Hour), valid, ca)
	p.Leaf2 = leaf("mail.example.com", []string{"mail.example.com"}, now.Add(-time.Hour), valid, ca)
	p.Inter = leaf("inter.example.com", []string{"inter.example.com"}, now.Add(-time.Hour), valid, inter, ca)
	p.Expired = leaf("old.example.com", []string{"old.example.com"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour), ca)
	p.NoSAN = leaf("nosan.example.com", nil, now.Add(-time.Hour), valid, ca)
	_, p.OtherKeyPEM = mustKey()
	return p
}

func mustKey() (*ecdsa.PrivateKey, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// mustIssue signs tmpl with signer as parent (self-signed when parent is nil).
func mustIssue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

// CertPEM encodes a certificate as PEM.
func CertPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
