package nodeauth_test

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/nodeauth"
)

var (
	key   = nodeauth.Key("test-cluster-secret")
	epoch = time.Unix(1_735_787_045, 0)
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// signed returns a request signed by node2 at the time of c.
func signed(t *testing.T, c *clock, k []byte, method, target string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://127.0.0.1:8080"+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	s := &nodeauth.Signer{Key: k, Node: "node2", Now: c.Now}
	if err := s.Sign(req, body); err != nil {
		t.Fatal(err)
	}
	return req
}

// bodyOf returns the body function Verify reads.
func bodyOf(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }

func mustVerifier(c *clock) *nodeauth.Verifier {
	v := nodeauth.NewVerifier(key)
	v.Now = c.Now
	return v
}

func TestVerify(t *testing.T) {
	body := []byte(`{"failures":[]}`)
	target := "/internal/v1/screening/failures?x=1&y=%2F"
	t.Run("OK", func(t *testing.T) {
		c := &clock{epoch}
		req := signed(t, c, key, http.MethodPost, target, body)
		node, err := mustVerifier(c).Verify(req, bodyOf(body))
		if err != nil || node != "node2" {
			t.Fatalf("Verify = %q, %v", node, err)
		}
		if !strings.HasPrefix(req.Header.Get("Authorization"), "MC-HMAC-SHA256 ") {
			t.Errorf("Authorization %q", req.Header.Get("Authorization"))
		}
	})
	t.Run("NoBody", func(t *testing.T) {
		c := &clock{epoch}
		req := signed(t, c, key, http.MethodGet, "/internal/v1/info", nil)
		if _, err := mustVerifier(c).Verify(req, bodyOf(nil)); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name   string
		change func(*http.Request) []byte // returns the body the server sees
		want   error
	}{
		{"ErrWrongKey", nil, nodeauth.ErrBadSignature},
		{"ErrBodyChanged", func(*http.Request) []byte { return []byte(`{"failures":[{}]}`) }, nodeauth.ErrBadSignature},
		{"ErrPathChanged", func(r *http.Request) []byte { r.URL.Path = "/internal/v1/usage"; return body }, nodeauth.ErrBadSignature},
		{"ErrQueryChanged", func(r *http.Request) []byte { r.URL.RawQuery = "x=2&y=%2F"; return body }, nodeauth.ErrBadSignature},
		{"ErrMethodChanged", func(r *http.Request) []byte { r.Method = http.MethodPut; return body }, nodeauth.ErrBadSignature},
		{"ErrNodeChanged", func(r *http.Request) []byte { r.Header.Set(nodeauth.HeaderNode, "node3"); return body }, nodeauth.ErrBadSignature},
		{"ErrNonceChanged", func(r *http.Request) []byte {
			r.Header.Set(nodeauth.HeaderNonce, "AAAAAAAAAAAAAAAAAAAAAAAA")
			return body
		}, nodeauth.ErrBadSignature},
		{"ErrTimestampChanged", func(r *http.Request) []byte {
			r.Header.Set(nodeauth.HeaderTimestamp, strconv.FormatInt(epoch.Unix()+1, 10))
			return body
		}, nodeauth.ErrBadSignature},
		{"ErrBearer", func(r *http.Request) []byte { r.Header.Set("Authorization", "Bearer abc"); return body }, nodeauth.ErrUnsigned},
		{"ErrNoNonce", func(r *http.Request) []byte { r.Header.Del(nodeauth.HeaderNonce); return body }, nodeauth.ErrUnsigned},
		{"ErrShortNonce", func(r *http.Request) []byte { r.Header.Set(nodeauth.HeaderNonce, "AAAA"); return body }, nodeauth.ErrUnsigned},
		{"ErrTwoSignatures", func(r *http.Request) []byte {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
			return body
		}, nodeauth.ErrUnsigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{epoch}
			k := key
			if tc.change == nil {
				k = nodeauth.Key("another-cluster-secret")
			}
			req := signed(t, c, k, http.MethodPost, target, body)
			seen := body
			if tc.change != nil {
				seen = tc.change(req)
			}
			if _, err := mustVerifier(c).Verify(req, bodyOf(seen)); !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("Window", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			skew time.Duration // verifier clock minus signer clock
			want error
		}{
			{"OKEdgeOld", 30 * time.Second, nil},
			{"OKEdgeNew", -30 * time.Second, nil},
			{"ErrTooOld", 31 * time.Second, nodeauth.ErrStale},
			{"ErrTooNew", -31 * time.Second, nodeauth.ErrStale},
			{"ErrAncient", 24 * time.Hour, nodeauth.ErrStale},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req := signed(t, &clock{epoch}, key, http.MethodPost, target, body)
				_, err := mustVerifier(&clock{epoch.Add(tc.skew)}).Verify(req, bodyOf(body))
				if !errors.Is(err, tc.want) {
					t.Fatalf("Verify with skew %s: %v, want %v", tc.skew, err, tc.want)
				}
			})
		}
	})
	t.Run("ErrStaleBodyUnread", func(t *testing.T) {
		req := signed(t, &clock{epoch}, key, http.MethodPost, target, body)
		read := false
		_, err := mustVerifier(&clock{epoch.Add(time.Hour)}).Verify(req, func() ([]byte, error) { read = true; return body, nil })
		if !errors.Is(err, nodeauth.ErrStale) || read {
			t.Fatalf("Verify: %v, body read %v", err, read)
		}
	})
	t.Run("ErrBody", func(t *testing.T) {
		c := &clock{epoch}
		req := signed(t, c, key, http.MethodPost, target, body)
		tooLarge := errors.New("too large")
		if _, err := mustVerifier(c).Verify(req, func() ([]byte, error) { return nil, tooLarge }); err != tooLarge {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("ErrNoKey", func(t *testing.T) {
		c := &clock{epoch}
		req := signed(t, c, key, http.MethodPost, target, body)
		v := nodeauth.NewVerifier(nil)
		v.Now = c.Now
		if _, err := v.Verify(req, bodyOf(body)); !errors.Is(err, nodeauth.ErrNoKey) {
			t.Fatalf("Verify: %v", err)
		}
		if err := (&nodeauth.Signer{Node: "node2"}).Sign(req, body); err == nil {
			t.Fatal("Sign without a key succeeded")
		}
	})
}

func TestReplay(t *testing.T) {
	body := []byte(`{}`)
	c := &clock{epoch}
	v := mustVerifier(c)
	req := signed(t, c, key, http.MethodPost, "/internal/v1/usage", body)
	if _, err := v.Verify(req, bodyOf(body)); err != nil {
		t.Fatal(err)
	}
	t.Run("ErrReplay", func(t *testing.T) {
		for _, after := range []time.Duration{0, time.Second, 30 * time.Second} {
			c.t = epoch.Add(after)
			if _, err := v.Verify(req.Clone(req.Context()), bodyOf(body)); !errors.Is(err, nodeauth.ErrReplay) {
				t.Fatalf("replay after %s: %v, want ErrReplay", after, err)
			}
		}
	})
	t.Run("ErrStaleAfterWindow", func(t *testing.T) {
		c.t = epoch.Add(31 * time.Second)
		if _, err := v.Verify(req.Clone(req.Context()), bodyOf(body)); !errors.Is(err, nodeauth.ErrStale) {
			t.Fatalf("replay after the window: %v, want ErrStale", err)
		}
	})
	t.Run("OKFreshNonce", func(t *testing.T) {
		c.t = epoch
		if _, err := v.Verify(signed(t, c, key, http.MethodPost, "/internal/v1/usage", body), bodyOf(body)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrBadSignatureRemembersNothing", func(t *testing.T) {
		c.t = epoch
		v := mustVerifier(c)
		v.MaxNonces = 1
		bad := signed(t, c, nodeauth.Key("another-cluster-secret"), http.MethodPost, "/internal/v1/usage", body)
		for range 3 {
			if _, err := v.Verify(bad.Clone(bad.Context()), bodyOf(body)); !errors.Is(err, nodeauth.ErrBadSignature) {
				t.Fatalf("Verify: %v", err)
			}
		}
		if _, err := v.Verify(signed(t, c, key, http.MethodPost, "/internal/v1/usage", body), bodyOf(body)); err != nil {
			t.Fatalf("a good request after forged ones: %v", err)
		}
	})
}

func TestNonceCacheBound(t *testing.T) {
	body := []byte(`{}`)
	c := &clock{epoch}
	v := mustVerifier(c)
	v.MaxNonces = 3
	var first *http.Request
	for i := range 3 {
		req := signed(t, c, key, http.MethodPost, "/internal/v1/usage", body)
		if i == 0 {
			first = req
		}
		if _, err := v.Verify(req, bodyOf(body)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	t.Run("ErrBusy", func(t *testing.T) {
		c.t = epoch.Add(10 * time.Second)
		if _, err := v.Verify(signed(t, c, key, http.MethodPost, "/internal/v1/usage", body), bodyOf(body)); !errors.Is(err, nodeauth.ErrBusy) {
			t.Fatalf("Verify with a full cache: %v, want ErrBusy", err)
		}
		// A full cache still remembers what it holds.
		if _, err := v.Verify(first.Clone(first.Context()), bodyOf(body)); !errors.Is(err, nodeauth.ErrReplay) {
			t.Fatalf("replay with a full cache: %v, want ErrReplay", err)
		}
	})
	t.Run("OKAfterExpiry", func(t *testing.T) {
		c.t = epoch.Add(31 * time.Second)
		if _, err := v.Verify(signed(t, c, key, http.MethodPost, "/internal/v1/usage", body), bodyOf(body)); err != nil {
			t.Fatalf("Verify once the remembered nonces expired: %v", err)
		}
	})
}

func TestKey(t *testing.T) {
	k := nodeauth.Key("test-cluster-secret")
	if len(k) != 32 || bytes.Equal(k, []byte("test-cluster-secret")) || bytes.Contains(k, []byte("test-cluster-secret")) {
		t.Fatalf("Key = %x", k)
	}
	if !bytes.Equal(k, nodeauth.Key("test-cluster-secret")) || bytes.Equal(k, nodeauth.Key("test-cluster-secreT")) {
		t.Error("Key is not a function of the secret")
	}
	if nodeauth.Key("") != nil {
		t.Error("Key of an empty secret")
	}
}

// TestConstantTimeCompare checks, on the source, that Verify compares
// signatures with hmac.Equal and nowhere with == or bytes.Equal.
func TestConstantTimeCompare(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "nodeauth.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var verify *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Verify" {
			verify = fd
		}
	}
	if verify == nil {
		t.Fatal("no Verify")
	}
	found := false
	ast.Inspect(verify, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CallExpr:
			if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok {
					switch id.Name + "." + sel.Sel.Name {
					case "hmac.Equal":
						found = true
					case "bytes.Equal", "subtle.ConstantTimeCompare":
						t.Errorf("Verify compares with %s.%s", id.Name, sel.Sel.Name)
					}
				}
			}
		case *ast.BinaryExpr:
			for _, side := range []ast.Expr{x.X, x.Y} {
				if id, ok := side.(*ast.Ident); ok && id.Name == "sig" && (x.Op == token.EQL || x.Op == token.NEQ) {
					t.Errorf("Verify compares sig with %s", x.Op)
				}
			}
		}
		return true
	})
	if !found {
		t.Error("Verify does not compare the signature with hmac.Equal")
	}
}
