package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAccountSendAs creates an account with sendAs, reads it back,
// replaces, keeps and clears the list; every exchange is validated
// against openapi.yaml.
func TestAccountSendAs(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	const path = "/api/v1/domains/example.com/accounts/alice"
	sendAs := func(r *Response) string {
		t.Helper()
		var a struct {
			SendAs []string `json:"sendAs"`
		}
		r.Expect(t, http.StatusOK).JSON(t, &a)
		if a.SendAs == nil {
			t.Fatalf("sendAs missing or null: %s", r.Body)
		}
		return strings.Join(a.SendAs, " ")
	}

	var created struct {
		SendAs []string `json:"sendAs"`
	}
	c.Send(t, http.MethodPost, "/api/v1/domains/example.com/accounts", map[string]any{
		"mailbox": "alice", "password": "secret-pass-alice", "sendAs": []string{"info@example.com", "@example.com"},
	}).Expect(t, http.StatusCreated).JSON(t, &created)
	if got := strings.Join(created.SendAs, " "); got != "info@example.com @example.com" {
		t.Fatalf("created sendAs = %q", got)
	}
	if got := sendAs(c.Get(t, path)); got != "info@example.com @example.com" {
		t.Fatalf("read sendAs = %q", got)
	}

	t.Run("Replace", func(t *testing.T) {
		if got := sendAs(c.Send(t, http.MethodPatch, path, map[string]any{"sendAs": []string{"sales@example.com"}})); got != "sales@example.com" {
			t.Fatalf("sendAs = %q", got)
		}
		if got := sendAs(c.Get(t, path)); got != "sales@example.com" {
			t.Fatalf("read sendAs = %q", got)
		}
	})
	t.Run("AbsentKeeps", func(t *testing.T) {
		if got := sendAs(c.Send(t, http.MethodPatch, path, map[string]any{"fullName": "Alice"})); got != "sales@example.com" {
			t.Fatalf("sendAs = %q after an update without it", got)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		// Not an address: the spec's pattern refuses it too.
		c.Do(t, Request{Method: http.MethodPatch, Path: path, Body: []byte(`{"sendAs":["example.com"]}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if got := sendAs(c.Get(t, path)); got != "sales@example.com" {
			t.Fatalf("sendAs = %q after a refused update", got)
		}
	})
	t.Run("EmptyClears", func(t *testing.T) {
		if got := sendAs(c.Send(t, http.MethodPatch, path, map[string]any{"sendAs": []string{}})); got != "" {
			t.Fatalf("sendAs = %q, want none", got)
		}
	})
	t.Run("OthersHaveEmptyList", func(t *testing.T) {
		if got := sendAs(c.Get(t, "/api/v1/domains/localhost/accounts/admin")); got != "" {
			t.Fatalf("admin sendAs = %q", got)
		}
	})
}
