package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestGroupCRUD(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/groups"

	t.Run("Create", func(t *testing.T) {
		res := c.Send(t, http.MethodPost, base, map[string]any{"name": "Staff", "description": "Payroll",
			"quotaBytes": 1 << 30, "quotaMessages": 5000, "members": []string{"alice", "Bob@example.com"}}).
			Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != base+"/staff" {
			t.Errorf("Location = %q", loc)
		}
		var g Group
		res.JSON(t, &g)
		want := Group{Domain: "example.com", Name: "staff", Description: "Payroll", QuotaBytes: 1 << 30, QuotaMessages: 5000, MemberCount: 2}
		if g != want {
			t.Errorf("group %+v, want %+v", g, want)
		}
	})
	t.Run("Get", func(t *testing.T) {
		var g Group
		c.Get(t, base+"/STAFF").Expect(t, http.StatusOK).JSON(t, &g)
		if g.Name != "staff" || g.MemberCount != 2 || g.QuotaBytes != 1<<30 {
			t.Errorf("group %+v", g)
		}
		if got := members(t, c, base+"/staff"); !reflect.DeepEqual(got, []string{"alice@example.com", "bob@example.com"}) {
			t.Errorf("members %v", got)
		}
		var page struct {
			Groups     []Group
			NextCursor string
		}
		c.Get(t, base).Expect(t, http.StatusOK).JSON(t, &page)
		if len(page.Groups) != 1 || page.Groups[0].Name != "staff" || page.NextCursor != "" {
			t.Errorf("groups %+v", page)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var g Group
		c.Send(t, http.MethodPatch, base+"/staff", map[string]any{"quotaMessages": 0,
			"addMembers": []string{"carol", "alice"}, "removeMembers": []string{"bob@example.com", "dadmin"}}).
			Expect(t, http.StatusOK).JSON(t, &g)
		if g.QuotaMessages != 0 || g.QuotaBytes != 1<<30 || g.Description != "Payroll" || g.MemberCount != 2 {
			t.Errorf("group %+v", g)
		}
		if got := members(t, c, base+"/staff"); !reflect.DeepEqual(got, []string{"alice@example.com", "carol@example.com"}) {
			t.Errorf("members %v", got)
		}
	})
	t.Run("NameSpaceApart", func(t *testing.T) {
		// Groups have their own name space: a group may share an account's name.
		var g Group
		c.Send(t, http.MethodPost, base, map[string]any{"name": "alice"}).Expect(t, http.StatusCreated).JSON(t, &g)
		if g.MemberCount != 0 {
			t.Errorf("group %+v", g)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		e.refused(t, c, send(http.MethodPost, base, `{"name":"staff"}`), http.StatusConflict, "conflict")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.refusedEach(t, c, http.StatusBadRequest, "invalid",
			send(http.MethodPost, base, `{"name":"bad name"}`),
			send(http.MethodPost, base, `{"name":"x","members":["bad name"]}`),
			invalid(http.MethodPost, base, `{"name":"x","quotaBytes":-1}`),
			invalid(http.MethodPost, base, `{"name":"x","members":"alice"}`),
			invalid(http.MethodPost, base, `{"name":"x","members":[{"address":"alice@example.com"}]}`),
			invalid(http.MethodPost, base, `{"name":"x","owner":"alice@example.com"}`),
			invalid(http.MethodPatch, base+"/staff", `{"quotaMessages":-5}`),
			invalid(http.MethodPatch, base+"/staff", `{"members":["bob"]}`),
			invalid(http.MethodGet, base+"/staff/members?limit=5000", ""),
			invalid(http.MethodGet, base+"/staff/members?cursor="+strings.Repeat("a", 321), ""))
		c.Get(t, base+"/x").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrOtherDomainMember", func(t *testing.T) {
		res := c.Send(t, http.MethodPatch, base+"/staff", map[string]any{"addMembers": []string{"zed@other.example"}})
		if res.Status != http.StatusBadRequest && res.Status != http.StatusNotFound {
			t.Fatalf("status %d, want 400 or 404: %s", res.Status, res.Body)
		}
		if got := members(t, c, base+"/staff"); !reflect.DeepEqual(got, []string{"alice@example.com", "carol@example.com"}) {
			t.Errorf("members %v", got)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, base+"/nogroup").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, base+"/nogroup/members").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/groups").ExpectProblem(t, http.StatusNotFound, "not-found")
		// Members that are no accounts of the domain are bad input.
		e.refused(t, c, send(http.MethodPost, base, `{"name":"x","members":["nobody"]}`), http.StatusBadRequest, "invalid")
		e.refused(t, c, send(http.MethodPatch, base+"/staff", `{"description":"x","addMembers":["nobody"]}`), http.StatusBadRequest, "invalid")
		e.refused(t, c, send(http.MethodPatch, base+"/nogroup", `{"description":"x"}`), http.StatusNotFound, "not-found")
		e.refused(t, c, Request{Method: http.MethodDelete, Path: base + "/nogroup"}, http.StatusNotFound, "not-found")
		var g Group
		c.Get(t, base+"/staff").Expect(t, http.StatusOK).JSON(t, &g)
		if g.Description != "Payroll" {
			t.Errorf("group %+v after refused changes", g)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains/example.com/lists", map[string]any{"name": "team",
			"members": []map[string]string{{"group": "staff"}, {"address": "bob@example.com"}}}).Expect(t, http.StatusCreated)
		c.Delete(t, base+"/staff").Expect(t, http.StatusNoContent)
		c.Get(t, base+"/staff").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, base+"/staff").ExpectProblem(t, http.StatusNotFound, "not-found")
		// Its list memberships went with it; its accounts stay.
		if got := members(t, c, "/api/v1/domains/example.com/lists/team"); !reflect.DeepEqual(got, []string{"bob@example.com"}) {
			t.Errorf("list members %v", got)
		}
		c.Get(t, "/api/v1/domains/example.com/accounts/alice").Expect(t, http.StatusOK)
	})
}

