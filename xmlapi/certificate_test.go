package xmlapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// importParams returns the <Parameters> content of ImportCertificate.
func importParams(name, chain, key, extra string) string {
	return "<Name>" + name + "</Name><Certificate>" + chain + "</Certificate><PrivateKey>" + key + "</PrivateKey>" + extra
}

// mustImport imports a certificate through the service.
func (e *Env) mustImport(tb testing.TB, name string, tc testCert, makeDefault bool) {
	tb.Helper()
	if _, err := e.Svc.ImportCertificate(service.SystemContext(context.Background(), "test"), name, tc.ChainPEM, tc.KeyPEM, makeDefault); err != nil {
		tb.Fatal(err)
	}
}

// assertNoKeyInLog fails when the log holds a private key or a sealed one.
func (e *Env) assertNoKeyInLog(t *testing.T) {
	t.Helper()
	logs := e.Logs.String()
	markers := keyMarkers()
	for _, c := range mustLocal(e.Svc).StoredCertificates(true) {
		markers = append(markers, c.SealedKey)
	}
	for _, m := range markers {
		if m != "" && strings.Contains(logs, m) {
			t.Errorf("the log holds key material %q", m)
		}
	}
}

// checkCertificate compares a <Certificate> element with a test certificate.
func checkCertificate(t *testing.T, el *etree.Element, name string, tc testCert, isDefault bool, body string) {
	t.Helper()
	if el == nil {
		t.Fatalf("no Certificate:\n%s", body)
	}
	var sans []string
	for _, s := range el.FindElements("SANs/SAN") {
		sans = append(sans, s.Text())
	}
	leaf := tc.Leaf
	if el.SelectAttrValue("name", "") != name || el.SelectAttrValue("default", "") != mailcluster.FormatFlag(isDefault) ||
		el.SelectAttrValue("fingerprint", "") != tc.Fingerprint ||
		el.SelectAttrValue("notAfter", "") != leaf.NotAfter.UTC().Format(time.RFC3339) ||
		el.SelectAttrValue("notBefore", "") != leaf.NotBefore.UTC().Format(time.RFC3339) ||
		el.SelectElement("Subject") == nil || el.SelectElement("Subject").Text() != leaf.Subject.String() ||
		el.SelectElement("Issuer") == nil || el.SelectElement("Issuer").Text() != leaf.Issuer.String() ||
		strings.Join(sans, ",") != strings.Join(leaf.DNSNames, ",") {
		t.Fatalf("certificate %s (%s) does not match:\n%s", name, tc.Fingerprint, body)
	}
}

