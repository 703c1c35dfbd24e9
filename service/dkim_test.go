package service_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	miekgdns "github.com/miekg/dns"

	"mailcluster"
	"mailcluster/internal/dkimsign"
	"mailcluster/internal/dnstest"
	"mailcluster/schema"
	"mailcluster/service"
)

const dkimSecret = "dkim-test-secret-0123456789"

// dkimEnv is a primary with a seal key, domains example.com and other.com,
// and the caller contexts of the node, of the domain administrator of
// example.com and of a plain user of example.com.
type dkimEnv struct {
	svc               *service.Service
	st                mailcluster.Store
	log               *bytes.Buffer // everything the service logged
	opts              service.Options
	ctx, dctx, userCx context.Context
}

func mustOpenDKIMEnv(t *testing.T) dkimEnv {
	t.Helper()
	var logBuf bytes.Buffer
	e := dkimEnv{log: &logBuf}
	svc, st := MustOpenService(t, nil, func(o *service.Options) { o.SealKey = mailcluster.SealKey(dkimSecret); e.opts = *o })
	// A service over the same store that logs into logBuf.
	e.svc = service.New(st, mailcluster.StaticLeadership{Self: primaryRef}, slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})), e.opts)
	e.st = st
	e.ctx = service.SystemContext(context.Background(), "test")
	for _, d := range []string{"example.com", "other.com"} {
		if _, err := svc.CreateDomain(e.ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
	}
	e.dctx = service.NewContextWithCaller(e.ctx, &mailcluster.Account{Domain: "example.com", Mailbox: "dadmin", AdminRights: mailcluster.AdminDomain})
	e.userCx = service.NewContextWithCaller(e.ctx, &mailcluster.Account{Domain: "example.com", Mailbox: "alice"})
	return e
}

// refused runs a call that must fail with code and change nothing.
func (e dkimEnv) refused(t *testing.T, code string, call func() error) {
	t.Helper()
	before := e.st.Index()
	wantCode(t, call(), code)
	if e.st.Index() != before {
		t.Fatalf("a refused call changed the store (index %d -> %d)", before, e.st.Index())
	}
}

func keyPEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestDKIMKeys(t *testing.T) {
	e := mustOpenDKIMEnv(t)
	t.Run("CreateRSA", func(t *testing.T) {
		k, err := e.svc.CreateDKIMKey(e.ctx, "Example.COM", " Mail2026 ", "")
		if err != nil {
			t.Fatal(err)
		}
		if k.Domain != "example.com" || k.Selector != "mail2026" || k.Algorithm != mailcluster.DKIMRSASHA256 || k.SealedKey != "" || k.PublicKey == "" {
			t.Fatalf("key = %+v", k)
		}
		kv, ok := e.st.Get(schema.DKIMKey("example.com"))
		if !ok || !strings.Contains(string(kv.Value), `"sealedKey"`) || strings.Contains(string(kv.Value), "PRIVATE KEY") {
			t.Fatalf("stored record: %s", kv.Value)
		}
		got, err := e.svc.DKIMKey(e.dctx, "example.com")
		if err != nil || got.PublicKey != k.PublicKey || got.SealedKey != "" {
			t.Fatalf("read = %+v, %v", got, err)
		}
		name, value := got.TXTRecord()
		if name != "mail2026._domainkey.example.com" || !strings.HasPrefix(value, "v=DKIM1; k=rsa; p=") {
			t.Fatalf("TXT %s %s", name, value)
		}
		signer, ok := mustLocal(e.svc).DKIMSigner("example.com")
		if !ok {
			t.Fatal("no signer")
		}
		if pub := signer.Signer.Public().(*rsa.PublicKey); pub.N.BitLen() != 2048 {
			t.Fatalf("generated RSA key has %d bits", pub.N.BitLen())
		}
	})
	t.Run("DomainAdminEd25519", func(t *testing.T) {
		k, err := e.svc.CreateDKIMKey(e.dctx, "example.com", "ed", mailcluster.DKIMEd25519SHA256)
		if err != nil || k.Algorithm != mailcluster.DKIMEd25519SHA256 || k.Selector != "ed" {
			t.Fatalf("replace with Ed25519 = %+v, %v", k, err)
		}
		if _, v := k.TXTRecord(); !strings.HasPrefix(v, "v=DKIM1; k=ed25519; p=") {
			t.Fatalf("TXT %s", v)
		}
	})
	t.Run("Import", func(t *testing.T) {
		rk, _ := rsa.GenerateKey(rand.Reader, 1024)
		k, err := e.svc.ImportDKIMKey(e.ctx, "other.com", "imp", keyPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)))
		if err != nil || k.Algorithm != mailcluster.DKIMRSASHA256 {
			t.Fatalf("import = %+v, %v", k, err)
		}
		s, ok := mustLocal(e.svc).DKIMSigner("other.com")
		if !ok || !s.Signer.Public().(*rsa.PublicKey).Equal(&rk.PublicKey) || s.Selector != "imp" || s.Domain != "other.com" {
			t.Fatal("the signer does not hold the imported key")
		}
		_, ek, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(ek)
		if k, err := e.svc.ImportDKIMKey(e.ctx, "other.com", "ed2", keyPEM(t, "PRIVATE KEY", der)); err != nil || k.Algorithm != mailcluster.DKIMEd25519SHA256 {
			t.Fatalf("import Ed25519 = %+v, %v", k, err)
		}
	})
	t.Run("ErrInput", func(t *testing.T) {
		rk, _ := rsa.GenerateKey(rand.Reader, 1024)
		good := keyPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
		e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateDKIMKey(e.ctx, "example.com", "bad_sel", "")) })
		e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateDKIMKey(e.ctx, "example.com", "", "")) })
		e.refused(t, mailcluster.EINVALID, func() error {
			return errOf(e.svc.CreateDKIMKey(e.ctx, "example.com", strings.Repeat("a", 64), ""))
		})
		e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateDKIMKey(e.ctx, "example.com", "s", "rsa-sha1")) })
		e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.ImportDKIMKey(e.ctx, "example.com", "s", "not pem")) })
		e.refused(t, mailcluster.EINVALID, func() error {
			return errOf(e.svc.ImportDKIMKey(e.ctx, "example.com", "s", keyPEM(t, "PRIVATE KEY", []byte("junk"))))
		})
		e.refused(t, mailcluster.EINVALID, func() error {
			return errOf(e.svc.ImportDKIMKey(e.ctx, "example.com", "s", keyPEM(t, "CERTIFICATE", []byte("junk"))))
		})
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.ImportDKIMKey(e.ctx, "example.com", "s", good+strings.Repeat(" ", 16<<10)))
		})
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.ImportDKIMKey(e.ctx, "nowhere.com", "s", good)) })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return e.svc.DeleteDKIMKey(e.ctx, "nowhere.com") })
		e.refused(t, mailcluster.EINVALID, func() error { return e.svc.DeleteDKIMKey(e.ctx, "bad domain") })
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.CreateDKIMKey(e.dctx, "other.com", "s", "")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return e.svc.DeleteDKIMKey(e.dctx, "other.com") })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.DKIMKey(e.dctx, "other.com")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.CreateDKIMKey(e.userCx, "example.com", "s", "")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.DKIMKey(e.userCx, "example.com")) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.CreateDKIMKey(context.Background(), "example.com", "s", ""))
		})
		e.refused(t, mailcluster.EUNAUTHORIZED, func() error {
			return errOf(e.svc.DKIMKey(service.Anonymous(context.Background()), "example.com"))
		})
	})
	t.Run("ErrSecondary", func(t *testing.T) {
		sec := service.New(e.st, &fakeLeadership{role: mailcluster.RoleSecondary, primary: primaryRef, known: true},
			slog.New(slog.DiscardHandler), e.opts)
		e.refused(t, mailcluster.EREADONLY, func() error { return errOf(sec.CreateDKIMKey(e.ctx, "example.com", "s", "")) })
		rk, _ := rsa.GenerateKey(rand.Reader, 1024)
		e.refused(t, mailcluster.EREADONLY, func() error {
			return errOf(sec.ImportDKIMKey(e.ctx, "example.com", "s", keyPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))))
		})
		e.refused(t, mailcluster.EREADONLY, func() error { return sec.DeleteDKIMKey(e.dctx, "example.com") })
		// Reads and signing work on a secondary, with the same key.
		if k, err := sec.DKIMKey(e.dctx, "example.com"); err != nil || k.Selector != "ed" {
			t.Fatalf("read on a secondary = %+v, %v", k, err)
		}
		a, _ := mustLocal(sec).DKIMSigner("example.com")
		b, _ := mustLocal(e.svc).DKIMSigner("example.com")
		if a == nil || b == nil || !a.Signer.Public().(ed25519.PublicKey).Equal(b.Signer.Public()) {
			t.Fatal("a secondary does not sign with the primary's key")
		}
	})
	t.Run("ErrNoSealKey", func(t *testing.T) {
		opts := e.opts
		opts.SealKey = nil
		nokey := service.New(e.st, mailcluster.StaticLeadership{Self: primaryRef}, slog.New(slog.DiscardHandler), opts)
		e.refused(t, mailcluster.EUNAVAILABLE, func() error { return errOf(nokey.CreateDKIMKey(e.ctx, "example.com", "s", "")) })
		if _, ok := mustLocal(nokey).DKIMSigner("example.com"); ok {
			t.Fatal("a node without the seal key signs")
		}
	})
	t.Run("Delete", func(t *testing.T) {
		if err := e.svc.DeleteDKIMKey(e.dctx, "example.com"); err != nil {
			t.Fatal(err)
		}
		if _, ok := mustLocal(e.svc).DKIMSigner("example.com"); ok {
			t.Fatal("signer after the key was deleted")
		}
		_, err := e.svc.DKIMKey(e.ctx, "example.com")
		wantCode(t, err, mailcluster.ENOTFOUND)
		e.refused(t, mailcluster.ENOTFOUND, func() error { return e.svc.DeleteDKIMKey(e.ctx, "example.com") })
	})
	t.Run("DomainDeletion", func(t *testing.T) {
		if _, ok := e.st.Get(schema.DKIMKey("other.com")); !ok {
			t.Fatal("other.com has no key to delete")
		}
		if err := e.svc.DeleteDomain(e.ctx, "other.com", true); err != nil {
			t.Fatal(err)
		}
		if kvs := e.st.List(schema.PrefixDKIM, "", 0); len(kvs) != 0 {
			t.Fatalf("keys left after the domain deletion: %v", kvs)
		}
	})
	t.Run("NoSecretInLog", func(t *testing.T) {
		if strings.Contains(e.log.String(), "PRIVATE") || strings.Contains(e.log.String(), "sealedKey") {
			t.Fatal("the log holds key material")
		}
		if !strings.Contains(e.log.String(), "dkim key created") {
			t.Fatal("the test log captured nothing")
		}
	})
}

