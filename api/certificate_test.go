package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"mailcluster/service"

	"mailcluster"
)

// Certificate is the JSON form of a certificate in answers.
type Certificate struct {
	Name        string    `json:"name"`
	Default     bool      `json:"default"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"fingerprint"`
	ChainPEM    string    `json:"chainPem"`
}

// importBody is the JSON body of PUT /api/v1/certificates/{name}.
func importBody(tb testing.TB, chain, key string, makeDefault bool) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"chainPem": chain, "keyPem": key, "default": makeDefault})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// MustImportCertificate imports a certificate through the API and
// returns the answer's status and certificate.
func (c *Client) MustImportCertificate(tb testing.TB, name string, tc testCert, makeDefault bool) (int, Certificate) {
	tb.Helper()
	res := c.Do(tb, Request{Method: http.MethodPut, Path: "/api/v1/certificates/" + name, Body: importBody(tb, tc.ChainPEM, tc.KeyPEM, makeDefault)})
	if res.Status != http.StatusOK && res.Status != http.StatusCreated {
		tb.Fatalf("import %s: status %d: %s", name, res.Status, res.Body)
	}
	var out Certificate
	res.JSON(tb, &out)
	return res.Status, out
}

// keySecrets makes c fail a test on any answer that shows a private key.
func keySecrets(c *Client) {
	for _, m := range keyMarkers() {
		c.Secret(m)
	}
}

// assertNoKeyInLog fails when the node's log holds a private key or a
// sealed one.
func assertNoKeyInLog(t *testing.T, env *Env) {
	t.Helper()
	logs := env.Log.String()
	markers := keyMarkers()
	for _, c := range mustLocal(env.Svc).StoredCertificates(true) {
		markers = append(markers, c.SealedKey)
	}
	for _, m := range markers {
		if m != "" && strings.Contains(logs, m) {
			t.Errorf("the log holds key material %q", m)
		}
	}
}

