package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
)

// DKIMKey is the JSON form of a domain's DKIM key in answers.
type DKIMKey struct {
	Domain    string    `json:"domain"`
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
	DNSName   string    `json:"dnsName"`
	DNSValue  string    `json:"dnsValue"`
}

func TestDKIM(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	c.MustCreateDomain(t, "other.example")
	c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "dadmin", "password": "dadmin-pass-1", "adminRights": "domain"})
	dadmin := c.As("dadmin@example.com", "dadmin-pass-1")
	path := "/api/v1/domains/example.com/dkim"

	// An RSA key to import, whose PEM and base64 body must never come back
	// or reach the log.
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der := x509.MarshalPKCS1PrivateKey(rk)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	secrets := []string{base64.StdEncoding.EncodeToString(der)[:64], base64.StdEncoding.EncodeToString(der)[192:256]}
	for _, s := range secrets {
		c.Secret(s)
	}

	t.Run("Create", func(t *testing.T) {
		c.Get(t, path).ExpectProblem(t, http.StatusNotFound, "not-found")
		res := dadmin.Send(t, http.MethodPut, path, map[string]any{"selector": "Ed1", "algorithm": "ed25519-sha256"}).Expect(t, http.StatusCreated)
		if res.Header.Get("Location") != path {
			t.Errorf("Location %q", res.Header.Get("Location"))
		}
		var k DKIMKey
		res.JSON(t, &k)
		if k.Domain != "example.com" || k.Selector != "ed1" || k.Algorithm != mailcluster.DKIMEd25519SHA256 ||
			k.DNSName != "ed1._domainkey.example.com" || !strings.HasPrefix(k.DNSValue, "v=DKIM1; k=ed25519; p=") || k.Created.IsZero() {
			t.Fatalf("key = %+v", k)
		}
		var got DKIMKey
		c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &got)
		if got != k {
			t.Fatalf("read %+v, created %+v", got, k)
		}
		// POST with no algorithm generates an RSA key and replaces the key.
		c.Send(t, http.MethodPost, path, map[string]any{"selector": "rsa1"}).Expect(t, http.StatusOK).JSON(t, &got)
		if got.Algorithm != mailcluster.DKIMRSASHA256 || !strings.HasPrefix(got.DNSValue, "v=DKIM1; k=rsa; p=MII") {
			t.Fatalf("RSA key = %+v", got)
		}
	})
	t.Run("Import", func(t *testing.T) {
		var k DKIMKey
		c.Send(t, http.MethodPut, path, map[string]any{"selector": "imp", "privateKey": keyPEM}).Expect(t, http.StatusOK).JSON(t, &k)
		pub, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
		if k.DNSValue != "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub) {
			t.Fatalf("imported key's record %q", k.DNSValue)
		}
		kv, _ := env.Store.Get(schema.DKIMKey("example.com"))
		for _, s := range secrets {
			if strings.Contains(string(kv.Value), s) {
				t.Fatal("the stored record holds the key in the clear")
			}
		}
	})
	t.Run("ErrInput", func(t *testing.T) {
		before := env.Store.Index()
		for _, body := range []map[string]any{
			{"selector": "bad_selector"},
			{"selector": "s", "algorithm": "rsa-sha1"},
			{"selector": "s", "privateKey": "not a key"},
			{"selector": "s", "privateKey": keyPEM, "algorithm": "rsa-sha256"},
		} {
			r := Request{Method: http.MethodPut, Path: path, Invalid: body["algorithm"] == "rsa-sha1"}
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			r.Body = b
			c.Do(t, r).ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
		c.Send(t, http.MethodPut, "/api/v1/domains/nowhere.example/dkim", map[string]any{"selector": "s"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
		dadmin.Send(t, http.MethodPut, "/api/v1/domains/other.example/dkim", map[string]any{"selector": "s"}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
		dadmin.Get(t, "/api/v1/domains/other.example/dkim").ExpectProblem(t, http.StatusForbidden, "forbidden")
		dadmin.Delete(t, "/api/v1/domains/other.example/dkim").ExpectProblem(t, http.StatusForbidden, "forbidden")
		if env.Store.Index() != before {
			t.Fatal("a refused request changed the store")
		}
	})
	t.Run("Delete", func(t *testing.T) {
		dadmin.Delete(t, path).Expect(t, http.StatusNoContent)
		c.Get(t, path).ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, path).ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("NoKeyInLog", func(t *testing.T) {
		logs := env.Log.String()
		if !strings.Contains(logs, "dkim key imported") {
			t.Fatal("the log did not capture the import")
		}
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Fatalf("the log holds key material %q", s)
			}
		}
	})
}
