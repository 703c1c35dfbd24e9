package xmlapi_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// mustCreateDKIMKey gives domain an Ed25519 DKIM key (selector "mail")
// through the service.
func (e *Env) mustCreateDKIMKey(tb testing.TB, domain string) {
	tb.Helper()
	if _, err := e.Svc.CreateDKIMKey(sys(), domain, "mail", mailcluster.DKIMEd25519SHA256); err != nil {
		tb.Fatal(err)
	}
}

// TestDKIM: CreateDKIMKey (generate and import), GetDKIMKey and
// DeleteDKIMKey; the private key never in an answer, an echo or the log.
func TestDKIM(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	dom := "<Domain>example.com</Domain>"

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	keyB64 := base64.StdEncoding.EncodeToString(der)
	noKey := func(t *testing.T, r *Response) {
		t.Helper()
		if strings.Contains(r.Body, keyB64) {
			t.Fatalf("the answer holds the private key:\n%s", r.Body)
		}
	}

	t.Run("Create", func(t *testing.T) {
		e.Call(t, "GetDKIMKey", dom).MustStatus(t, xmlapi.StatusNotFound)
		r := e.Call(t, "CreateDKIMKey", dom+"<Selector>S1</Selector><Algorithm>ed25519-sha256</Algorithm>").MustOK(t)
		k := r.Result().SelectElement("DKIMKey")
		if k == nil || k.SelectAttrValue("domain", "") != "example.com" || k.SelectAttrValue("selector", "") != "s1" ||
			k.SelectAttrValue("algorithm", "") != "ed25519-sha256" || k.SelectAttrValue("created", "") == "" ||
			r.Text("DKIMKey/DNSName") != "s1._domainkey.example.com" || !strings.HasPrefix(r.Text("DKIMKey/DNSValue"), "v=DKIM1; k=ed25519; p=") {
			t.Fatalf("answer:\n%s", r.Body)
		}
		g := e.Call(t, "GetDKIMKey", dom).MustOK(t)
		if g.Text("DKIMKey/DNSValue") != r.Text("DKIMKey/DNSValue") {
			t.Fatalf("GetDKIMKey:\n%s", g.Body)
		}
	})
	t.Run("Import", func(t *testing.T) {
		body := EnvelopeAttrs(`version="1.0" echo="1"`, "CreateDKIMKey", dom+"<Selector>imp</Selector><PrivateKey>"+keyPEM+"</PrivateKey>")
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body)).MustOK(t)
		noKey(t, r)
		if pk := r.Doc.FindElement("/MDaemon/API/Request/Parameters/PrivateKey"); pk == nil || pk.Text() != "" {
			t.Fatalf("echoed key not emptied:\n%s", r.Body)
		}
		pub := base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
		if r.Text("DKIMKey/DNSValue") != "v=DKIM1; k=ed25519; p="+pub {
			t.Fatalf("imported key's record:\n%s", r.Body)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		index := e.Store.Index()
		e.Call(t, "CreateDKIMKey", dom).MustStatus(t, xmlapi.StatusMissingParameter)
		e.Call(t, "CreateDKIMKey", "<Selector>s</Selector>").MustStatus(t, xmlapi.StatusMissingParameter)
		e.Call(t, "CreateDKIMKey", dom+"<Selector>bad_one</Selector>").MustStatus(t, xmlapi.StatusInvalidParameter)
		e.Call(t, "CreateDKIMKey", dom+"<Selector>s</Selector><Algorithm>dsa</Algorithm>").MustStatus(t, xmlapi.StatusInvalidParameter)
		e.Call(t, "CreateDKIMKey", dom+"<Selector>s</Selector><PrivateKey>junk</PrivateKey>").MustStatus(t, xmlapi.StatusInvalidParameter)
		r := e.Call(t, "CreateDKIMKey", dom+"<Selector>s</Selector><Algorithm>rsa-sha256</Algorithm><PrivateKey>"+keyPEM+"</PrivateKey>")
		r.MustStatus(t, xmlapi.StatusInvalidParameter)
		noKey(t, r)
		e.Call(t, "CreateDKIMKey", "<Domain>nowhere.example</Domain><Selector>s</Selector>").MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "GetDKIMKey", "").MustStatus(t, xmlapi.StatusMissingParameter)
		if e.Store.Index() != index {
			t.Fatal("a refused request changed the store")
		}
	})
	t.Run("Delete", func(t *testing.T) {
		e.Call(t, "DeleteDKIMKey", dom).MustOK(t)
		e.Call(t, "GetDKIMKey", dom).MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "DeleteDKIMKey", dom).MustStatus(t, xmlapi.StatusNotFound)
	})
	if logs := e.Logs.String(); strings.Contains(logs, keyB64[:40]) || !strings.Contains(logs, "dkim key imported") {
		t.Fatal("the log holds the private key, or did not capture the import")
	}
}