func TestCertificates(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	keySecrets(c)

	t.Run("ListEmpty", func(t *testing.T) {
		res := c.Get(t, "/api/v1/certificates").Expect(t, http.StatusOK)
		if got := strings.TrimSpace(string(res.Body)); got != `{"certificates":[]}` {
			t.Errorf("body %s", got)
		}
	})
	t.Run("ImportNew", func(t *testing.T) {
		res := c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/mail",
			Body: importBody(t, pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, false)}).Expect(t, http.StatusCreated)
		if got := res.Header.Get("Location"); got != "/api/v1/certificates/mail" {
			t.Errorf("Location = %q", got)
		}
		var got Certificate
		res.JSON(t, &got)
		want := Certificate{Name: "mail", Default: true, Subject: "CN=mail.example.com", Issuer: "CN=mailcluster test CA",
			SANs: []string{"mail.example.com", "smtp.example.com"}, NotBefore: pki.Leaf.Leaf.NotBefore.UTC(),
			NotAfter: pki.Leaf.Leaf.NotAfter.UTC(), Fingerprint: pki.Leaf.Fingerprint, ChainPEM: pki.Leaf.ChainPEM}
		if !equalCert(got, want) {
			t.Errorf("imported\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("Show", func(t *testing.T) {
		var got Certificate
		c.Get(t, "/api/v1/certificates/mail").Expect(t, http.StatusOK).JSON(t, &got)
		if got.Name != "mail" || got.Fingerprint != pki.Leaf.Fingerprint || !got.Default || got.ChainPEM != pki.Leaf.ChainPEM {
			t.Errorf("certificate %+v", got)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		status, got := c.MustImportCertificate(t, "mail", pki.Leaf2, false)
		if status != http.StatusOK {
			t.Errorf("status %d, want 200", status)
		}
		if got.Fingerprint != pki.Leaf2.Fingerprint || !got.Default || !slices.Equal(got.SANs, []string{"mail.example.com"}) {
			t.Errorf("replaced %+v", got)
		}
	})
	t.Run("SecondNotDefault", func(t *testing.T) {
		status, got := c.MustImportCertificate(t, "backup", pki.Inter, false)
		if status != http.StatusCreated || got.Default || got.Issuer != "CN=mailcluster test intermediate" {
			t.Errorf("status %d, %+v", status, got)
		}
	})
	t.Run("ListSorted", func(t *testing.T) {
		var l struct{ Certificates []Certificate }
		c.Get(t, "/api/v1/certificates").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Certificates) != 2 || l.Certificates[0].Name != "backup" || l.Certificates[1].Name != "mail" {
			t.Fatalf("list %+v", l.Certificates)
		}
		if l.Certificates[1].Fingerprint != pki.Leaf2.Fingerprint || l.Certificates[0].Fingerprint != pki.Inter.Fingerprint {
			t.Errorf("fingerprints %s %s", l.Certificates[0].Fingerprint, l.Certificates[1].Fingerprint)
		}
	})
	t.Run("MakeDefault", func(t *testing.T) {
		status, got := c.MustImportCertificate(t, "backup", pki.Inter, true)
		if status != http.StatusOK || !got.Default {
			t.Errorf("status %d, %+v", status, got)
		}
		var mail Certificate
		c.Get(t, "/api/v1/certificates/mail").Expect(t, http.StatusOK).JSON(t, &mail)
		if mail.Default {
			t.Error("two default certificates")
		}
	})
	t.Run("KeySealed", func(t *testing.T) {
		for _, sc := range mustLocal(env.Svc).StoredCertificates(true) {
			if sc.SealedKey == "" || strings.Contains(sc.SealedKey, "PRIVATE KEY") {
				t.Fatalf("%s: key not sealed", sc.Name)
			}
			c.Secret(sc.SealedKey)
			key, err := mailcluster.UnsealCertificateKey(sealKey, sc)
			if err != nil {
				t.Fatalf("%s: unseal: %v", sc.Name, err)
			}
			want := map[string]string{"mail": pki.Leaf2.KeyPEM, "backup": pki.Inter.KeyPEM}[sc.Name]
			if string(key) != want {
				t.Errorf("%s: unsealed key differs", sc.Name)
			}
		}
		// Answers are checked for the sealed keys from here on.
		c.Get(t, "/api/v1/certificates").Expect(t, http.StatusOK)
		c.Get(t, "/api/v1/certificates/mail").Expect(t, http.StatusOK)
	})

	outOfOrder := pki.Inter.Leaf
	invalid := []struct {
		name   string
		chain  string
		key    string
		detail string // a word of the detail, "" for any
	}{
		{"ErrIssuerFirst", pki.CAPEM + certPEM(pki.Leaf.Leaf), pki.Leaf.KeyPEM, "order"},
		{"ErrOutOfOrder", certPEM(outOfOrder) + pki.CAPEM + pki.InterPEM, pki.Inter.KeyPEM, "order"},
		{"ErrKeyMismatch", pki.Leaf.ChainPEM, pki.OtherKeyPEM, "key"},
		{"ErrKeyOfIssuer", pki.Inter.ChainPEM, pki.Leaf.KeyPEM, "key"},
		{"ErrExpired", pki.Expired.ChainPEM, pki.Expired.KeyPEM, "expired"},
		{"ErrNoSAN", pki.NoSAN.ChainPEM, pki.NoSAN.KeyPEM, "subject alternative name"},
		{"ErrNotPEM", "this is not a certificate", pki.Leaf.KeyPEM, "PEM"},
		{"ErrGarbledPEM", "-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n", pki.Leaf.KeyPEM, ""},
		{"ErrGarbageAfter", pki.Leaf.ChainPEM + "trailing", pki.Leaf.KeyPEM, "PEM"},
		{"ErrKeyNotPEM", pki.Leaf.ChainPEM, "not a key", "key"},
		{"ErrKeyInChain", pki.Leaf.ChainPEM + pki.Leaf.KeyPEM, pki.Leaf.KeyPEM, ""},
		{"ErrChainAsKey", pki.Leaf.ChainPEM, pki.Leaf.ChainPEM, "key"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			p := c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/bad", Body: importBody(t, tt.chain, tt.key, true)}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
			if p.Detail == "" || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail %q, want it to mention %q", p.Detail, tt.detail)
			}
		})
	}
	t.Run("ErrBadName", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/Mail", Invalid: true,
			Body: importBody(t, pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, false)}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/certificates/-x", Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrEmptyKey", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/bad", Invalid: true,
			Body: importBody(t, pki.Leaf.ChainPEM, "", false)}).ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrUnknownMember", func(t *testing.T) {
		body := []byte(`{"chainPem":` + jsonString(pki.Leaf.ChainPEM) + `,"keyPem":` + jsonString(pki.Leaf.KeyPEM) + `,"sealedKey":"x"}`)
		p := c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/bad", Body: body, Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, "sealedKey") {
			t.Errorf("detail %q", p.Detail)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		big := pki.Leaf.ChainPEM + strings.Repeat("\n", 65<<10)
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/bad", Invalid: true,
			Body: importBody(t, big, pki.Leaf.KeyPEM, false)}).ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
	})
	t.Run("ErrMalformedJSON", func(t *testing.T) {
		body := []byte(`{"chainPem":"x","keyPem":` + jsonString(pki.Leaf.KeyPEM))
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/bad", Body: body, Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("NothingStored", func(t *testing.T) {
		c.Get(t, "/api/v1/certificates/bad").ExpectProblem(t, http.StatusNotFound, "not-found")
		var l struct{ Certificates []Certificate }
		c.Get(t, "/api/v1/certificates").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Certificates) != 2 {
			t.Errorf("%d certificates", len(l.Certificates))
		}
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, "/api/v1/certificates/backup").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/certificates/backup").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, "/api/v1/certificates/backup").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/certificates/mail").Expect(t, http.StatusOK)
	})
	t.Run("ErrDomainAdmin", func(t *testing.T) {
		c.MustCreateDomain(t, "example.com")
		c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "boss", "password": "boss-pass-1", "adminRights": "domain"})
		boss := c.As("boss@example.com", "boss-pass-1")
		for _, r := range []Request{
			{Method: http.MethodGet, Path: "/api/v1/certificates"},
			{Method: http.MethodGet, Path: "/api/v1/certificates/mail"},
			{Method: http.MethodPut, Path: "/api/v1/certificates/mail", Body: importBody(t, pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, false)},
			{Method: http.MethodDelete, Path: "/api/v1/certificates/mail"},
		} {
			boss.Do(t, r).ExpectProblem(t, http.StatusForbidden, "forbidden")
		}
		var got Certificate
		c.Get(t, "/api/v1/certificates/mail").Expect(t, http.StatusOK).JSON(t, &got)
		if got.Fingerprint != pki.Leaf2.Fingerprint {
			t.Error("a domain administrator changed a certificate")
		}
	})
	t.Run("ErrAnonymous", func(t *testing.T) {
		c.Anonymous().Get(t, "/api/v1/certificates").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("NoKeyInLog", func(t *testing.T) {
		assertNoKeyInLog(t, env)
		if !strings.Contains(env.Log.String(), "certificate imported") {
			t.Error("the import was not logged at all")
		}
	})
}

// TestCertificateNoSealKey checks that a node that cannot seal keys
// refuses an import instead of storing the key in the clear.
func TestCertificateNoSealKey(t *testing.T) {
	env := MustOpenEnv(t, WithServiceOptions(func(o *service.Options) { o.SealKey = nil }))
	keySecrets(env.Admin)
	env.Admin.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/certificates/mail",
		Body: importBody(t, pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, false)}).ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
	if cs, err := env.Svc.Certificates(service.SystemContext(context.Background(), "test")); err != nil || len(cs) != 0 {
		t.Errorf("certificates %v, %v", cs, err)
	}
	assertNoKeyInLog(t, env)
}

func equalCert(a, b Certificate) bool {
	return a.Name == b.Name && a.Default == b.Default && a.Subject == b.Subject && a.Issuer == b.Issuer &&
		slices.Equal(a.SANs, b.SANs) && a.NotBefore.Equal(b.NotBefore) && a.NotAfter.Equal(b.NotAfter) &&
		a.Fingerprint == b.Fingerprint && a.ChainPEM == b.ChainPEM
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
