package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"mailcluster"
)

func TestAccountCRUD(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	const base = "/api/v1/domains/example.com/accounts"

	t.Run("Create", func(t *testing.T) {
		c.Secret("alice-pass-1")
		res := c.Send(t, http.MethodPost, base, map[string]any{
			"mailbox": "Alice", "fullName": "Alice Example", "firstName": "Alice", "lastName": "Example",
			"password": "alice-pass-1", "quotaBytes": 1000, "quotaMessages": 10, "adminRights": "domain"}).
			Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != base+"/alice" {
			t.Errorf("Location = %q", loc)
		}
		var a Account
		res.JSON(t, &a)
		if a.Address != "alice@example.com" || a.Mailbox != "alice" || a.FullName != "Alice Example" ||
			a.QuotaBytes != 1000 || a.QuotaMessages != 10 || a.AdminRights != "domain" || a.Frozen || a.Disabled {
			t.Errorf("account = %+v", a)
		}
		if !strings.HasSuffix(a.MailboxPath, "/example.com/alice/") || !strings.HasPrefix(a.MailboxPath, "/") {
			t.Errorf("mailboxPath = %q", a.MailboxPath)
		}
	})
	t.Run("CreateWithPath", func(t *testing.T) {
		p := mustLocal(env.Svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, "") + "/custom/bob/"
		a := c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "bob", "password": "bob-pass-12",
			"mailboxPath": p, "frozen": true})
		if a.MailboxPath != p || !a.Frozen || a.AdminRights != "none" {
			t.Errorf("account = %+v", a)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		c.Send(t, http.MethodPost, base, map[string]any{"mailbox": "alice", "password": "alice-pass-2"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
	})
	t.Run("ErrDomainNotFound", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains/nope.example/accounts", map[string]any{"mailbox": "x", "password": "xxxx-xxxx-1"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		c.Send(t, http.MethodPost, base, map[string]any{"mailbox": "bad name", "password": "xxxx-xxxx-1"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Send(t, http.MethodPost, base, map[string]any{"mailbox": "short", "password": "short"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		// Without a password: created, and it cannot log in until one is set.
		c.Do(t, Request{Method: http.MethodPost, Path: base, Body: []byte(`{"mailbox":"nopw"}`)}).Expect(t, http.StatusCreated)
		c.As("nopw@example.com", "any-password-1").Get(t, base).Expect(t, http.StatusUnauthorized)
		c.Do(t, Request{Method: http.MethodPost, Path: base, Body: []byte(`{"mailbox":"x","password":"xxxx-xxxx-1","adminRights":"root"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("Get", func(t *testing.T) {
		var a Account
		c.Get(t, base+"/alice").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Address != "alice@example.com" || a.FirstName != "Alice" || a.LastName != "Example" {
			t.Errorf("account = %+v", a)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, base+"/nobody").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/accounts/alice").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("UpdatePartial", func(t *testing.T) {
		var a Account
		c.Send(t, http.MethodPatch, base+"/alice", map[string]any{"fullName": "Alice Changed", "disabled": true}).
			Expect(t, http.StatusOK).JSON(t, &a)
		if a.FullName != "Alice Changed" || !a.Disabled || a.FirstName != "Alice" || a.QuotaBytes != 1000 || a.AdminRights != "domain" {
			t.Errorf("account = %+v", a)
		}
		c.Send(t, http.MethodPatch, base+"/alice", map[string]any{"disabled": false}).Expect(t, http.StatusOK)
	})
	t.Run("UpdatePassword", func(t *testing.T) {
		c.Secret("alice-new-pass")
		alice := c.As("alice@example.com", "alice-pass-1")
		alice.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		c.Send(t, http.MethodPatch, base+"/alice", map[string]any{"password": "alice-new-pass"}).Expect(t, http.StatusOK)
		alice.Get(t, "/api/v1/node").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		c.As("alice@example.com", "alice-new-pass").Get(t, "/api/v1/node").Expect(t, http.StatusOK)
	})
	t.Run("ErrUpdate", func(t *testing.T) {
		c.Send(t, http.MethodPatch, base+"/alice", map[string]any{"password": "short"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPatch, Path: base + "/alice", Body: []byte(`{"quotaBytes":-1}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPatch, Path: base + "/alice", Body: []byte(`{"mailbox":"other"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Send(t, http.MethodPatch, base+"/nobody", map[string]any{"fullName": "x"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrDeleteSelf", func(t *testing.T) {
		c.Delete(t, "/api/v1/domains/localhost/accounts/admin").ExpectProblem(t, http.StatusConflict, "conflict")
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, base+"/alice").Expect(t, http.StatusNoContent)
		c.Get(t, base+"/alice").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, base+"/alice").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}

// TestAccountPaging walks pages with limit and cursor, with and without a
// search term.
func TestAccountPaging(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "paging.example")
	var users, all []string
	for i := 1; i <= 7; i++ {
		m := fmt.Sprintf("user%02d", i)
		c.MustCreateAccount(t, "paging.example", map[string]any{"mailbox": m, "password": "page-pass-1"})
		users = append(users, m)
	}
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("other%d", i)
		c.MustCreateAccount(t, "paging.example", map[string]any{"mailbox": m, "password": "page-pass-1", "lastName": "Staff"})
		all = append(all, m)
	}
	all = append(all, users...) // "other*" sorts before "user*"

	walk := func(t *testing.T, query url.Values) (pages [][]string) {
		t.Helper()
		cursor := ""
		for i := 0; i < 10; i++ {
			q := url.Values{}
			for k, v := range query {
				q[k] = v
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Accounts   []Account
				NextCursor string
			}
			c.Get(t, "/api/v1/domains/paging.example/accounts?"+q.Encode()).Expect(t, http.StatusOK).JSON(t, &page)
			var names []string
			for _, a := range page.Accounts {
				names = append(names, a.Mailbox)
			}
			pages = append(pages, names)
			if page.NextCursor == "" {
				return pages
			}
			cursor = page.NextCursor
		}
		t.Fatal("paging does not end")
		return nil
	}
	flat := func(pages [][]string) []string {
		var out []string
		for _, p := range pages {
			out = append(out, p...)
		}
		return out
	}

	t.Run("Search", func(t *testing.T) {
		pages := walk(t, url.Values{"limit": {"3"}, "search": {"USER"}})
		if len(pages) != 3 || len(pages[0]) != 3 || len(pages[1]) != 3 || len(pages[2]) != 1 {
			t.Fatalf("pages = %v", pages)
		}
		if got := flat(pages); !reflect.DeepEqual(got, users) {
			t.Errorf("accounts = %v, want %v", got, users)
		}
	})
	t.Run("SearchNames", func(t *testing.T) {
		pages := walk(t, url.Values{"limit": {"2"}, "search": {"staff"}})
		if got := flat(pages); !reflect.DeepEqual(got, []string{"other1", "other2", "other3"}) || len(pages) != 2 {
			t.Errorf("pages = %v", pages)
		}
	})
	t.Run("All", func(t *testing.T) {
		pages := walk(t, url.Values{"limit": {"4"}})
		if len(pages) != 3 || len(pages[2]) != 2 {
			t.Fatalf("pages = %v", pages)
		}
		if got := flat(pages); !reflect.DeepEqual(got, all) {
			t.Errorf("accounts = %v, want %v", got, all)
		}
	})
	t.Run("DefaultLimit", func(t *testing.T) {
		pages := walk(t, nil)
		if len(pages) != 1 || len(pages[0]) != 10 {
			t.Errorf("pages = %v", pages)
		}
	})
	t.Run("NoMatch", func(t *testing.T) {
		res := c.Get(t, "/api/v1/domains/paging.example/accounts?search=zzz").Expect(t, http.StatusOK)
		if !strings.Contains(string(res.Body), `"accounts":[]`) {
			t.Errorf("body = %s", res.Body)
		}
	})
	t.Run("ErrLimit", func(t *testing.T) {
		for _, l := range []string{"0", "1001", "abc"} {
			c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/domains/paging.example/accounts?limit=" + l, Invalid: true}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
	})
	t.Run("ErrDomain", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/nope.example/accounts").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}

// TestPasswordNeverReturned checks every answer about an account for the
// password and its stored bcrypt hash (the client helper also checks
// every response of every test for bcrypt hashes and known passwords).
func TestPasswordNeverReturned(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	const pw = "Very-Secret-Password-42"
	c.Secret(pw)
	c.MustCreateDomain(t, "example.com")
	bodies := map[string][]byte{}
	bodies["create"] = c.Send(t, http.MethodPost, "/api/v1/domains/example.com/accounts",
		map[string]any{"mailbox": "carol", "password": pw, "adminRights": "domain"}).Expect(t, http.StatusCreated).Body

	kv, ok := env.Store.Get("accounts/example.com/carol")
	if !ok {
		t.Fatal("account not stored")
	}
	var stored mailcluster.Account
	if err := json.Unmarshal(kv.Value, &stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored.PasswordHash, "$2") {
		t.Fatalf("stored hash %q is not bcrypt", stored.PasswordHash)
	}

	bodies["get"] = c.Get(t, "/api/v1/domains/example.com/accounts/carol").Expect(t, http.StatusOK).Body
	bodies["list"] = c.Get(t, "/api/v1/domains/example.com/accounts").Expect(t, http.StatusOK).Body
	bodies["patch"] = c.Send(t, http.MethodPatch, "/api/v1/domains/example.com/accounts/carol",
		map[string]any{"fullName": "Carol"}).Expect(t, http.StatusOK).Body
	carol := c.As("carol@example.com", pw)
	bodies["self"] = carol.Get(t, "/api/v1/domains/example.com/accounts/carol").Expect(t, http.StatusOK).Body
	bodies["node"] = carol.Get(t, "/api/v1/node").Expect(t, http.StatusOK).Body
	bodies["adminGet"] = c.Get(t, "/api/v1/domains/localhost/accounts/admin").Expect(t, http.StatusOK).Body

	adminKV, _ := env.Store.Get("accounts/localhost/admin")
	var admin mailcluster.Account
	_ = json.Unmarshal(adminKV.Value, &admin)

	for name, b := range bodies {
		s := string(b)
		for _, secret := range []string{pw, stored.PasswordHash, admin.PasswordHash, adminPassword} {
			if strings.Contains(s, secret) {
				t.Errorf("%s: body contains a password or hash: %s", name, s)
			}
		}
		if k := passwordKey(t, b); k != "" {
			t.Errorf("%s: body has a field %q: %s", name, k, s)
		}
	}
}

// passwordKey returns the first JSON object key anywhere in b that
// mentions a password, "" when there is none.
func passwordKey(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.Contains(strings.ToLower(k), "password") {
					return k
				}
				if k := walk(e); k != "" {
					return k
				}
			}
		case []any:
			for _, e := range x {
				if k := walk(e); k != "" {
					return k
				}
			}
		}
		return ""
	}
	return walk(v)
}
