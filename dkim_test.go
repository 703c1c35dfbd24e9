package mailcluster_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"mailcluster"
)

func TestValidateSelector(t *testing.T) {
	for _, tc := range []struct {
		sel string
		ok  bool
	}{
		{"mail", true}, {"s2026", true}, {"a-b.c1", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {"-a", false}, {"a-", false}, {"a..b", false},
		{".a", false}, {"a.", false}, {"a_b", false}, {"A", false}, {"a b", false}, {"é", false},
	} {
		if err := mailcluster.ValidateSelector(tc.sel); (err == nil) != tc.ok {
			t.Errorf("ValidateSelector(%q) = %v, want ok=%v", tc.sel, err, tc.ok)
		} else if err != nil && mailcluster.ErrorCode(err) != mailcluster.EINVALID {
			t.Errorf("ValidateSelector(%q): code %s", tc.sel, mailcluster.ErrorCode(err))
		}
	}
	if got := mailcluster.NormalizeSelector("  Mail2026 "); got != "mail2026" {
		t.Errorf("NormalizeSelector = %q", got)
	}
}

func pemOf(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParseDKIMPrivateKey(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	t.Setenv("GODEBUG", "rsa1024min=0") // a key too short for DKIM, to be refused
	rsa768, err := rsa.GenerateKey(rand.Reader, 768)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GODEBUG", "")
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8 := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	for _, tc := range []struct {
		name, pem, alg string
	}{
		{"RSAPKCS1", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), mailcluster.DKIMRSASHA256},
		{"RSAPKCS8", pemOf(t, "PRIVATE KEY", pkcs8(rsa1024)), mailcluster.DKIMRSASHA256},
		{"Ed25519", pemOf(t, "PRIVATE KEY", pkcs8(edKey)), mailcluster.DKIMEd25519SHA256},
		{"ErrShortRSA", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa768)), ""},
		{"ErrECDSA", pemOf(t, "PRIVATE KEY", pkcs8(ecKey)), ""},
		{"ErrECBlock", pemOf(t, "EC PRIVATE KEY", ecDER), ""},
		{"ErrNotPEM", "not a key", ""},
		{"ErrGarbage", pemOf(t, "PRIVATE KEY", []byte("garbage")), ""},
		{"ErrTrailing", pemOf(t, "PRIVATE KEY", pkcs8(edKey)) + "x", ""},
		{"ErrEncrypted", pemOf(t, "ENCRYPTED PRIVATE KEY", []byte("x")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, alg, err := mailcluster.ParseDKIMPrivateKey(tc.pem)
			if tc.alg == "" {
				if err == nil || mailcluster.ErrorCode(err) != mailcluster.EINVALID {
					t.Fatalf("err = %v, want EINVALID", err)
				}
				return
			}
			if err != nil || k == nil || alg != tc.alg {
				t.Fatalf("= %v, %q, %v; want %s", k, alg, err, tc.alg)
			}
		})
	}
}

func TestDKIMKeySealAndTXT(t *testing.T) {
	seal := mailcluster.SealKey("secret")
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k, err := mailcluster.NewDKIMKey(seal, "example.com", "s1", edKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm != mailcluster.DKIMEd25519SHA256 || k.SealedKey == "" || !k.Created.Equal(now) {
		t.Fatalf("key = %+v", k)
	}
	pub, _ := base64.StdEncoding.DecodeString(k.PublicKey)
	if !edKey.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(pub)) {
		t.Fatal("public key is not the raw Ed25519 key")
	}
	name, value := k.TXTRecord()
	if name != "s1._domainkey.example.com" || value != "v=DKIM1; k=ed25519; p="+k.PublicKey {
		t.Fatalf("TXT %q %q", name, value)
	}
	if strings.Contains(k.SealedKey, base64.StdEncoding.EncodeToString(edKey.Seed())) {
		t.Fatal("sealed key holds the seed in clear")
	}
	if k.Public().SealedKey != "" || k.SealedKey == "" {
		t.Fatal("Public must drop the sealed key only from the copy")
	}
	got, err := mailcluster.UnsealDKIMKey(seal, k)
	if err != nil || !got.(ed25519.PrivateKey).Equal(edKey) {
		t.Fatalf("unseal = %v", err)
	}
	if _, err := mailcluster.UnsealDKIMKey(mailcluster.SealKey("other"), k); err != mailcluster.ErrUnseal {
		t.Fatalf("wrong secret: %v", err)
	}
	moved := *k
	moved.Domain = "example.org"
	if _, err := mailcluster.UnsealDKIMKey(seal, &moved); err != mailcluster.ErrUnseal {
		t.Fatalf("record moved to another domain: %v", err)
	}

	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	r, err := mailcluster.NewDKIMKey(seal, "example.com", "s2", rk, now)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(r.PublicKey)
	if p, err := x509.ParsePKIXPublicKey(der); err != nil || !p.(*rsa.PublicKey).Equal(&rk.PublicKey) {
		t.Fatalf("RSA public key: %v", err)
	}
	if _, v := r.TXTRecord(); !strings.HasPrefix(v, "v=DKIM1; k=rsa; p=MI") {
		t.Fatalf("RSA TXT %q", v)
	}
}