// TestDKIMSignerCache checks that the signer follows the record: a
// replaced key signs at once, a damaged record signs nothing.
func TestDKIMSignerCache(t *testing.T) {
	e := mustOpenDKIMEnv(t)
	local := mustLocal(e.svc)
	if _, ok := local.DKIMSigner("example.com"); ok {
		t.Fatal("signer without a key")
	}
	if _, err := e.svc.CreateDKIMKey(e.ctx, "example.com", "one", mailcluster.DKIMEd25519SHA256); err != nil {
		t.Fatal(err)
	}
	a, ok := local.DKIMSigner("EXAMPLE.com")
	if !ok || a.Selector != "one" || a.Domain != "example.com" {
		t.Fatalf("signer for %s with %s", a.Domain, a.Selector)
	}
	if want := []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version", "Content-Type", "List-Id"}; strings.Join(a.HeaderKeys, ",") != strings.Join(want, ",") ||
		a.HeaderCanonicalization != dkim.CanonicalizationRelaxed || a.BodyCanonicalization != dkim.CanonicalizationRelaxed {
		t.Fatalf("options: header keys %v, canonicalization %s/%s", a.HeaderKeys, a.HeaderCanonicalization, a.BodyCanonicalization)
	}
	a.HeaderKeys[0] = "X-Changed" // a caller's change does not reach the next caller
	if _, err := e.svc.CreateDKIMKey(e.ctx, "example.com", "two", mailcluster.DKIMEd25519SHA256); err != nil {
		t.Fatal(err)
	}
	b, ok := local.DKIMSigner("example.com")
	if !ok || b.Selector != "two" || b.Signer.Public().(ed25519.PublicKey).Equal(a.Signer.Public()) || b.HeaderKeys[0] != "From" {
		t.Fatalf("signer after the key changed: ok=%v, selector %s, header keys %v", ok, b.Selector, b.HeaderKeys)
	}
	// Signers running while the key changes see one key or the other.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if o, ok := local.DKIMSigner("example.com"); !ok || (o.Selector != "two" && o.Selector != "three") {
					t.Error("no signer, or an unknown one, while the key changed")
					return
				}
			}
		}()
	}
	if _, err := e.svc.CreateDKIMKey(e.ctx, "example.com", "three", mailcluster.DKIMEd25519SHA256); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if o, _ := local.DKIMSigner("example.com"); o == nil || o.Selector != "three" {
		t.Fatal("the signer did not follow the last change")
	}
	// A record written by another writer, sealed for another domain.
	kv, _ := e.st.Get(schema.DKIMKey("example.com"))
	if _, err := e.st.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.DKIMKey("other.com"), Value: kv.Value}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := local.DKIMSigner("other.com"); ok {
		t.Fatal("a record copied from another domain signs")
	}
	if !strings.Contains(e.log.String(), "dkim key unusable") {
		t.Fatal("the unusable key was not logged")
	}
}

