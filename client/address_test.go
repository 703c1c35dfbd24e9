package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"mailcluster"
	"mailcluster/client"
)

func TestAliases(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/domains/ex.com/aliases?cursor=&limit=1000":  {body: `{"aliases":[{"address":"a@ex.com","domain":"ex.com","name":"a","target":"x@ex.com"}],"nextCursor":"a"}`},
		"GET /api/v1/domains/ex.com/aliases?cursor=a&limit=1000": {body: `{"aliases":[{"address":"b@ex.com","domain":"ex.com","name":"b","target":"y@ex.com"}],"nextCursor":""}`},
		"GET /api/v1/domains/ex.com/aliases/a":                   {body: `{"address":"a@ex.com","domain":"ex.com","name":"a","target":"x@ex.com"}`},
		"POST /api/v1/domains/ex.com/aliases":                    {status: http.StatusCreated, body: `{"address":"c@ex.com","name":"c","target":"x@ex.com"}`},
		"PATCH /api/v1/domains/ex.com/aliases/c":                 {body: `{"address":"c@ex.com","name":"c","target":"y@ex.com"}`},
		"DELETE /api/v1/domains/ex.com/aliases/c":                {status: http.StatusNoContent},
	})
	ctx := context.Background()
	as, err := c.AllAliases(ctx, "ex.com")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		got = append(got, a.Address+" "+a.Target)
	}
	if want := []string{"a@ex.com x@ex.com", "b@ex.com y@ex.com"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("aliases %v, want %v", got, want)
	}
	if a, err := c.Alias(ctx, "ex.com", "a"); err != nil || a.Target != "x@ex.com" {
		t.Fatalf("alias %+v, %v", a, err)
	}
	if a, err := c.CreateAlias(ctx, "ex.com", "c", "x@ex.com"); err != nil || a.Name != "c" {
		t.Fatalf("create: %+v, %v", a, err)
	}
	if a, err := c.UpdateAlias(ctx, "ex.com", "c", "y@ex.com"); err != nil || a.Target != "y@ex.com" {
		t.Fatalf("update: %+v, %v", a, err)
	}
	if err := c.DeleteAlias(ctx, "ex.com", "c"); err != nil {
		t.Fatal(err)
	}
	sent := map[string]string{}
	for _, r := range f.requests {
		sent[r.Method] = r.Body
	}
	if sent["POST"] != `{"name":"c","target":"x@ex.com"}` || sent["PATCH"] != `{"target":"y@ex.com"}` || sent["DELETE"] != "" {
		t.Fatalf("sent %v", sent)
	}
}

func TestLists(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/domains/ex.com/lists?cursor=&limit=1000":                        {body: `{"lists":[{"address":"team@ex.com","name":"team","policy":"members","replyTo":"sender","memberCount":2}],"nextCursor":""}`},
		"GET /api/v1/domains/ex.com/lists/team":                                      {body: `{"address":"team@ex.com","name":"team","policy":"moderated","owner":"a@ex.com","memberCount":2}`},
		"GET /api/v1/domains/ex.com/lists/team/members?cursor=&limit=1000":           {body: `{"members":[{"address":"a@ex.com"}],"nextCursor":"a@ex.com"}`},
		"GET /api/v1/domains/ex.com/lists/team/members?cursor=a%40ex.com&limit=1000": {body: `{"members":[{"group":"staff"}],"nextCursor":""}`},
		"POST /api/v1/domains/ex.com/lists":                                          {status: http.StatusCreated, body: `{"address":"news@ex.com","name":"news","policy":"members","replyTo":"sender"}`},
		"PATCH /api/v1/domains/ex.com/lists/news":                                    {body: `{"address":"news@ex.com","name":"news","policy":"anyone","replyTo":"sender","memberCount":1}`},
		"DELETE /api/v1/domains/ex.com/lists/news":                                   {status: http.StatusNoContent},
	})
	ctx := context.Background()
	ls, err := c.AllLists(ctx, "ex.com")
	if err != nil || len(ls) != 1 || ls[0].Address != "team@ex.com" || ls[0].MemberCount != 2 {
		t.Fatalf("lists %+v, %v", ls, err)
	}
	if l, err := c.MailingList(ctx, "ex.com", "team"); err != nil || l.Policy != "moderated" || l.Owner != "a@ex.com" {
		t.Fatalf("list %+v, %v", l, err)
	}
	ms, err := c.AllListMembers(ctx, "ex.com", "team")
	if want := []client.ListMember{{Address: "a@ex.com"}, {Group: "staff"}}; err != nil || !reflect.DeepEqual(ms, want) {
		t.Fatalf("members %+v, %v, want %+v", ms, err, want)
	}
	if _, err := c.CreateList(ctx, "ex.com", client.ListCreate{Name: "news", Members: []client.ListMember{{Group: "staff"}}}); err != nil {
		t.Fatal(err)
	}
	anyone := "anyone"
	if l, err := c.PatchList(ctx, "ex.com", "news", client.ListPatch{Policy: &anyone,
		AddMembers: []client.ListMember{{Address: "b@ex.com"}}}); err != nil || l.Policy != "anyone" {
		t.Fatalf("patch: %+v, %v", l, err)
	}
	if err := c.DeleteList(ctx, "ex.com", "news"); err != nil {
		t.Fatal(err)
	}
	bodies := map[string]any{}
	for _, r := range f.requests {
		if r.Body != "" {
			var v any
			if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
				t.Fatal(err)
			}
			bodies[r.Method] = v
		}
	}
	want := map[string]any{
		"POST":  map[string]any{"name": "news", "members": []any{map[string]any{"group": "staff"}}},
		"PATCH": map[string]any{"policy": "anyone", "addMembers": []any{map[string]any{"address": "b@ex.com"}}},
	}
	if !reflect.DeepEqual(bodies, want) {
		t.Fatalf("sent %v, want %v", bodies, want)
	}
}

