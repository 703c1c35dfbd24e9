package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestAccountImportedHash: an account created with passwordHash logs in
// with the password behind it, a PATCH with passwordHash changes it, the
// hash is never answered nor logged, and bad hashes (malformed, cost below
// 10, given with a password) are refused with nothing written.
func TestAccountImportedHash(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	const base = "/api/v1/domains/example.com/accounts"
	hash := func(pw string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		c.Secret(string(h))
		c.Secret(string(h[7:])) // the salt and hash without the prefix
		return string(h)
	}
	good := hash("imported-pass-1", 10)
	c.Secret("imported-pass-1")

	t.Run("OK", func(t *testing.T) {
		c.Send(t, http.MethodPost, base, map[string]any{"mailbox": "imp", "passwordHash": good, "adminRights": "domain"}).
			Expect(t, http.StatusCreated)
		c.As("imp@example.com", "imported-pass-1").Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		c.As("imp@example.com", "wrong-pass-123").Get(t, "/api/v1/node").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		c.Get(t, base+"/imp").Expect(t, http.StatusOK)
	})
	t.Run("Update", func(t *testing.T) {
		next := hash("second-pass-1", 10)
		c.Secret("second-pass-1")
		c.Send(t, http.MethodPatch, base+"/imp", map[string]any{"passwordHash": next}).Expect(t, http.StatusOK)
		c.As("imp@example.com", "second-pass-1").Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		c.As("imp@example.com", "imported-pass-1").Get(t, "/api/v1/node").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("DomainAdmin", func(t *testing.T) {
		// A domain administrator sets hashes in its own domain only.
		imp := c.As("imp@example.com", "second-pass-1")
		imp.Send(t, http.MethodPost, base, map[string]any{"mailbox": "byadmin", "passwordHash": good}).Expect(t, http.StatusCreated)
		c.MustCreateDomain(t, "other.example")
		imp.Send(t, http.MethodPost, "/api/v1/domains/other.example/accounts", map[string]any{"mailbox": "x", "passwordHash": good}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
	})
	low := hash("imported-pass-1", 9)
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"CostBelow10", map[string]any{"mailbox": "bad", "passwordHash": low}},
		{"NotBcrypt", map[string]any{"mailbox": "bad", "passwordHash": "imported-pass-1"}},
		{"OtherVersion", map[string]any{"mailbox": "bad", "passwordHash": "$2x$" + good[4:]}},
		{"BadCharacter", map[string]any{"mailbox": "bad", "passwordHash": good[:59] + "!"}},
		{"Both", map[string]any{"mailbox": "bad", "passwordHash": good, "password": "imported-pass-1"}},
	} {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.body)
			p := c.Do(t, Request{Method: http.MethodPost, Path: base, Body: b, Invalid: true}).ExpectProblem(t, http.StatusBadRequest, "invalid")
			if !strings.Contains(strings.ToLower(p.Detail), "password") {
				t.Errorf("detail %q does not name the field", p.Detail)
			}
			c.Get(t, base+"/bad").ExpectProblem(t, http.StatusNotFound, "not-found")
			b, _ = json.Marshal(map[string]any{"passwordHash": tc.body["passwordHash"]})
			if tc.name != "Both" && tc.name != "Neither" {
				c.Do(t, Request{Method: http.MethodPatch, Path: base + "/imp", Body: b, Invalid: true}).ExpectProblem(t, http.StatusBadRequest, "invalid")
			}
		})
	}
	c.As("imp@example.com", "second-pass-1").Get(t, "/api/v1/node").Expect(t, http.StatusOK) // no refused PATCH changed it
	for _, h := range []string{good, good[7:], low} {
		if strings.Contains(env.Log.String(), h) {
			t.Fatal("the log holds a password hash")
		}
	}
}
