package dkimsign_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"mailcluster/internal/dkimsign"
)

func TestSignMessage(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	opts := dkimsign.Options("example.com", "s1", priv)
	msg := "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\nX-Other: not signed\r\n\r\nbody\r\n"
	sig, err := dkimsign.SignMessage(opts, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(sig, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(sig, []byte("\r\n")) ||
		!bytes.Contains(sig, []byte("c=relaxed/relaxed")) || !bytes.Contains(sig, []byte("a=ed25519-sha256")) {
		t.Fatalf("signature %q", sig)
	}
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	lookup := func(name string) ([]string, error) {
		if name != "s1._domainkey.example.com" {
			return nil, errors.New("no such name " + name)
		}
		return []string{record}, nil
	}
	for _, tc := range []struct {
		name, msg string
		ok        bool
	}{
		{"OK", msg, true},
		{"UnsignedHeaderChanged", strings.Replace(msg, "not signed", "changed", 1), true},
		{"ErrBodyChanged", strings.Replace(msg, "body", "BODY", 1), false},
		{"ErrFromChanged", strings.Replace(msg, "a@example.com", "x@example.com", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := dkim.VerifyWithOptions(strings.NewReader(string(sig)+tc.msg), &dkim.VerifyOptions{LookupTXT: lookup})
			if err != nil || len(vs) != 1 {
				t.Fatalf("verify: %v, %d verifications", err, len(vs))
			}
			if (vs[0].Err == nil) != tc.ok {
				t.Fatalf("verification error %v, want ok=%v", vs[0].Err, tc.ok)
			}
		})
	}
}

func TestSignMessageErrors(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := dkimsign.SignMessage(dkimsign.Options("example.com", "", priv), strings.NewReader("From: a\r\n\r\n")); err == nil {
		t.Fatal("signed without a selector")
	}
	broken := io.MultiReader(strings.NewReader("From: a@example.com\r\n\r\n"), errReader{})
	if _, err := dkimsign.SignMessage(dkimsign.Options("example.com", "s", priv), broken); err == nil || !strings.Contains(err.Error(), "read message") {
		t.Fatalf("a failing reader: %v", err)
	}
	a, b := dkimsign.Options("d", "s", priv), dkimsign.Options("d", "s", priv)
	a.HeaderKeys[0] = "X"
	if b.HeaderKeys[0] != "From" || dkimsign.HeaderKeys[0] != "From" {
		t.Fatal("options share their header keys")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk gone") }
