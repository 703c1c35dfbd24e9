// Package testcert makes certificates for tests: a CA and leaves signed by
// it, with the chain and key as PEM.
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
	"time"
)

// Cert is a generated certificate.
type Cert struct {
	Chain       string // leaf then CA, PEM
	Key         string // PKCS#8 PEM
	Leaf        string // the leaf alone, PEM
	CA          string // the CA alone, PEM
	Fingerprint string // SHA-256 of the leaf DER, hex
}

// Options shape a leaf.
type Options struct {
	Names     []string  // DNS SANs; none gives a leaf without SAN
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in 90 days
}

// New returns a leaf for o signed by a fresh CA.
func New(o Options) Cert {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().AddDate(2, 0, 0)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().AddDate(0, 0, 90)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	cn := "no-san"
	if len(o.Names) > 0 {
		cn = o.Names[0]
	}
	leaf := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: o.Names,
		NotBefore: o.NotBefore, NotAfter: o.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	sum := sha256.Sum256(der)
	leafPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	return Cert{Chain: leafPEM + caPEM, Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})),
		Leaf: leafPEM, CA: caPEM, Fingerprint: hex.EncodeToString(sum[:])}
}
