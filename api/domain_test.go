package api_test

import (
	"net/http"
	"testing"
)

func TestDomainCRUD(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin

	t.Run("Create", func(t *testing.T) {
		res := c.Send(t, http.MethodPost, "/api/v1/domains", map[string]any{
			"name": "Example.COM", "description": "Test domain", "maxAccounts": 5}).Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != "/api/v1/domains/example.com" {
			t.Errorf("Location = %q", loc)
		}
		var d Domain
		res.JSON(t, &d)
		if d.Name != "example.com" || d.Description != "Test domain" || d.MaxAccounts != 5 || d.AccountCount != 0 {
			t.Errorf("domain = %+v", d)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains", map[string]any{"name": "example.com"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
	})
	t.Run("ErrInvalidName", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains", map[string]any{"name": "bad_name.example"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Get(t, "/api/v1/domains/bad_name.example").ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrMissingName", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"description":"x"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("Get", func(t *testing.T) {
		var d Domain
		c.Get(t, "/api/v1/domains/example.com").Expect(t, http.StatusOK).JSON(t, &d)
		if d.Name != "example.com" || d.MaxAccounts != 5 {
			t.Errorf("domain = %+v", d)
		}
	})
	t.Run("List", func(t *testing.T) {
		var l struct{ Domains []Domain }
		c.Get(t, "/api/v1/domains").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Domains) != 2 || l.Domains[0].Name != "example.com" || l.Domains[1].Name != "localhost" {
			t.Errorf("domains = %+v", l.Domains)
		}
	})
	t.Run("UpdatePartial", func(t *testing.T) {
		var d Domain
		c.Send(t, http.MethodPatch, "/api/v1/domains/example.com", map[string]any{"description": "Changed"}).
			Expect(t, http.StatusOK).JSON(t, &d)
		if d.Description != "Changed" || d.MaxAccounts != 5 {
			t.Errorf("domain = %+v", d)
		}
		c.Send(t, http.MethodPatch, "/api/v1/domains/example.com", map[string]any{"maxAccounts": 0}).
			Expect(t, http.StatusOK).JSON(t, &d)
		if d.Description != "Changed" || d.MaxAccounts != 0 {
			t.Errorf("domain = %+v", d)
		}
	})
	t.Run("ErrUpdateInvalid", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPatch, Path: "/api/v1/domains/example.com", Body: []byte(`{"maxAccounts":-1}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPatch, Path: "/api/v1/domains/example.com", Body: []byte(`{"name":"other.example"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrUpdateNotFound", func(t *testing.T) {
		c.Send(t, http.MethodPatch, "/api/v1/domains/nope.example", map[string]any{"description": "x"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/nope.example").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/example.com").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/domains/example.com").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrDeleteNotFound", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/example.com").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrDeleteOwnDomain", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/localhost?force=true").ExpectProblem(t, http.StatusConflict, "conflict")
	})
}

func TestDomainDeleteForce(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "full.example")
	c.MustCreateAccount(t, "full.example", map[string]any{"mailbox": "a", "password": "aaaa-aaaa-1"})
	c.MustCreateAccount(t, "full.example", map[string]any{"mailbox": "b", "password": "bbbb-bbbb-1"})

	t.Run("ErrHasAccounts", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/full.example").ExpectProblem(t, http.StatusConflict, "conflict")
		c.Delete(t, "/api/v1/domains/full.example?force=false").ExpectProblem(t, http.StatusConflict, "conflict")
		var d Domain
		c.Get(t, "/api/v1/domains/full.example").Expect(t, http.StatusOK).JSON(t, &d)
		if d.AccountCount != 2 {
			t.Errorf("accountCount = %d", d.AccountCount)
		}
	})
	t.Run("ErrBadForce", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodDelete, Path: "/api/v1/domains/full.example?force=maybe", Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("Force", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/full.example?force=true").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/domains/full.example").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/full.example/accounts/a").ExpectProblem(t, http.StatusNotFound, "not-found")
		if n := env.Store.Count("accounts/full.example/"); n != 0 {
			t.Errorf("%d accounts left in the store", n)
		}
	})
}