func TestImportCertificate(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "ImportCertificate", importParams("mail", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, "")).MustOK(t)
		checkCertificate(t, r.Result().SelectElement("Certificate"), "mail", pki.Leaf, true, r.Body)
		if strings.Contains(r.Body, "CERTIFICATE") {
			t.Errorf("the answer holds the chain:\n%s", r.Body)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		r := e.Call(t, "ImportCertificate", importParams("mail", pki.Leaf2.ChainPEM, pki.Leaf2.KeyPEM, "<Default>No</Default>")).MustOK(t)
		// A replacement keeps the default role.
		checkCertificate(t, r.Result().SelectElement("Certificate"), "mail", pki.Leaf2, true, r.Body)
	})
	t.Run("Default", func(t *testing.T) {
		r := e.Call(t, "ImportCertificate", importParams(" backup ", pki.Inter.ChainPEM, pki.Inter.KeyPEM, "<Default>Yes</Default>")).MustOK(t)
		checkCertificate(t, r.Result().SelectElement("Certificate"), "backup", pki.Inter, true, r.Body)
		c, err := e.Svc.Certificate(service.SystemContext(context.Background(), "test"), "mail")
		if err != nil || c.Default {
			t.Fatalf("mail %+v, %v: still default", c, err)
		}
	})
	t.Run("KeySealed", func(t *testing.T) {
		for _, c := range mustLocal(e.Svc).StoredCertificates(true) {
			key, err := mailcluster.UnsealCertificateKey(sealKey, c)
			want := map[string]string{"mail": pki.Leaf2.KeyPEM, "backup": pki.Inter.KeyPEM}[c.Name]
			// The XML-API trims parameters: the final newline of the PEM goes.
			if err != nil || strings.TrimSpace(string(key)) != strings.TrimSpace(want) {
				t.Fatalf("%s: unseal: %v", c.Name, err)
			}
		}
	})
	t.Run("EchoRedactsKey", func(t *testing.T) {
		body := EnvelopeAttrs(`version="1.0" echo="1"`, "ImportCertificate", importParams("echo", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, ""))
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body)).MustOK(t) // Post checks for key material
		k := r.Doc.FindElement("/MDaemon/API/Request/Parameters/PrivateKey")
		if k == nil || k.Text() != "" || len(k.Child) != 0 {
			t.Fatalf("echoed key not emptied:\n%s", r.Body)
		}
		if c := r.Doc.FindElement("/MDaemon/API/Request/Parameters/Certificate"); c == nil || !strings.Contains(c.Text(), "BEGIN CERTIFICATE") {
			t.Fatalf("echoed chain missing:\n%s", r.Body)
		}
	})
	t.Run("EchoRedactsKeyOnError", func(t *testing.T) {
		body := EnvelopeAttrs(`echo="1"`, "ImportCertificate", importParams("bad", pki.Expired.ChainPEM, pki.Expired.KeyPEM, ""))
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body))
		r.MustStatus(t, xmlapi.StatusInvalidParameter)
		if k := r.Doc.FindElement("/MDaemon/API/Request/Parameters/PrivateKey"); k == nil || k.Text() != "" {
			t.Fatalf("echoed key not emptied:\n%s", r.Body)
		}
	})

	for _, tt := range []struct {
		name, params string
		status       int
		msg          string // a word of the message, "" for any
	}{
		{"ErrNoName", importParams("", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, ""), xmlapi.StatusMissingParameter, "Name"},
		{"ErrBadName", importParams("Bad Name", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, ""), xmlapi.StatusInvalidParameter, "name"},
		{"ErrNoCertificate", "<Name>bad</Name><PrivateKey>" + pki.Leaf.KeyPEM + "</PrivateKey>", xmlapi.StatusInvalidParameter, "PEM"},
		{"ErrNoKey", "<Name>bad</Name><Certificate>" + pki.Leaf.ChainPEM + "</Certificate>", xmlapi.StatusInvalidParameter, "key"},
		{"ErrIssuerFirst", importParams("bad", pki.CAPEM+certPEM(pki.Leaf.Leaf), pki.Leaf.KeyPEM, ""), xmlapi.StatusInvalidParameter, "order"},
		{"ErrOutOfOrder", importParams("bad", certPEM(pki.Inter.Leaf)+pki.CAPEM+pki.InterPEM, pki.Inter.KeyPEM, ""), xmlapi.StatusInvalidParameter, "order"},
		{"ErrKeyMismatch", importParams("bad", pki.Leaf.ChainPEM, pki.OtherKeyPEM, ""), xmlapi.StatusInvalidParameter, "key"},
		{"ErrExpired", importParams("bad", pki.Expired.ChainPEM, pki.Expired.KeyPEM, ""), xmlapi.StatusInvalidParameter, "expired"},
		{"ErrNoSAN", importParams("bad", pki.NoSAN.ChainPEM, pki.NoSAN.KeyPEM, ""), xmlapi.StatusInvalidParameter, "subject alternative name"},
		{"ErrNotPEM", importParams("bad", "not a certificate", pki.Leaf.KeyPEM, ""), xmlapi.StatusInvalidParameter, "PEM"},
		{"ErrKeyNotPEM", importParams("bad", pki.Leaf.ChainPEM, "not a key", ""), xmlapi.StatusInvalidParameter, "key"},
		{"ErrKeyInChain", importParams("bad", pki.Leaf.ChainPEM+pki.Leaf.KeyPEM, pki.Leaf.KeyPEM, ""), xmlapi.StatusInvalidParameter, ""},
		{"ErrBadDefault", importParams("bad", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, "<Default>maybe</Default>"), xmlapi.StatusInvalidParameter, "Default"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := e.Call(t, "ImportCertificate", tt.params).MustStatus(t, tt.status)
			if !strings.Contains(msg, tt.msg) {
				t.Fatalf("message %q does not mention %q", msg, tt.msg)
			}
		})
	}
	t.Run("ErrDomainAdmin", func(t *testing.T) {
		Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin",
			strings.NewReader(Envelope("ImportCertificate", importParams("mail", pki.Leaf.ChainPEM, pki.Leaf.KeyPEM, "")))).
			MustStatus(t, xmlapi.StatusForbidden)
	})
	t.Run("NothingStored", func(t *testing.T) {
		cs, err := e.Svc.Certificates(service.SystemContext(context.Background(), "test"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != "backup,echo,mail" {
			t.Fatalf("certificates %v", names)
		}
		if c, _ := e.Svc.Certificate(service.SystemContext(context.Background(), "test"), "mail"); c.Fingerprint != pki.Leaf2.Fingerprint {
			t.Fatal("a refused import changed mail")
		}
	})
	t.Run("NoKeyInLog", func(t *testing.T) { e.assertNoKeyInLog(t) })
}

func TestGetCertificates(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})

	t.Run("Empty", func(t *testing.T) {
		r := e.Call(t, "GetCertificates", "").MustOK(t)
		if l := r.Result().SelectElement("Certificates"); l == nil || len(l.ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	e.mustImport(t, "mail", pki.Leaf, false)
	e.mustImport(t, "backup", pki.Inter, false)

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "GetCertificates", "").MustOK(t)
		cs := r.Result().FindElements("Certificates/Certificate")
		if len(cs) != 2 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		checkCertificate(t, cs[0], "backup", pki.Inter, false, r.Body)
		checkCertificate(t, cs[1], "mail", pki.Leaf, true, r.Body)
	})
	t.Run("ByName", func(t *testing.T) {
		r := e.Call(t, "GetCertificates", "<Name>mail</Name>").MustOK(t)
		cs := r.Result().FindElements("Certificates/Certificate")
		if len(cs) != 1 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		checkCertificate(t, cs[0], "mail", pki.Leaf, true, r.Body)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		msg := e.Call(t, "GetCertificates", "<Name>nothing</Name>").MustStatus(t, xmlapi.StatusNotFound)
		if !strings.Contains(msg, "nothing") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrBadName", func(t *testing.T) {
		e.Call(t, "GetCertificates", "<Name>../etc</Name>").MustStatus(t, xmlapi.StatusInvalidParameter)
	})
	t.Run("ErrDomainAdmin", func(t *testing.T) {
		Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope("GetCertificates", ""))).
			MustStatus(t, xmlapi.StatusForbidden)
	})
}

func TestDeleteCertificate(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})
	e.mustImport(t, "mail", pki.Leaf, false)

	t.Run("ErrNoName", func(t *testing.T) {
		e.Call(t, "DeleteCertificate", "").MustStatus(t, xmlapi.StatusMissingParameter)
	})
	t.Run("ErrDomainAdmin", func(t *testing.T) {
		Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope("DeleteCertificate", "<Name>mail</Name>"))).
			MustStatus(t, xmlapi.StatusForbidden)
	})
	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "DeleteCertificate", "<Name>mail</Name>").MustOK(t)
		if len(r.Result().ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		if _, err := e.Svc.Certificate(service.SystemContext(context.Background(), "test"), "mail"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("mail still there: %v", err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "DeleteCertificate", "<Name>mail</Name>").MustStatus(t, xmlapi.StatusNotFound)
	})
}
