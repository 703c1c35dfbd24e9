package api_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestListCRUD(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/lists"
	c.Send(t, http.MethodPost, "/api/v1/domains/example.com/groups", map[string]any{"name": "staff", "members": []string{"carol"}}).
		Expect(t, http.StatusCreated)

	t.Run("Create", func(t *testing.T) {
		res := c.Send(t, http.MethodPost, base, map[string]any{"name": "Team", "description": "The team",
			"policy": "moderated", "replyTo": "list", "owner": "alice@example.com",
			"members": []map[string]string{{"address": "alice@example.com"}, {"address": "bob@example.com"}, {"group": "staff"}}}).
			Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != base+"/team" {
			t.Errorf("Location = %q", loc)
		}
		var l MailingList
		res.JSON(t, &l)
		want := MailingList{Address: "team@example.com", Domain: "example.com", Name: "team", Description: "The team",
			Policy: "moderated", ReplyTo: "list", Owner: "alice@example.com", MemberCount: 3}
		if l != want {
			t.Errorf("list %+v, want %+v", l, want)
		}
	})
	t.Run("CreateDefaults", func(t *testing.T) {
		var l MailingList
		c.Send(t, http.MethodPost, base, map[string]any{"name": "empty"}).Expect(t, http.StatusCreated).JSON(t, &l)
		if l.Policy != "members" || l.ReplyTo != "sender" || l.Owner != "" || l.MemberCount != 0 {
			t.Errorf("list %+v", l)
		}
		if got := members(t, c, base+"/empty"); len(got) != 0 {
			t.Errorf("members %v", got)
		}
	})
	t.Run("Get", func(t *testing.T) {
		var l MailingList
		c.Get(t, base+"/TEAM").Expect(t, http.StatusOK).JSON(t, &l)
		if l.Address != "team@example.com" || l.MemberCount != 3 || l.Policy != "moderated" {
			t.Errorf("list %+v", l)
		}
		if got := members(t, c, base+"/team"); !reflect.DeepEqual(got, []string{"alice@example.com", "bob@example.com", "group:staff"}) {
			t.Errorf("members %v", got)
		}
		var page struct {
			Lists      []MailingList
			NextCursor string
		}
		c.Get(t, base).Expect(t, http.StatusOK).JSON(t, &page)
		if len(page.Lists) != 2 || page.Lists[0].Name != "empty" || page.Lists[1].Name != "team" || page.NextCursor != "" {
			t.Errorf("lists %+v", page)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var l MailingList
		c.Send(t, http.MethodPatch, base+"/team", map[string]any{"policy": "anyone", "replyTo": "sender",
			"addMembers":    []map[string]string{{"address": "carol@example.com"}, {"address": "alice@example.com"}},
			"removeMembers": []map[string]string{{"group": "staff"}, {"address": "nobody@example.com"}}}).
			Expect(t, http.StatusOK).JSON(t, &l)
		if l.Policy != "anyone" || l.ReplyTo != "sender" || l.Description != "The team" || l.Owner != "alice@example.com" || l.MemberCount != 3 {
			t.Errorf("list %+v", l)
		}
		if got := members(t, c, base+"/team"); !reflect.DeepEqual(got, []string{"alice@example.com", "bob@example.com", "carol@example.com"}) {
			t.Errorf("members %v", got)
		}
		c.Send(t, http.MethodPatch, base+"/team", map[string]any{"description": "", "owner": ""}).Expect(t, http.StatusOK).JSON(t, &l)
		if l.Description != "" || l.Owner != "" || l.Policy != "anyone" {
			t.Errorf("list %+v", l)
		}
	})
	t.Run("OutsideMembers", func(t *testing.T) {
		c.Send(t, http.MethodPost, base, map[string]any{"name": "ext",
			"members": []map[string]string{{"address": "Someone@Elsewhere.example"}, {"address": "alice@example.com"}, {"address": "zed@other.example", "type": "account"}}}).
			Expect(t, http.StatusCreated)
		c.Send(t, http.MethodPatch, base+"/ext", map[string]any{"addMembers": []map[string]string{{"address": "new@far.example"}},
			"removeMembers": []map[string]string{{"address": "zed@other.example"}}}).Expect(t, http.StatusOK)
		var page struct {
			Members    []map[string]string
			NextCursor string
		}
		c.Get(t, base+"/ext/members").Expect(t, http.StatusOK).JSON(t, &page)
		want := []map[string]string{{"address": "alice@example.com", "type": "account"},
			{"address": "new@far.example", "type": "external"}, {"address": "someone@elsewhere.example", "type": "external"}}
		if !reflect.DeepEqual(page.Members, want) || page.NextCursor != "" {
			t.Errorf("members %v, want %v", page, want)
		}
		// An outside member's address is a cursor.
		c.Get(t, base+"/ext/members?cursor=new@far.example").Expect(t, http.StatusOK).JSON(t, &page)
		if !reflect.DeepEqual(page.Members, want[2:]) {
			t.Errorf("members after new@far.example %v", page.Members)
		}
		long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 60) + ".org"
		for _, addr := range []string{"a@b\r\nRCPT TO:x", "<a@b.example>", long, "@b.example", "a@", "a@b", "a%b@c.example", "a b@c.example"} {
			body := fmt.Sprintf(`{"addMembers":[{"address":%q}]}`, addr)
			e.refused(t, c, send(http.MethodPatch, base+"/ext", body), http.StatusBadRequest, "invalid")
			body = fmt.Sprintf(`{"name":"ext2","members":[{"address":%q}]}`, addr)
			e.refused(t, c, send(http.MethodPost, base, body), http.StatusBadRequest, "invalid")
		}
		if got := members(t, c, base+"/ext"); len(got) != 3 {
			t.Errorf("members %v after refused changes", got)
		}
		c.Get(t, base+"/ext2").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, base+"/ext").Expect(t, http.StatusNoContent)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.refusedEach(t, c, http.StatusBadRequest, "invalid",
			send(http.MethodPost, base, `{"name":"bad name"}`),
			send(http.MethodPost, base, `{"name":"mod","policy":"moderated"}`),
			send(http.MethodPatch, base+"/team", `{"policy":"moderated"}`),
			send(http.MethodPost, base, `{"name":"x","members":[{"address":"nobody@example.com"}]}`),
			send(http.MethodPost, base, `{"name":"x","members":[{"group":"nogroup"}]}`),
			send(http.MethodPost, base, `{"name":"x","policy":"moderated","owner":"nobody@example.com"}`),
			send(http.MethodPost, base, `{"name":"x","owner":"zed@other.example"}`),
			invalid(http.MethodPost, base, `{"name":"x","policy":"sometimes"}`),
			invalid(http.MethodPost, base, `{"name":"x","replyTo":"nobody"}`),
			invalid(http.MethodPost, base, `{"name":"x","members":[{}]}`),
			invalid(http.MethodPost, base, `{"name":"x","members":[{"address":"alice@example.com","group":"staff"}]}`),
			invalid(http.MethodPost, base, `{"name":"x","members":["alice@example.com"]}`),
			invalid(http.MethodPost, base, `{"name":"x","moderators":[]}`),
			invalid(http.MethodPost, base, `{"description":"no name"}`),
			invalid(http.MethodPatch, base+"/team", `{"name":"renamed"}`),
			invalid(http.MethodPatch, base+"/team", `{"addMembers":[{"address":"alice@example.com","extra":true}]}`),
			invalid(http.MethodGet, base+"/team/members?limit=0", ""))
		var l MailingList
		c.Get(t, base+"/team").Expect(t, http.StatusOK).JSON(t, &l)
		if l.Policy != "anyone" || l.MemberCount != 3 {
			t.Errorf("list %+v after refused changes", l)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, base+"/nolist").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, base+"/nolist/members").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/lists").ExpectProblem(t, http.StatusNotFound, "not-found")
		e.refused(t, c, send(http.MethodPatch, base+"/nolist", `{"description":"x"}`), http.StatusNotFound, "not-found")
		e.refused(t, c, Request{Method: http.MethodDelete, Path: base + "/nolist"}, http.StatusNotFound, "not-found")
	})
	t.Run("ErrConflict", func(t *testing.T) {
		e.refused(t, c, send(http.MethodPost, base, `{"name":"team"}`), http.StatusConflict, "conflict")
		e.refused(t, c, send(http.MethodPost, base, `{"name":"alice"}`), http.StatusConflict, "conflict")
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, base+"/team").Expect(t, http.StatusNoContent)
		c.Get(t, base+"/team").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, base+"/team/members").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, base+"/team").ExpectProblem(t, http.StatusNotFound, "not-found")
		// The members are untouched, and the name is free again.
		c.Get(t, "/api/v1/domains/example.com/accounts/alice").Expect(t, http.StatusOK)
		c.Get(t, "/api/v1/domains/example.com/groups/staff").Expect(t, http.StatusOK)
		c.Send(t, http.MethodPost, "/api/v1/domains/example.com/aliases", map[string]any{"name": "team", "target": "alice@example.com"}).
			Expect(t, http.StatusCreated)
	})
}

