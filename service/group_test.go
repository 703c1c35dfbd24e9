package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
)

func TestGroups(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		g, err := e.svc.CreateGroup(e.dctx, mailcluster.GroupCreate{Domain: "example.com", Name: "Staff", Description: "everyone",
			QuotaBytes: 1000, Members: []string{"alice", "Bob@Example.com", "alice@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		if g.Name != "staff" || g.QuotaBytes != 1000 || g.MemberCount != 2 || g.CreatedAt.IsZero() {
			t.Fatalf("group %+v", g)
		}
		// Groups have their own name space: a group may share an account's name.
		if _, err := e.svc.CreateGroup(e.dctx, mailcluster.GroupCreate{Domain: "example.com", Name: "alice"}); err != nil {
			t.Fatal(err)
		}
		members, next, err := e.svc.FindGroupMembers(e.dctx, "example.com", "staff", "", 1)
		if err != nil || len(members) != 1 || members[0] != "alice@example.com" || next == "" {
			t.Fatalf("members %v %q, %v", members, next, err)
		}
		members, next, err = e.svc.FindGroupMembers(e.dctx, "example.com", "staff", next, 1)
		if err != nil || len(members) != 1 || members[0] != "bob@example.com" || next != "" {
			t.Fatalf("members page 2 %v %q, %v", members, next, err)
		}
		q, desc := int64(0), "changed"
		g, err = e.svc.UpdateGroup(e.dctx, "example.com", "staff", mailcluster.GroupUpdate{Description: &desc, QuotaBytes: &q,
			AddMembers: []string{"dadmin"}, RemoveMembers: []string{"bob", "nobody"}})
		if err != nil || g.Description != "changed" || g.QuotaBytes != 0 || g.MemberCount != 2 {
			t.Fatalf("update %+v, %v", g, err)
		}
		if gs, err := e.svc.AccountGroups(e.dctx, "example.com", "alice"); err != nil || len(gs) != 1 || gs[0].Name != "staff" {
			t.Fatalf("AccountGroups %v, %v", gs, err)
		}
		gs, next, err := e.svc.FindGroups(e.dctx, "example.com", "", 0)
		if err != nil || len(gs) != 2 || next != "" {
			t.Fatalf("FindGroups %v %q, %v", gs, next, err)
		}
		if err := e.svc.DeleteGroup(e.dctx, "example.com", "staff"); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.FindGroup(e.ctx, "example.com", "staff")
		wantCode(t, err, mailcluster.ENOTFOUND)
		if keys := e.keysUnder(schema.PrefixGroupMembers); len(keys) != 0 {
			t.Fatalf("members left: %v", keys)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		for _, in := range []mailcluster.GroupCreate{
			{Members: []string{"carol@other.com"}},
			{Members: []string{"nobody"}},
			{Members: []string{"bad name"}},
			{QuotaBytes: -1},
			{Description: "a\x00b"},
			{Name: "bad/name"},
		} {
			in.Domain = "example.com"
			if in.Name == "" {
				in.Name = "staff"
			}
			e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateGroup(e.ctx, in)) })
		}
		if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff"}); err != nil {
			t.Fatal(err)
		}
		neg := int64(-5)
		for _, upd := range []mailcluster.GroupUpdate{
			{QuotaMessages: &neg},
			{AddMembers: []string{"carol@other.com"}},
			{AddMembers: []string{"alice"}, RemoveMembers: []string{"alice"}},
		} {
			e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.UpdateGroup(e.ctx, "example.com", "staff", upd)) })
		}
	})
	t.Run("ErrConflictNotFoundForbidden", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "other.com", Name: "staff"}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ECONFLICT, func() error {
			return errOf(e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "other.com", Name: "STAFF"}))
		})
		_, err := e.svc.FindGroup(e.ctx, "example.com", "staff")
		wantCode(t, err, mailcluster.ENOTFOUND)
		e.refused(t, mailcluster.ENOTFOUND, func() error { return e.svc.DeleteGroup(e.ctx, "example.com", "staff") })
		e.refused(t, mailcluster.ENOTFOUND, func() error {
			return errOf(e.svc.UpdateGroup(e.ctx, "example.com", "staff", mailcluster.GroupUpdate{}))
		})
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.CreateGroup(e.dctx, mailcluster.GroupCreate{Domain: "other.com", Name: "x"}))
		})
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return e.svc.DeleteGroup(e.dctx, "other.com", "staff") })
		_, _, err = e.svc.FindGroupMembers(e.dctx, "other.com", "staff", "", 0)
		wantCode(t, err, mailcluster.EFORBIDDEN)
		_, err = e.svc.AccountGroups(e.dctx, "other.com", "carol")
		wantCode(t, err, mailcluster.EFORBIDDEN)
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "other.com", Name: "big", Members: make([]string, 200)}))
		})
	})
	t.Run("DeleteLeavesLists", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff", Members: []string{"alice"}}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"one", "two"} {
			if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: name,
				Members: []mailcluster.ListMember{{Group: "staff"}, {Address: "bob"}}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.svc.DeleteGroup(e.ctx, "example.com", "staff"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"one", "two"} {
			members, _, err := e.svc.FindListMembers(e.ctx, "example.com", name, "", 0)
			if err != nil || len(members) != 1 || members[0].Address != "bob@example.com" {
				t.Fatalf("list %s members %v, %v", name, members, err)
			}
		}
	})
	t.Run("DeleteLarge", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff"}); err != nil {
			t.Fatal(err)
		}
		var ops []mailcluster.Op
		for i := range 300 {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GroupMember("example.com", "staff", fmt.Sprintf("m%03d", i)), Value: []byte("{}")})
		}
		if _, err := e.st.BoltStore.Txn(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Members: []mailcluster.ListMember{{Group: "staff"}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.DeleteGroup(e.ctx, "example.com", "staff"); err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{schema.PrefixGroupMembers, schema.PrefixGroups, schema.PrefixListMembers} {
			if keys := e.keysUnder(prefix); len(keys) != 0 {
				t.Fatalf("%d keys left under %s", len(keys), prefix)
			}
		}
		if e.st.maxOps > service.MaxDeleteOps {
			t.Errorf("a transaction held %d operations", e.st.maxOps)
		}
	})
}

