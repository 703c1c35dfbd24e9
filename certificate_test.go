package mailcluster_test

import (
	"context"
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

func TestImportCertificate(t *testing.T) {
	ctx := context.Background()
	svc, st := MustOpenService(t, nil)
	svc.SealKey = mailcluster.SealKey("test-secret-0123456789")
	a := testcert.New(testcert.Options{Names: []string{"a.example.test"}})
	b := testcert.New(testcert.Options{Names: []string{"b.example.test"}})
	ca, err := svc.ImportCertificate(ctx, "a", a.Chain, a.Key, false)
	if err != nil || !ca.Default || ca.SealedKey != "" {
		t.Fatalf("first import = %+v, %v", ca, err)
	}
	kv, _ := st.Get("certs/a")
	if strings.Contains(string(kv.Value), "PRIVATE KEY") || !strings.Contains(string(kv.Value), `"sealedKey"`) {
		t.Fatal("the stored record holds the key in the clear, or no sealed key")
	}
	stored := svc.StoredCertificates(true)
	key, err := mailcluster.UnsealCertificateKey(svc.SealKey, stored[0])
	if err != nil || string(key) != a.Key {
		t.Fatalf("unseal stored key: %v", err)
	}
	if _, err := svc.ImportCertificate(ctx, "b", b.Chain, b.Key, true); err != nil {
		t.Fatal(err)
	}
	list, _ := svc.Certificates(ctx)
	if len(list) != 2 || list[0].Default || !list[1].Default {
		t.Fatalf("default did not move to b: %+v", list)
	}
	_, err = svc.ImportCertificate(ctx, "Bad Name", a.Chain, a.Key, false)
	wantCode(t, err, mailcluster.EINVALID)
	wantCode(t, svc.DeleteCertificate(ctx, "zzz"), mailcluster.ENOTFOUND)
	if err := svc.DeleteCertificate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Certificate(ctx, "a")
	wantCode(t, err, mailcluster.ENOTFOUND)
}
