package api_test

import (
	"fmt"
	"net/http"
	"reflect"
	"testing"
)

func TestAliasCRUD(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/aliases"

	t.Run("Create", func(t *testing.T) {
		res := c.Send(t, http.MethodPost, base, map[string]any{"name": "Sales", "target": "Alice@Example.com"}).
			Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != base+"/sales" {
			t.Errorf("Location = %q", loc)
		}
		var a Alias
		res.JSON(t, &a)
		if want := (Alias{Address: "sales@example.com", Domain: "example.com", Name: "sales", Target: "alice@example.com"}); a != want {
			t.Errorf("alias %+v, want %+v", a, want)
		}
	})
	t.Run("Get", func(t *testing.T) {
		var a Alias
		c.Get(t, base+"/SALES").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Address != "sales@example.com" || a.Target != "alice@example.com" {
			t.Errorf("alias %+v", a)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var a Alias
		c.Send(t, http.MethodPatch, base+"/sales", map[string]any{"target": "bob@example.com"}).Expect(t, http.StatusOK).JSON(t, &a)
		if a.Target != "bob@example.com" || a.Name != "sales" {
			t.Errorf("alias %+v", a)
		}
		c.Get(t, base+"/sales").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Target != "bob@example.com" {
			t.Errorf("read back: alias %+v", a)
		}
	})
	t.Run("OtherDomainTarget", func(t *testing.T) {
		// A global administrator may point an alias at another local domain.
		var a Alias
		c.Send(t, http.MethodPost, base, map[string]any{"name": "zed", "target": "zed@other.example"}).
			Expect(t, http.StatusCreated).JSON(t, &a)
		if a.Target != "zed@other.example" {
			t.Errorf("alias %+v", a)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, base+"/nobody").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/aliases/sales").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/aliases").ExpectProblem(t, http.StatusNotFound, "not-found")
		e.refused(t, c, send(http.MethodPost, "/api/v1/domains/nope.example/aliases", `{"name":"x","target":"alice@example.com"}`),
			http.StatusNotFound, "not-found")
		e.refused(t, c, send(http.MethodPost, base, `{"name":"x","target":"nobody@example.com"}`), http.StatusNotFound, "not-found")
		e.refused(t, c, send(http.MethodPatch, base+"/sales", `{"target":"nobody@example.com"}`), http.StatusNotFound, "not-found")
		e.refused(t, c, send(http.MethodPatch, base+"/nobody", `{"target":"alice@example.com"}`), http.StatusNotFound, "not-found")
		e.refused(t, c, Request{Method: http.MethodDelete, Path: base + "/nobody"}, http.StatusNotFound, "not-found")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.refusedEach(t, c, http.StatusBadRequest, "invalid",
			send(http.MethodPost, base, `{"name":"bad name","target":"alice@example.com"}`),
			send(http.MethodPost, base, `{"name":"x","target":"not an address"}`),
			send(http.MethodPost, base, `{"name":"x","target":"alice@bad_domain"}`),
			invalid(http.MethodPost, base, `{"name":"x"}`),
			invalid(http.MethodPost, base, `{"target":"alice@example.com"}`),
			invalid(http.MethodPost, base, `{"name":"x","target":"alice@example.com","extra":1}`),
			invalid(http.MethodPost, base, `{"name":"x","target":7}`),
			invalid(http.MethodPatch, base+"/sales", `{}`),
			invalid(http.MethodPatch, base+"/sales", `{"name":"other"}`),
			invalid(http.MethodPatch, base+"/sales", `{"target":""}`),
			invalid(http.MethodGet, base+"?limit=0", ""),
			invalid(http.MethodGet, base+"?limit=1001", ""),
			invalid(http.MethodGet, base+"?limit=x", ""))
		var a Alias
		c.Get(t, base+"/sales").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Target != "bob@example.com" {
			t.Errorf("alias %+v after refused changes", a)
		}
		c.Get(t, base+"/x").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrUnsupportedMediaType", func(t *testing.T) {
		e.refused(t, c, Request{Method: http.MethodPost, Path: base, Body: []byte(`name=x`), ContentType: "application/x-www-form-urlencoded", Invalid: true},
			http.StatusUnsupportedMediaType, "unsupported-media-type")
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, base+"/sales").Expect(t, http.StatusNoContent)
		c.Get(t, base+"/sales").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, base+"/sales").ExpectProblem(t, http.StatusNotFound, "not-found")
		// The name is free again, and the target account is untouched.
		c.Get(t, "/api/v1/domains/example.com/accounts/bob").Expect(t, http.StatusOK)
		c.Send(t, http.MethodPost, base, map[string]any{"name": "sales", "target": "carol@example.com"}).Expect(t, http.StatusCreated)
	})
}