func TestGroups(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/domains/ex.com/groups?cursor=&limit=1000":               {body: `{"groups":[{"domain":"ex.com","name":"staff","quotaBytes":100,"memberCount":2}],"nextCursor":""}`},
		"GET /api/v1/domains/ex.com/groups/staff":                            {body: `{"domain":"ex.com","name":"staff","quotaBytes":100,"memberCount":2}`},
		"GET /api/v1/domains/ex.com/groups/staff/members?cursor=&limit=1000": {body: `{"members":["a@ex.com","b@ex.com"],"nextCursor":""}`},
		"POST /api/v1/domains/ex.com/groups":                                 {status: http.StatusCreated, body: `{"domain":"ex.com","name":"night"}`},
		"PATCH /api/v1/domains/ex.com/groups/night":                          {body: `{"domain":"ex.com","name":"night","quotaMessages":0,"memberCount":1}`},
		"DELETE /api/v1/domains/ex.com/groups/night":                         {status: http.StatusNoContent},
	})
	ctx := context.Background()
	gs, err := c.AllGroups(ctx, "ex.com")
	if err != nil || len(gs) != 1 || gs[0].Name != "staff" || gs[0].QuotaBytes != 100 {
		t.Fatalf("groups %+v, %v", gs, err)
	}
	if g, err := c.Group(ctx, "ex.com", "staff"); err != nil || g.MemberCount != 2 {
		t.Fatalf("group %+v, %v", g, err)
	}
	if ms, err := c.AllGroupMembers(ctx, "ex.com", "staff"); err != nil || !reflect.DeepEqual(ms, []string{"a@ex.com", "b@ex.com"}) {
		t.Fatalf("members %v, %v", ms, err)
	}
	if _, err := c.CreateGroup(ctx, "ex.com", client.GroupCreate{Name: "night", Members: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if g, err := c.PatchGroup(ctx, "ex.com", "night", client.GroupPatch{QuotaMessages: &zero, RemoveMembers: []string{"b"}}); err != nil || g.MemberCount != 1 {
		t.Fatalf("patch: %+v, %v", g, err)
	}
	if err := c.DeleteGroup(ctx, "ex.com", "night"); err != nil {
		t.Fatal(err)
	}
	sent := map[string]string{}
	for _, r := range f.requests {
		sent[r.Method] = r.Body
	}
	// A zero quota is sent: it clears the default.
	if sent["POST"] != `{"name":"night","members":["a"]}` || sent["PATCH"] != `{"quotaMessages":0,"removeMembers":["b"]}` {
		t.Fatalf("sent %v", sent)
	}
}

func TestAddressErrors(t *testing.T) {
	c, _ := mustOpen(t, map[string]answer{
		"POST /api/v1/domains/ex.com/lists": {status: http.StatusBadRequest, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:invalid","title":"Invalid request","status":400,"detail":"Member x@other.com: not a valid address."}`},
		"DELETE /api/v1/domains/ex.com/groups/staff": {status: http.StatusForbidden, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:read-only","title":"Read-only node","status":403,"detail":"Not the primary.","primary":"http://10.0.0.1:8080"}`},
	})
	ctx := context.Background()
	_, err := c.CreateList(ctx, "ex.com", client.ListCreate{Name: "l", Members: []client.ListMember{{Address: "x@other.com"}}})
	var e *client.Error
	if client.ErrorCode(err) != mailcluster.EINVALID || !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Detail == "" {
		t.Fatalf("err %v", err)
	}
	err = c.DeleteGroup(ctx, "ex.com", "staff")
	if client.ErrorCode(err) != mailcluster.EREADONLY || !errors.As(err, &e) || e.Primary != "http://10.0.0.1:8080" {
		t.Fatalf("err %v", err)
	}
	if _, err := c.Alias(ctx, "ex.com", "missing"); client.ErrorCode(err) != "" {
		// The fake answers 404 without a problem document.
		t.Fatalf("err %v", err)
	} else if !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Fatalf("err %v", err)
	}
}
