package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Alias is the JSON form of an alias in answers.
type Alias struct {
	Address string `json:"address"`
	Domain  string `json:"domain"`
	Name    string `json:"name"`
	Target  string `json:"target"`
}

// MailingList is the JSON form of a mailing list in answers.
type MailingList struct {
	Address     string `json:"address"`
	Domain      string `json:"domain"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Policy      string `json:"policy"`
	ReplyTo     string `json:"replyTo"`
	Owner       string `json:"owner"`
	MemberCount int    `json:"memberCount"`
}

// ListMember is one member of a mailing list in answers.
type ListMember struct {
	Address string `json:"address,omitempty"`
	Group   string `json:"group,omitempty"`
}

// Group is the JSON form of a group in answers.
type Group struct {
	Domain        string `json:"domain"`
	Name          string `json:"name"`
	Description   string `json:"description"`
	QuotaBytes    int64  `json:"quotaBytes"`
	QuotaMessages int64  `json:"quotaMessages"`
	MemberCount   int    `json:"memberCount"`
}

// mustSeedAddresses creates, in domain, the alias sales delivering to
// mailbox, the group staff with mailbox as its member and the list team
// with mailbox and the group staff as its members.
func mustSeedAddresses(tb testing.TB, c *Client, domain, mailbox string) {
	tb.Helper()
	base := "/api/v1/domains/" + domain
	c.Send(tb, http.MethodPost, base+"/aliases", map[string]any{"name": "sales", "target": mailbox + "@" + domain}).
		Expect(tb, http.StatusCreated)
	c.Send(tb, http.MethodPost, base+"/groups", map[string]any{"name": "staff", "members": []string{mailbox}}).
		Expect(tb, http.StatusCreated)
	c.Send(tb, http.MethodPost, base+"/lists", map[string]any{"name": "team",
		"members": []map[string]string{{"address": mailbox + "@" + domain}, {"group": "staff"}}}).
		Expect(tb, http.StatusCreated)
}

// addressEnv is a node with two domains for the address tests:
//
//	example.com   alice, bob, carol (mail users), dadmin (its domain administrator)
//	other.example zed (a mail user), odadmin (its domain administrator)
type addressEnv struct {
	*Env
	DAdmin, OtherDAdmin, User *Client
}

const addressPassword = "addr-pass-123"

func mustOpenAddressEnv(tb testing.TB) *addressEnv {
	tb.Helper()
	env := MustOpenEnv(tb)
	c := env.Admin
	for _, d := range []struct {
		domain   string
		accounts []string
		admin    string
	}{
		{"example.com", []string{"alice", "bob", "carol"}, "dadmin"},
		{"other.example", []string{"zed"}, "odadmin"},
	} {
		c.MustCreateDomain(tb, d.domain)
		for _, m := range d.accounts {
			c.MustCreateAccount(tb, d.domain, map[string]any{"mailbox": m, "password": addressPassword})
		}
		c.MustCreateAccount(tb, d.domain, map[string]any{"mailbox": d.admin, "password": addressPassword, "adminRights": "domain"})
	}
	return &addressEnv{Env: env,
		DAdmin:      c.As("dadmin@example.com", addressPassword),
		OtherDAdmin: c.As("odadmin@other.example", addressPassword),
		User:        c.As("alice@example.com", addressPassword)}
}

// refused sends r as c and checks the problem it gets, and that the
// store did not change.
func (e *addressEnv) refused(t *testing.T, c *Client, r Request, status int, kind string) Problem {
	t.Helper()
	index := e.Store.Index()
	p := c.Do(t, r).ExpectProblem(t, status, kind)
	if got := e.Store.Index(); got != index {
		t.Errorf("%s %s: store index moved from %d to %d", r.Method, r.Path, index, got)
	}
	return p
}

// refusedEach sends each request as c (a GET without its body), in a
// subtest each, and checks that it is refused with status and problem
// kind, with a detail, changing nothing (refused).
func (e *addressEnv) refusedEach(t *testing.T, c *Client, status int, kind string, rs ...Request) {
	t.Helper()
	for _, r := range rs {
		if r.Method == http.MethodGet {
			r.Body = nil
		}
		t.Run(r.Method+" "+r.Path+" "+string(r.Body), func(t *testing.T) {
			if p := e.refused(t, c, r, status, kind); p.Detail == "" {
				t.Error("no detail")
			}
		})
	}
}

// send builds a JSON request.
func send(method, path, body string) Request {
	return Request{Method: method, Path: path, Body: []byte(body)}
}

// invalid builds a JSON request the spec refuses too.
func invalid(method, path, body string) Request {
	return Request{Method: method, Path: path, Body: []byte(body), Invalid: true}
}

// walkPages reads every page of a paged collection at path with the given
// limit and returns the names each page held, decoding each page's items
// from member items with name.
func walkPages(t *testing.T, c *Client, path string, limit int, items string, name func(map[string]any) string) [][]string {
	t.Helper()
	var pages [][]string
	cursor := ""
	for i := 0; i < 50; i++ {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page map[string]any
		c.Get(t, path+"?"+q.Encode()).Expect(t, http.StatusOK).JSON(t, &page)
		list, ok := page[items].([]any)
		if !ok {
			t.Fatalf("page has no array %q: %v", items, page)
		}
		var names []string
		for _, it := range list {
			switch v := it.(type) {
			case string:
				names = append(names, v)
			case map[string]any:
				names = append(names, name(v))
			}
		}
		pages = append(pages, names)
		next, _ := page["nextCursor"].(string)
		if next == "" {
			return pages
		}
		cursor = next
	}
	t.Fatal("paging does not end")
	return nil
}

func flatten(pages [][]string) []string {
	var out []string
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

// names returns the names in a page of aliases, lists or groups.
func byName(m map[string]any) string { s, _ := m["name"].(string); return s }

// listMemberName returns "address" or "group:name" for a list member.
func listMemberName(m map[string]any) string {
	if g, ok := m["group"].(string); ok {
		return "group:" + g
	}
	s, _ := m["address"].(string)
	return s
}

// members returns every member of a list or group as listMemberName
// gives them, sorted.
func members(t *testing.T, c *Client, path string) []string {
	t.Helper()
	out := flatten(walkPages(t, c, path+"/members", 1000, "members", listMemberName))
	sort.Strings(out)
	return out
}

// TestDomainPostmaster sets, shows and resets a domain's postmaster.
func TestDomainPostmaster(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const dom = "/api/v1/domains/example.com"
	var d struct {
		Name, Postmaster, Description string
	}
	t.Run("Default", func(t *testing.T) {
		c.Get(t, dom).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "" {
			t.Errorf("postmaster %q, want empty (the first global administrator)", d.Postmaster)
		}
	})
	t.Run("Set", func(t *testing.T) {
		c.Send(t, http.MethodPatch, dom, map[string]any{"postmaster": "bob@example.com"}).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "bob@example.com" {
			t.Errorf("postmaster %q", d.Postmaster)
		}
		c.Get(t, dom).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "bob@example.com" {
			t.Errorf("read back: postmaster %q", d.Postmaster)
		}
		// Another field leaves it alone.
		c.Send(t, http.MethodPatch, dom, map[string]any{"description": "changed"}).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "bob@example.com" || d.Description != "changed" {
			t.Errorf("domain %+v", d)
		}
	})
	t.Run("ErrUnknownAccount", func(t *testing.T) {
		e.refusedEach(t, c, http.StatusBadRequest, "invalid",
			send(http.MethodPatch, dom, `{"postmaster":"nobody@example.com"}`),
			send(http.MethodPatch, dom, `{"postmaster":"zed@nope.example"}`),
			send(http.MethodPatch, dom, `{"postmaster":"not an address"}`),
			invalid(http.MethodPatch, dom, `{"postmaster":7}`))
		c.Get(t, dom).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "bob@example.com" {
			t.Errorf("postmaster %q after refused changes", d.Postmaster)
		}
	})
	t.Run("DomainAdmin", func(t *testing.T) {
		// A domain administrator sets the postmaster of its own domain, to
		// an account of that domain, and changes nothing else.
		e.DAdmin.Send(t, http.MethodPatch, dom, map[string]any{"postmaster": "carol"}).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "carol@example.com" {
			t.Errorf("postmaster %q", d.Postmaster)
		}
		e.refused(t, e.DAdmin, send(http.MethodPatch, dom, `{"postmaster":"zed@other.example"}`), http.StatusForbidden, "forbidden")
		e.refused(t, e.DAdmin, send(http.MethodPatch, dom, `{"postmaster":"alice@example.com","description":"mine"}`), http.StatusForbidden, "forbidden")
		e.refused(t, e.DAdmin, send(http.MethodPatch, "/api/v1/domains/other.example", `{"postmaster":"zed@other.example"}`), http.StatusForbidden, "forbidden")
		e.refused(t, e.User, send(http.MethodPatch, dom, `{"postmaster":"alice@example.com"}`), http.StatusUnauthorized, "unauthorized")
		// A global administrator may name an account of another domain.
		c.Send(t, http.MethodPatch, "/api/v1/domains/other.example", map[string]any{"postmaster": "bob@example.com"}).
			Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "bob@example.com" {
			t.Errorf("other.example postmaster %q", d.Postmaster)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		c.Send(t, http.MethodPatch, dom, map[string]any{"postmaster": ""}).Expect(t, http.StatusOK).JSON(t, &d)
		if d.Postmaster != "" {
			t.Errorf("postmaster %q after reset", d.Postmaster)
		}
	})
}

// TestAccountAddresses creates an account with aliases, lists and
// groups, and changes them with the account's PATCH, each in one
// transaction with the account's other fields.
func TestAccountAddresses(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const dom = "/api/v1/domains/example.com"
	mustSeedAddresses(t, c, "example.com", "alice")
	c.Send(t, http.MethodPost, dom+"/lists", map[string]any{"name": "news"}).Expect(t, http.StatusCreated)
	c.Send(t, http.MethodPost, dom+"/groups", map[string]any{"name": "night"}).Expect(t, http.StatusCreated)
	target := func(t *testing.T, alias string) string {
		t.Helper()
		var a Alias
		c.Get(t, dom+"/aliases/"+alias).Expect(t, http.StatusOK).JSON(t, &a)
		return a.Target
	}

	t.Run("Create", func(t *testing.T) {
		c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "dave", "password": addressPassword,
			"aliases": []string{"info", "help@example.com"}, "lists": []string{"team"}, "groups": []string{"staff"}})
		for _, a := range []string{"info", "help"} {
			if got := target(t, a); got != "dave@example.com" {
				t.Errorf("alias %s -> %q", a, got)
			}
		}
		if got := members(t, c, dom+"/lists/team"); !reflect.DeepEqual(got, []string{"alice@example.com", "dave@example.com", "group:staff"}) {
			t.Errorf("team members %v", got)
		}
		if got := members(t, c, dom+"/groups/staff"); !reflect.DeepEqual(got, []string{"alice@example.com", "dave@example.com"}) {
			t.Errorf("staff members %v", got)
		}
	})
	t.Run("ErrCreateOneTransaction", func(t *testing.T) {
		// The alias name is an account's: nothing is created, not even the account.
		e.refused(t, c, send(http.MethodPost, dom+"/accounts",
			`{"mailbox":"erin","password":"`+addressPassword+`","aliases":["bob"],"groups":["staff"]}`), http.StatusConflict, "conflict")
		e.refused(t, c, send(http.MethodPost, dom+"/accounts",
			`{"mailbox":"erin","password":"`+addressPassword+`","lists":["nolist"]}`), http.StatusBadRequest, "invalid")
		c.Get(t, dom+"/accounts/erin").ExpectProblem(t, http.StatusNotFound, "not-found")
		if got := members(t, c, dom+"/groups/staff"); !reflect.DeepEqual(got, []string{"alice@example.com", "dave@example.com"}) {
			t.Errorf("staff members %v", got)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var a Account
		c.Send(t, http.MethodPatch, dom+"/accounts/dave", map[string]any{"fullName": "Dave",
			"addAliases": []string{"support"}, "removeAliases": []string{"info"},
			"addLists": []string{"news"}, "removeLists": []string{"team"},
			"addGroups": []string{"night"}, "removeGroups": []string{"staff"}}).Expect(t, http.StatusOK).JSON(t, &a)
		if a.FullName != "Dave" {
			t.Errorf("account %+v", a)
		}
		if got := target(t, "support"); got != "dave@example.com" {
			t.Errorf("alias support -> %q", got)
		}
		c.Get(t, dom+"/aliases/info").ExpectProblem(t, http.StatusNotFound, "not-found")
		if got := members(t, c, dom+"/lists/team"); !reflect.DeepEqual(got, []string{"alice@example.com", "group:staff"}) {
			t.Errorf("team members %v", got)
		}
		if got := members(t, c, dom+"/lists/news"); !reflect.DeepEqual(got, []string{"dave@example.com"}) {
			t.Errorf("news members %v", got)
		}
		if got := members(t, c, dom+"/groups/night"); !reflect.DeepEqual(got, []string{"dave@example.com"}) {
			t.Errorf("night members %v", got)
		}
		if got := members(t, c, dom+"/groups/staff"); !reflect.DeepEqual(got, []string{"alice@example.com"}) {
			t.Errorf("staff members %v", got)
		}
	})
	t.Run("ErrUpdateOneTransaction", func(t *testing.T) {
		// An unknown group refuses the whole change, the name included.
		e.refused(t, c, send(http.MethodPatch, dom+"/accounts/dave", `{"fullName":"Changed","addAliases":["more"],"addGroups":["nogroup"]}`),
			http.StatusBadRequest, "invalid")
		var a Account
		c.Get(t, dom+"/accounts/dave").Expect(t, http.StatusOK).JSON(t, &a)
		if a.FullName != "Dave" {
			t.Errorf("full name %q after a refused change", a.FullName)
		}
		c.Get(t, dom+"/aliases/more").ExpectProblem(t, http.StatusNotFound, "not-found")
		e.refused(t, c, invalid(http.MethodPatch, dom+"/accounts/dave", `{"aliases":["x"]}`), http.StatusBadRequest, "invalid")
		e.refused(t, c, invalid(http.MethodPatch, dom+"/accounts/dave", `{"addAliases":"x"}`), http.StatusBadRequest, "invalid")
	})
	t.Run("ErrOtherDomain", func(t *testing.T) {
		// A domain administrator may not give an account an alias of another domain.
		res := e.DAdmin.Send(t, http.MethodPatch, dom+"/accounts/bob", map[string]any{"addAliases": []string{"bob@other.example"}})
		if res.Status != http.StatusForbidden && res.Status != http.StatusBadRequest {
			t.Fatalf("status %d, want 403 or 400: %s", res.Status, res.Body)
		}
		c.Get(t, "/api/v1/domains/other.example/aliases/bob").ExpectProblem(t, http.StatusNotFound, "not-found")
		// A global administrator may.
		c.Send(t, http.MethodPatch, dom+"/accounts/bob", map[string]any{"addAliases": []string{"bob@other.example"}}).Expect(t, http.StatusOK)
		var a Alias
		c.Get(t, "/api/v1/domains/other.example/aliases/bob").Expect(t, http.StatusOK).JSON(t, &a)
		if a.Target != "bob@example.com" {
			t.Errorf("alias %+v", a)
		}
	})
	t.Run("DomainAdminOwnDomain", func(t *testing.T) {
		e.DAdmin.Send(t, http.MethodPatch, dom+"/accounts/carol", map[string]any{"addAliases": []string{"c"},
			"addGroups": []string{"staff"}, "addLists": []string{"news"}}).Expect(t, http.StatusOK)
		if got := target(t, "c"); got != "carol@example.com" {
			t.Errorf("alias c -> %q", got)
		}
		e.refused(t, e.OtherDAdmin, send(http.MethodPatch, dom+"/accounts/carol", `{"removeAliases":["c"]}`),
			http.StatusForbidden, "forbidden")
	})
	t.Run("ErrUser", func(t *testing.T) {
		e.refused(t, e.User, send(http.MethodPatch, dom+"/accounts/alice", `{"addAliases":["me"]}`), http.StatusUnauthorized, "unauthorized")
	})
}

// TestAddressNameSpace checks that accounts, aliases and lists share one
// name space per domain and groups have their own.
func TestAddressNameSpace(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const dom = "/api/v1/domains/example.com"
	mustSeedAddresses(t, c, "example.com", "alice")
	for _, r := range []Request{
		send(http.MethodPost, dom+"/aliases", `{"name":"bob","target":"alice@example.com"}`),
		send(http.MethodPost, dom+"/aliases", `{"name":"team","target":"alice@example.com"}`),
		send(http.MethodPost, dom+"/aliases", `{"name":"Sales","target":"bob@example.com"}`),
		send(http.MethodPost, dom+"/lists", `{"name":"bob"}`),
		send(http.MethodPost, dom+"/lists", `{"name":"sales"}`),
		send(http.MethodPost, dom+"/lists", `{"name":"team"}`),
		send(http.MethodPost, dom+"/accounts", `{"mailbox":"sales","password":"`+addressPassword+`"}`),
		send(http.MethodPost, dom+"/accounts", `{"mailbox":"team","password":"`+addressPassword+`"}`),
		send(http.MethodPost, dom+"/groups", `{"name":"staff"}`),
	} {
		t.Run(r.Method+" "+strings.TrimPrefix(r.Path, dom)+" "+string(r.Body), func(t *testing.T) {
			p := e.refused(t, c, r, http.StatusConflict, "conflict")
			if p.Detail == "" {
				t.Error("no detail")
			}
		})
	}
	t.Run("GroupsApart", func(t *testing.T) {
		c.Send(t, http.MethodPost, dom+"/groups", map[string]any{"name": "bob"}).Expect(t, http.StatusCreated)
		c.Send(t, http.MethodPost, dom+"/groups", map[string]any{"name": "team"}).Expect(t, http.StatusCreated)
		c.Send(t, http.MethodPost, dom+"/lists", map[string]any{"name": "staff"}).Expect(t, http.StatusCreated)
	})
	t.Run("OtherDomain", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains/other.example/aliases", map[string]any{"name": "sales", "target": "zed@other.example"}).
			Expect(t, http.StatusCreated)
	})
}
