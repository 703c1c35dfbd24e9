package xmlapi_test

import "mailcluster/internal/testcert"

// testCert is a certificate chain with its private key, as PEM.
type testCert = testcert.PKICert

// pki is made once per test binary; generating ECDSA keys is fast.
var pki = testcert.NewPKI()

// keyMarkers returns texts that betray one of the PKI's private keys.
func keyMarkers() []string { return pki.KeyMarkers() }

// certPEM encodes a certificate as PEM.
var certPEM = testcert.CertPEM