func TestListPaging(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/lists"
	var want []string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("list%02d", i)
		c.Send(t, http.MethodPost, base, map[string]any{"name": name}).Expect(t, http.StatusCreated)
		want = append(want, name)
	}
	if got := walkPages(t, c, base, 2, "lists", byName); len(got) != 3 || !reflect.DeepEqual(flatten(got), want) {
		t.Errorf("pages %v, want %v", got, want)
	}
	c.Send(t, http.MethodPost, "/api/v1/domains/example.com/groups", map[string]any{"name": "staff"}).Expect(t, http.StatusCreated)
	c.Send(t, http.MethodPatch, base+"/list01", map[string]any{"addMembers": []map[string]string{
		{"address": "alice@example.com"}, {"address": "bob@example.com"}, {"address": "carol@example.com"}, {"group": "staff"}}}).
		Expect(t, http.StatusOK)
	pages := walkPages(t, c, base+"/list01/members", 1, "members", listMemberName)
	if len(pages) != 4 {
		t.Errorf("member pages %v", pages)
	}
	got := flatten(pages)
	if len(got) != 4 {
		t.Fatalf("members %v", got)
	}
	seen := map[string]bool{}
	for _, m := range got {
		seen[m] = true
	}
	for _, m := range []string{"alice@example.com", "bob@example.com", "carol@example.com", "group:staff"} {
		if !seen[m] {
			t.Errorf("member %s missing from %v", m, got)
		}
	}
}