// TestDKIMSignVerify signs with the service's key through dkimsign and
// verifies with go-msgauth, whose key lookup asks a DNS server on
// loopback serving the TXT record the service says to publish.
func TestDKIMSignVerify(t *testing.T) {
	e := mustOpenDKIMEnv(t)
	dnsSrv := dnstest.Start(t)
	lookup := func(name string) ([]string, error) { return lookupTXT(dnsSrv.Addr, name) }
	for _, alg := range []string{mailcluster.DKIMRSASHA256, mailcluster.DKIMEd25519SHA256} {
		t.Run(alg, func(t *testing.T) {
			k, err := e.svc.CreateDKIMKey(e.ctx, "example.com", "sel", alg)
			if err != nil {
				t.Fatal(err)
			}
			dnsSrv.SetTXT(k.TXTRecord())
			opts, ok := mustLocal(e.svc).DKIMSigner("example.com")
			if !ok {
				t.Fatal("no signer")
			}
			msg := "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n" +
				"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello Bob.\r\n"
			sig, err := dkimsign.SignMessage(opts, strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(sig, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(sig, []byte("\r\n")) {
				t.Fatalf("signature field %q", sig)
			}
			verify := func(m string) error {
				vs, err := dkim.VerifyWithOptions(strings.NewReader(string(sig)+m), &dkim.VerifyOptions{LookupTXT: lookup})
				if err != nil {
					return err
				}
				if len(vs) != 1 || vs[0].Domain != "example.com" {
					t.Fatalf("verifications = %+v", vs)
				}
				return vs[0].Err
			}
			queries := dnsSrv.Queries()
			if err := verify(msg); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if dnsSrv.Queries() == queries {
				t.Fatal("the verifier did not ask the DNS server")
			}
			if err := verify(strings.Replace(msg, "Hello Bob.", "Hello Eve.", 1)); err == nil {
				t.Fatal("a changed body verified")
			}
			if err := verify(strings.Replace(msg, "Subject: hello", "Subject: hullo", 1)); err == nil {
				t.Fatal("a changed subject verified")
			}
			// Relaxed canonicalization: whitespace changes in transit verify.
			if err := verify(strings.Replace(msg, "Subject: hello", "Subject:   hello", 1)); err != nil {
				t.Fatalf("relaxed header canonicalization: %v", err)
			}
		})
	}
}

// lookupTXT asks the DNS server at addr for the TXT records of name (UDP,
// then TCP when the answer was truncated) and returns each record's
// strings joined, as net.LookupTXT does.
func lookupTXT(addr, name string) ([]string, error) {
	m := new(miekgdns.Msg)
	m.SetQuestion(miekgdns.Fqdn(name), miekgdns.TypeTXT)
	m.SetEdns0(4096, false)
	c := &miekgdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, addr)
	}
	if err != nil {
		return nil, err
	}
	if r.Rcode != miekgdns.RcodeSuccess {
		return nil, fmt.Errorf("lookup %s: %s", name, miekgdns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*miekgdns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, nil
}