// TestAliasLimit checks the most aliases one account may have.
func TestAliasLimit(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/aliases"
	for i := 0; i < 32; i++ {
		c.Send(t, http.MethodPost, base, map[string]any{"name": fmt.Sprintf("a%02d", i), "target": "alice@example.com"}).
			Expect(t, http.StatusCreated)
	}
	p := e.refused(t, c, send(http.MethodPost, base, `{"name":"a32","target":"alice@example.com"}`), http.StatusConflict, "conflict")
	if p.Detail == "" {
		t.Error("no detail")
	}
	// Pointing one of them at the same account again is no change.
	c.Send(t, http.MethodPatch, base+"/a00", map[string]any{"target": "alice@example.com"}).Expect(t, http.StatusOK)
	// Another account still takes aliases; moving one over is refused too.
	c.Send(t, http.MethodPost, base, map[string]any{"name": "b00", "target": "bob@example.com"}).Expect(t, http.StatusCreated)
	e.refused(t, c, send(http.MethodPatch, base+"/b00", `{"target":"alice@example.com"}`), http.StatusConflict, "conflict")
}

func TestAliasPaging(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	var want []string
	for i := 1; i <= 7; i++ {
		name := fmt.Sprintf("alias%02d", i)
		c.Send(t, http.MethodPost, "/api/v1/domains/example.com/aliases", map[string]any{"name": name, "target": "alice@example.com"}).
			Expect(t, http.StatusCreated)
		want = append(want, name)
	}
	c.Send(t, http.MethodPost, "/api/v1/domains/other.example/aliases", map[string]any{"name": "elsewhere", "target": "zed@other.example"}).
		Expect(t, http.StatusCreated)
	pages := walkPages(t, c, "/api/v1/domains/example.com/aliases", 3, "aliases", byName)
	if len(pages) != 3 || len(pages[0]) != 3 || len(pages[2]) != 1 {
		t.Errorf("pages %v", pages)
	}
	if got := flatten(pages); !reflect.DeepEqual(got, want) {
		t.Errorf("aliases %v, want %v", got, want)
	}
	var page struct {
		Aliases    []Alias
		NextCursor string
	}
	c.Get(t, "/api/v1/domains/example.com/aliases").Expect(t, http.StatusOK).JSON(t, &page)
	if len(page.Aliases) != 7 || page.NextCursor != "" {
		t.Errorf("default page %+v", page)
	}
	c.Get(t, "/api/v1/domains/other.example/aliases").Expect(t, http.StatusOK).JSON(t, &page)
	if len(page.Aliases) != 1 || page.Aliases[0].Address != "elsewhere@other.example" {
		t.Errorf("other.example %+v", page)
	}
}

// TestAliasAuthz: a domain administrator manages the aliases of its own
// domain only, and only towards its own accounts; mail users have no API
// access.
func TestAliasAuthz(t *testing.T) {
	e := mustOpenAddressEnv(t)
	mustSeedAddresses(t, e.Admin, "example.com", "alice")
	const base = "/api/v1/domains/example.com/aliases"
	d := e.DAdmin

	t.Run("OwnDomain", func(t *testing.T) {
		d.Send(t, http.MethodPost, base, map[string]any{"name": "help", "target": "carol@example.com"}).Expect(t, http.StatusCreated)
		d.Get(t, base+"/help").Expect(t, http.StatusOK)
		d.Get(t, base).Expect(t, http.StatusOK)
		d.Send(t, http.MethodPatch, base+"/help", map[string]any{"target": "bob@example.com"}).Expect(t, http.StatusOK)
		d.Delete(t, base+"/help").Expect(t, http.StatusNoContent)
	})
	t.Run("ErrOtherDomain", func(t *testing.T) {
		o := e.OtherDAdmin
		e.refusedEach(t, o, http.StatusForbidden, "forbidden",
			Request{Method: http.MethodGet, Path: base},
			Request{Method: http.MethodGet, Path: base + "/sales"},
			send(http.MethodPost, base, `{"name":"evil","target":"alice@example.com"}`),
			send(http.MethodPatch, base+"/sales", `{"target":"bob@example.com"}`),
			Request{Method: http.MethodDelete, Path: base + "/sales"},
			// Its own alias may not point into example.com either.
			send(http.MethodPost, "/api/v1/domains/other.example/aliases", `{"name":"evil","target":"alice@example.com"}`))
		var a Alias
		e.Admin.Get(t, base+"/sales").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Target != "alice@example.com" {
			t.Errorf("alias %+v", a)
		}
		e.Admin.Get(t, "/api/v1/domains/other.example/aliases/evil").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrUser", func(t *testing.T) {
		e.refused(t, e.User, Request{Method: http.MethodGet, Path: base}, http.StatusUnauthorized, "unauthorized")
		e.refused(t, e.User, send(http.MethodPost, base, `{"name":"mine","target":"alice@example.com"}`), http.StatusUnauthorized, "unauthorized")
	})
}