// TestListAuthz: a domain administrator manages the lists of its own
// domain only; mail users have no API access.
func TestListAuthz(t *testing.T) {
	e := mustOpenAddressEnv(t)
	mustSeedAddresses(t, e.Admin, "example.com", "alice")
	const base = "/api/v1/domains/example.com/lists"
	d := e.DAdmin

	t.Run("OwnDomain", func(t *testing.T) {
		d.Send(t, http.MethodPost, base, map[string]any{"name": "club", "members": []map[string]string{{"address": "bob@example.com"}}}).
			Expect(t, http.StatusCreated)
		d.Get(t, base+"/club").Expect(t, http.StatusOK)
		d.Get(t, base+"/club/members").Expect(t, http.StatusOK)
		d.Send(t, http.MethodPatch, base+"/club", map[string]any{"addMembers": []map[string]string{{"group": "staff"}}}).Expect(t, http.StatusOK)
		d.Delete(t, base+"/club").Expect(t, http.StatusNoContent)
	})
	t.Run("ErrOtherDomain", func(t *testing.T) {
		o := e.OtherDAdmin
		e.refusedEach(t, o, http.StatusForbidden, "forbidden",
			Request{Method: http.MethodGet, Path: base},
			Request{Method: http.MethodGet, Path: base + "/team"},
			Request{Method: http.MethodGet, Path: base + "/team/members"},
			send(http.MethodPost, base, `{"name":"evil"}`),
			send(http.MethodPatch, base+"/team", `{"addMembers":[{"address":"bob@example.com"}]}`),
			Request{Method: http.MethodDelete, Path: base + "/team"})
		if got := members(t, e.Admin, base+"/team"); !reflect.DeepEqual(got, []string{"alice@example.com", "group:staff"}) {
			t.Errorf("members %v", got)
		}
	})
	t.Run("ErrUser", func(t *testing.T) {
		e.refused(t, e.User, Request{Method: http.MethodGet, Path: base + "/team/members"}, http.StatusUnauthorized, "unauthorized")
		e.refused(t, e.User, send(http.MethodPatch, base+"/team", `{"removeMembers":[{"group":"staff"}]}`), http.StatusUnauthorized, "unauthorized")
	})
}

// TestListTooLarge: one request changes a bounded number of members
// (413, nothing changed); more are added with further requests.
func TestListTooLarge(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/lists"
	c.Send(t, http.MethodPost, base, map[string]any{"name": "big"}).Expect(t, http.StatusCreated)
	var all []map[string]string
	for i := 0; i < 80; i++ {
		m := fmt.Sprintf("m%02d", i)
		c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": m})
		all = append(all, map[string]string{"address": m + "@example.com"})
	}
	body := func(field string, ms []map[string]string) string {
		var parts []string
		for _, m := range ms {
			parts = append(parts, `{"address":"`+m["address"]+`"}`)
		}
		return `{"` + field + `":[` + strings.Join(parts, ",") + `]}`
	}
	many := append(append([]map[string]string{}, all...), all[:41]...) // 121, beyond the spec's bound
	e.refused(t, c, invalid(http.MethodPost, base, `{"name":"big2",`+strings.TrimPrefix(body("members", many), "{")), http.StatusRequestEntityTooLarge, "too-large")
	e.refused(t, c, invalid(http.MethodPatch, base+"/big", body("addMembers", many)), http.StatusRequestEntityTooLarge, "too-large")
	p := e.refused(t, c, send(http.MethodPatch, base+"/big", body("addMembers", all)), http.StatusRequestEntityTooLarge, "too-large")
	if !strings.Contains(p.Detail, "split") {
		t.Errorf("detail %q does not say what to do", p.Detail)
	}
	c.Get(t, base+"/big2").ExpectProblem(t, http.StatusNotFound, "not-found")
	c.Send(t, http.MethodPatch, base+"/big", map[string]any{"addMembers": all[:40]}).Expect(t, http.StatusOK)
	var l MailingList
	c.Send(t, http.MethodPatch, base+"/big", map[string]any{"addMembers": all[40:]}).Expect(t, http.StatusOK).JSON(t, &l)
	if l.MemberCount != 80 {
		t.Errorf("list %+v", l)
	}
	if got := members(t, c, base+"/big"); len(got) != 80 {
		t.Errorf("%d members", len(got))
	}
}