func TestGroupPaging(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/groups"
	var want []string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("group%02d", i)
		c.Send(t, http.MethodPost, base, map[string]any{"name": name}).Expect(t, http.StatusCreated)
		want = append(want, name)
	}
	if got := walkPages(t, c, base, 2, "groups", byName); len(got) != 3 || !reflect.DeepEqual(flatten(got), want) {
		t.Errorf("pages %v, want %v", got, want)
	}
	c.Send(t, http.MethodPatch, base+"/group01", map[string]any{"addMembers": []string{"carol", "alice", "bob"}}).Expect(t, http.StatusOK)
	pages := walkPages(t, c, base+"/group01/members", 2, "members", nil)
	if want := [][]string{{"alice@example.com", "bob@example.com"}, {"carol@example.com"}}; !reflect.DeepEqual(pages, want) {
		t.Errorf("member pages %v, want %v", pages, want)
	}
}

// TestGroupAuthz: a domain administrator manages the groups of its own
// domain only; mail users have no API access.
func TestGroupAuthz(t *testing.T) {
	e := mustOpenAddressEnv(t)
	mustSeedAddresses(t, e.Admin, "example.com", "alice")
	const base = "/api/v1/domains/example.com/groups"
	d := e.DAdmin

	t.Run("OwnDomain", func(t *testing.T) {
		d.Send(t, http.MethodPost, base, map[string]any{"name": "club", "members": []string{"bob"}}).Expect(t, http.StatusCreated)
		d.Get(t, base+"/club").Expect(t, http.StatusOK)
		d.Get(t, base+"/club/members").Expect(t, http.StatusOK)
		d.Send(t, http.MethodPatch, base+"/club", map[string]any{"quotaBytes": 1000, "addMembers": []string{"carol"}}).Expect(t, http.StatusOK)
		d.Delete(t, base+"/club").Expect(t, http.StatusNoContent)
	})
	t.Run("ErrOtherDomain", func(t *testing.T) {
		o := e.OtherDAdmin
		e.refusedEach(t, o, http.StatusForbidden, "forbidden",
			Request{Method: http.MethodGet, Path: base},
			Request{Method: http.MethodGet, Path: base + "/staff"},
			Request{Method: http.MethodGet, Path: base + "/staff/members"},
			send(http.MethodPost, base, `{"name":"evil"}`),
			send(http.MethodPatch, base+"/staff", `{"addMembers":["bob"]}`),
			Request{Method: http.MethodDelete, Path: base + "/staff"})
		if got := members(t, e.Admin, base+"/staff"); !reflect.DeepEqual(got, []string{"alice@example.com"}) {
			t.Errorf("members %v", got)
		}
	})
	t.Run("ErrUser", func(t *testing.T) {
		e.refused(t, e.User, Request{Method: http.MethodGet, Path: base}, http.StatusUnauthorized, "unauthorized")
		e.refused(t, e.User, send(http.MethodPost, base, `{"name":"mine"}`), http.StatusUnauthorized, "unauthorized")
	})
}

// TestGroupTooLarge: one request changes a bounded number of members
// (413, nothing changed).
func TestGroupTooLarge(t *testing.T) {
	e := mustOpenAddressEnv(t)
	c := e.Admin
	const base = "/api/v1/domains/example.com/groups"
	c.Send(t, http.MethodPost, base, map[string]any{"name": "big"}).Expect(t, http.StatusCreated)
	many := make([]string, 121)
	for i := range many {
		many[i] = fmt.Sprintf("m%03d", i)
	}
	b, _ := json.Marshal(map[string]any{"name": "big2", "members": many})
	e.refused(t, c, Request{Method: http.MethodPost, Path: base, Body: b, Invalid: true}, http.StatusRequestEntityTooLarge, "too-large")
	b, _ = json.Marshal(map[string]any{"addMembers": many})
	e.refused(t, c, Request{Method: http.MethodPatch, Path: base + "/big", Body: b, Invalid: true}, http.StatusRequestEntityTooLarge, "too-large")
	c.Get(t, base+"/big2").ExpectProblem(t, http.StatusNotFound, "not-found")
}
