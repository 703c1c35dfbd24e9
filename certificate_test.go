package mailcluster_test

import (
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/internal/testcert"
)

func TestParseCertificate(t *testing.T) {
	now := time.Now()
	good := testcert.New(testcert.Options{Names: []string{"mail.example.test", "mx.example.test"}})
	other := testcert.New(testcert.Options{Names: []string{"other.example.test"}})
	expired := testcert.New(testcert.Options{Names: []string{"old.example.test"}, NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.Add(-time.Hour)})
	noSAN := testcert.New(testcert.Options{})
	t.Run("OK", func(t *testing.T) {
		c, err := mailcluster.ParseCertificate(good.Chain, good.Key, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.Fingerprint != good.Fingerprint || strings.Join(c.SANs, ",") != "mail.example.test,mx.example.test" ||
			!strings.Contains(c.Issuer, "Test CA") || !strings.Contains(c.Subject, "mail.example.test") {
			t.Fatalf("certificate = %+v", c)
		}
		if _, err := mailcluster.ParseCertificate(good.Leaf, good.Key, now); err != nil {
			t.Fatalf("a leaf alone: %v", err)
		}
	})
	for _, tc := range []struct {
		name, chain, key, want string
	}{
		{"Unparsable", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", good.Key, "not valid PEM"},
		{"Empty", "", good.Key, "no PEM certificate"},
		{"Garbage", "hello", good.Key, "not valid PEM"},
		{"KeyInChain", good.Chain + good.Key, good.Key, "PRIVATE KEY"},
		{"NoKey", good.Chain, "", "not a PEM private key"},
		{"KeyMismatch", good.Chain, other.Key, "does not match"},
		{"OutOfOrder", good.CA + good.Leaf, good.Key, "out of order"},
		{"WrongIssuer", good.Leaf + other.CA, good.Key, "out of order"},
		{"Expired", expired.Chain, expired.Key, "expired"},
		{"NoSAN", noSAN.Chain, noSAN.Key, "no subject alternative name"},
	} {
		t.Run("Err"+tc.name, func(t *testing.T) {
			_, err := mailcluster.ParseCertificate(tc.chain, tc.key, now)
			if mailcluster.ErrorCode(err) != mailcluster.EINVALID || !strings.Contains(mailcluster.ErrorMessage(err), tc.want) {
				t.Fatalf("err = %v, want EINVALID with %q", err, tc.want)
			}
		})
	}
}

func TestSeal(t *testing.T) {
	k1, k2 := mailcluster.SealKey("secret-one-0123456789"), mailcluster.SealKey("secret-two-0123456789")
	if len(k1) != 32 || string(k1) == string(k2) {
		t.Fatal("keys are not distinct 32-byte keys")
	}
	sealed, err := mailcluster.Seal(k1, []byte("private key"), "certs/a/fp")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "private key") {
		t.Fatal("plaintext visible")
	}
	if got, err := mailcluster.Unseal(k1, sealed, "certs/a/fp"); err != nil || string(got) != "private key" {
		t.Fatalf("unseal = %q, %v", got, err)
	}
	if _, err := mailcluster.Unseal(k2, sealed, "certs/a/fp"); err != mailcluster.ErrUnseal {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := mailcluster.Unseal(k1, sealed, "certs/b/fp"); err != mailcluster.ErrUnseal {
		t.Fatalf("moved to another record: %v", err)
	}
	if _, err := mailcluster.Unseal(k1, "!!", "certs/a/fp"); err != mailcluster.ErrUnseal {
		t.Fatalf("damaged: %v", err)
	}
}