// TestGroupQuotas: an account without a quota of its own gets the
// smallest non-zero default of its groups for delivery; what the
// management calls show is unchanged.
func TestGroupQuotas(t *testing.T) {
	e := mustOpenAddrEnv(t)
	l := mustLocal(e.svc)
	if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "own", Password: "pass-word-1", QuotaBytes: 5000}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []mailcluster.GroupCreate{
		{Name: "big", QuotaBytes: 1000, Members: []string{"alice", "own"}},
		{Name: "small", QuotaBytes: 500, Members: []string{"alice"}},
		{Name: "count", QuotaMessages: 7, Members: []string{"alice", "own"}},
		{Name: "none", Members: []string{"alice", "bob"}},
	} {
		g.Domain = "example.com"
		if _, err := e.svc.CreateGroup(e.ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	check := func(address string, bytes, messages int64) {
		t.Helper()
		a, err := l.LookupAccount(address)
		if err != nil || a.QuotaBytes != bytes || a.QuotaMessages != messages {
			t.Fatalf("LookupAccount(%s) = %d bytes, %d messages (%v); want %d, %d", address, a.QuotaBytes, a.QuotaMessages, err, bytes, messages)
		}
		r, err := l.ResolveRecipient(address, "")
		if err != nil || r.Accounts[0].QuotaBytes != bytes || r.Accounts[0].QuotaMessages != messages {
			t.Fatalf("ResolveRecipient(%s) = %+v, %v", address, r, err)
		}
	}
	check("alice@example.com", 500, 7)
	check("own@example.com", 5000, 7)
	check("bob@example.com", 0, 0)
	if a, _ := e.svc.FindAccount(e.ctx, "example.com", "alice"); a.QuotaBytes != 0 || a.QuotaMessages != 0 {
		t.Fatalf("FindAccount shows %+v", a)
	}
	if kv, _ := e.st.Get(schema.Account("example.com", "alice")); strings.Contains(string(kv.Value), `"quotaBytes":500`) {
		t.Fatal("the default was stored in the account")
	}
	// Through a list too.
	if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Policy: mailcluster.ListPostAnyone,
		Members: []mailcluster.ListMember{{Group: "small"}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.ResolveRecipient("team@example.com", ""); err != nil || len(r.Accounts) != 1 || r.Accounts[0].QuotaBytes != 500 {
		t.Fatalf("list recipient %+v, %v", r, err)
	}
	// Leaving the smaller group, and a group's default going away.
	if _, err := e.svc.UpdateGroup(e.ctx, "example.com", "small", mailcluster.GroupUpdate{RemoveMembers: []string{"alice"}}); err != nil {
		t.Fatal(err)
	}
	check("alice@example.com", 1000, 7)
	if err := e.svc.DeleteGroup(e.ctx, "example.com", "count"); err != nil {
		t.Fatal(err)
	}
	check("alice@example.com", 1000, 0)
}
