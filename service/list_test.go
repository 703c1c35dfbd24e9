package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
)

// putMembers writes n member keys of a list straight into the store
// (accounts m0000.. that need not exist), 500 to a transaction.
func putMembers(t *testing.T, st *addrStore, domain, list string, n int) {
	t.Helper()
	var ops []mailcluster.Op
	for i := range n {
		mb := fmt.Sprintf("m%04d", i)
		b, _ := json.Marshal(mailcluster.ListMember{Address: mb + "@" + domain})
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.ListMemberAccount(domain, list, mb), Value: b})
		if len(ops) == 500 || i == n-1 {
			if _, err := st.BoltStore.Txn(context.Background(), ops); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
}

// checkTxnSize fails when a transaction held more operations than a
// cluster's write may.
func checkTxnSize(t *testing.T, st *addrStore) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.maxOps > 125 {
		t.Errorf("a transaction held %d operations; a cluster's write holds at most 125", st.maxOps)
	}
}

func TestLists(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff", Members: []string{"dadmin"}}); err != nil {
			t.Fatal(err)
		}
		l, err := e.svc.CreateList(e.dctx, mailcluster.ListCreate{Domain: "example.com", Name: "Team", Description: "the team",
			Policy: "Anyone", ReplyTo: "LIST", Owner: "Alice@example.com",
			Members: []mailcluster.ListMember{{Address: "alice@example.com"}, {Address: "BOB"}, {Group: "staff"}, {Address: "alice"}}})
		if err != nil {
			t.Fatal(err)
		}
		if l.Address() != "team@example.com" || l.Policy != mailcluster.ListPostAnyone || l.ReplyTo != mailcluster.ListReplyToList ||
			l.Owner != "alice@example.com" || l.MemberCount != 3 || l.Deleting {
			t.Fatalf("list %+v", l)
		}
		members, next, err := e.svc.FindListMembers(e.dctx, "example.com", "team", "", 2)
		if err != nil || len(members) != 2 || next == "" {
			t.Fatalf("members %v next %q, %v", members, next, err)
		}
		rest, next2, err := e.svc.FindListMembers(e.dctx, "example.com", "team", next, 2)
		if err != nil || len(rest) != 1 || next2 != "" {
			t.Fatalf("rest %v next %q, %v", rest, next2, err)
		}
		all := append(members, rest...)
		want := []mailcluster.ListMember{{Address: "alice@example.com"}, {Address: "bob@example.com"}, {Group: "staff"}}
		if fmt.Sprint(all) != fmt.Sprint(want) {
			t.Fatalf("members %v, want %v", all, want)
		}
		desc, policy := "changed", mailcluster.ListPostMembers
		l, err = e.svc.UpdateList(e.dctx, "example.com", "team", mailcluster.ListUpdate{Description: &desc, Policy: &policy,
			AddMembers: []mailcluster.ListMember{{Address: "dadmin"}, {Address: "alice"}}, RemoveMembers: []mailcluster.ListMember{{Address: "bob"}, {Group: "nothere"}}})
		if err != nil || l.Description != "changed" || l.Policy != mailcluster.ListPostMembers || l.MemberCount != 3 {
			t.Fatalf("update %+v, %v", l, err)
		}
		if ls, err := e.svc.AccountLists(e.dctx, "example.com", "dadmin"); err != nil || len(ls) != 1 || ls[0].Name != "team" {
			t.Fatalf("AccountLists %v, %v", ls, err)
		}
		if ls, _ := e.svc.AccountLists(e.dctx, "example.com", "bob"); len(ls) != 0 {
			t.Fatalf("bob is still in %v", ls)
		}
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "other"}); err != nil {
			t.Fatal(err)
		}
		page, next, err := e.svc.FindLists(e.dctx, "example.com", "", 1)
		if err != nil || len(page) != 1 || page[0].Name != "other" || next != "other" {
			t.Fatalf("FindLists %v %q, %v", page, next, err)
		}
		page, next, err = e.svc.FindLists(e.dctx, "example.com", next, 1)
		if err != nil || len(page) != 1 || page[0].Name != "team" || page[0].MemberCount != 3 || next != "" {
			t.Fatalf("FindLists page 2 %v %q, %v", page, next, err)
		}
		if err := e.svc.DeleteList(e.dctx, "example.com", "team"); err != nil {
			t.Fatal(err)
		}
		if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 0 {
			t.Fatalf("members left: %v", keys)
		}
		_, err = e.svc.FindList(e.ctx, "example.com", "team")
		wantCode(t, err, mailcluster.ENOTFOUND)
		checkTxnSize(t, e.st)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateAlias(e.ctx, "example.com", "sales", "alice"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			in      mailcluster.ListCreate
			message string
		}{
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{Address: "nobody"}}}, "not an account"},
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{Address: "nobody@example.com"}}}, "not an account"},
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{Address: "sales"}}}, "not an account"},
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{Address: "alice", Group: "staff"}}}, "either"},
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{}}}, "either"},
			{mailcluster.ListCreate{Members: []mailcluster.ListMember{{Group: "nogroup"}}}, "nogroup"},
			{mailcluster.ListCreate{Policy: "bogus"}, "bogus"},
			{mailcluster.ListCreate{ReplyTo: "bogus"}, "bogus"},
			{mailcluster.ListCreate{Policy: mailcluster.ListPostModerated}, "owner"},
			{mailcluster.ListCreate{Owner: "carol@other.com"}, "owner"},
			{mailcluster.ListCreate{Owner: "nobody"}, "owner"},
			{mailcluster.ListCreate{Description: "two\nlines"}, "Description"},
		} {
			tc.in.Domain, tc.in.Name = "example.com", "team"
			e.refused(t, mailcluster.EINVALID, func() error {
				_, err := e.svc.CreateList(e.ctx, tc.in)
				if !strings.Contains(mailcluster.ErrorMessage(err), tc.message) {
					t.Errorf("%+v: message %q does not mention %q", tc.in, mailcluster.ErrorMessage(err), tc.message)
				}
				return err
			})
		}
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		moderated, none := mailcluster.ListPostModerated, ""
		for _, upd := range []mailcluster.ListUpdate{
			{AddMembers: []mailcluster.ListMember{{Address: "nobody@example.com"}}},
			{Policy: &moderated},
			{Owner: &none, Policy: &moderated},
			{AddMembers: []mailcluster.ListMember{{Address: "alice"}}, RemoveMembers: []mailcluster.ListMember{{Address: "alice@example.com"}}},
		} {
			e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", upd)) })
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		_, err := e.svc.FindList(e.ctx, "example.com", "team")
		wantCode(t, err, mailcluster.ENOTFOUND)
		_, _, err = e.svc.FindListMembers(e.ctx, "example.com", "team", "", 0)
		wantCode(t, err, mailcluster.ENOTFOUND)
		_, _, err = e.svc.FindLists(e.ctx, "missing.com", "", 0)
		wantCode(t, err, mailcluster.ENOTFOUND)
		e.refused(t, mailcluster.ENOTFOUND, func() error { return e.svc.DeleteList(e.ctx, "example.com", "team") })
		e.refused(t, mailcluster.ENOTFOUND, func() error { return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{})) })
		e.refused(t, mailcluster.ENOTFOUND, func() error {
			return errOf(e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "missing.com", Name: "team"}))
		})
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "other.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.CreateList(e.dctx, mailcluster.ListCreate{Domain: "other.com", Name: "x"}))
		})
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return errOf(e.svc.UpdateList(e.dctx, "other.com", "team", mailcluster.ListUpdate{})) })
		e.refused(t, mailcluster.EFORBIDDEN, func() error { return e.svc.DeleteList(e.dctx, "other.com", "team") })
		_, err := e.svc.FindList(e.dctx, "other.com", "team")
		wantCode(t, err, mailcluster.EFORBIDDEN)
		_, _, err = e.svc.FindListMembers(e.dctx, "other.com", "team", "", 0)
		wantCode(t, err, mailcluster.EFORBIDDEN)
	})
	t.Run("Limits", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		many := make([]mailcluster.ListMember, 130)
		for i := range many {
			many[i] = mailcluster.ListMember{Address: fmt.Sprintf("m%04d", i)}
		}
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			_, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Members: many})
			if !strings.Contains(mailcluster.ErrorMessage(err), "add the rest with updates") {
				t.Errorf("message %q", mailcluster.ErrorMessage(err))
			}
			return err
		})
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Members: make([]mailcluster.ListMember, mailcluster.MaxListMembers+1)}))
		})
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{RemoveMembers: make([]mailcluster.ListMember, 200)}))
		})
		// The accounts m0000.. do not exist; the limit of members counts keys.
		putMembers(t, e.st, "example.com", "team", mailcluster.MaxListMembers-1)
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "alice"}}}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "bob"}}}))
		})
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.UpdateAccount(e.ctx, "example.com", "bob", mailcluster.AccountUpdate{AddLists: []string{"team"}}))
		})
		// A change that adds nothing passes at the limit.
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "alice"}},
			RemoveMembers: []mailcluster.ListMember{{Address: "bob"}}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("LargestCreate", func(t *testing.T) {
		// The most members one create takes fit in one cluster write.
		e := mustOpenAddrEnv(t)
		var members []mailcluster.ListMember
		for i := 0; ; i++ {
			mb := fmt.Sprintf("u%03d", i)
			if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: "pass-word-1"}); err != nil {
				t.Fatal(err)
			}
			members = append(members, mailcluster.ListMember{Address: mb})
			_, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Owner: "u000", Members: members})
			if err == nil {
				if err := e.svc.DeleteList(e.ctx, "example.com", "team"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			wantCode(t, err, mailcluster.ETOOLARGE)
			if len(members) < 50 {
				t.Fatalf("only %d members fit in one create", len(members)-1)
			}
			break
		}
		checkTxnSize(t, e.st)
	})
	t.Run("ErrMemberDeletedMeanwhile", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		e.st.beforeNextTxn(func() {
			if err := e.svc.DeleteAccount(e.ctx, "example.com", "bob"); err != nil {
				t.Error(err)
			}
		})
		_, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "bob"}}})
		wantCode(t, err, mailcluster.ECONFLICT)
		if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 0 {
			t.Fatalf("a deleted account is a member: %v", keys)
		}
		// And the other way round: an account deleted after a member was
		// added meanwhile fails instead of leaving the membership.
		e.st.beforeNextTxn(func() {
			if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "alice"}}}); err != nil {
				t.Error(err)
			}
		})
		wantCode(t, e.svc.DeleteAccount(e.ctx, "example.com", "alice"), mailcluster.ECONFLICT)
		if err := e.svc.DeleteAccount(e.ctx, "example.com", "alice"); err != nil {
			t.Fatal(err)
		}
		if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 0 {
			t.Fatalf("a deleted account is a member: %v", keys)
		}
	})
}

// TestListPolicy: who receives a post to a list, by its posting policy.
func TestListPolicy(t *testing.T) {
	e := mustOpenAddrEnv(t)
	l := mustLocal(e.svc)
	for _, mb := range []string{"dave", "erin", "off"} {
		if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: "pass-word-1", Disabled: mb == "off"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff", Members: []string{"alice", "dave"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Owner: "erin",
		Members: []mailcluster.ListMember{{Address: "alice"}, {Address: "bob"}, {Address: "off"}, {Group: "staff"}}}); err != nil {
		t.Fatal(err)
	}
	const members = "alice@example.com,bob@example.com,dave@example.com" // alice once, off left out
	setPolicy := func(p mailcluster.ListPolicy) {
		t.Helper()
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{Policy: &p}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("Members", func(t *testing.T) {
		r := mustResolve(t, l, "team@example.com", "Bob@Example.com", members)
		if r.List == nil || r.List.Address() != "team@example.com" || r.Review {
			t.Fatalf("recipient %+v", r)
		}
		mustResolve(t, l, "TEAM@example.com", "dave@example.com", members) // through the group
		for _, sender := range []string{"erin@example.com", "", "bob@other.com", "carol@other.com", "garbage"} {
			_, err := l.ResolveRecipient("team@example.com", sender)
			wantCode(t, err, mailcluster.EFORBIDDEN)
		}
	})
	t.Run("Anyone", func(t *testing.T) {
		setPolicy(mailcluster.ListPostAnyone)
		mustResolve(t, l, "team@example.com", "someone@gmail.com", members)
		mustResolve(t, l, "team@example.com", "", members)
	})
	t.Run("Moderated", func(t *testing.T) {
		setPolicy(mailcluster.ListPostModerated)
		mustResolve(t, l, "team@example.com", "ERIN@example.com", members)
		for _, sender := range []string{"alice@example.com", "someone@gmail.com", ""} {
			r := mustResolve(t, l, "team@example.com", sender, "erin@example.com")
			if !r.Review || r.List == nil {
				t.Fatalf("post of %q: %+v", sender, r)
			}
		}
	})
	t.Run("ErrDeleting", func(t *testing.T) {
		kv, _ := e.st.Get(schema.List("example.com", "team"))
		e.st.put(t, kv.Key, strings.Replace(string(kv.Value), `"createdAt"`, `"deleting":true,"createdAt"`, 1))
		_, err := l.ResolveRecipient("team@example.com", "erin@example.com")
		wantCode(t, err, mailcluster.ENOTFOUND)
		desc := "x"
		e.refused(t, mailcluster.ECONFLICT, func() error {
			return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{Description: &desc}))
		})
		e.refused(t, mailcluster.ECONFLICT, func() error {
			return errOf(e.svc.UpdateAccount(e.ctx, "example.com", "erin", mailcluster.AccountUpdate{AddLists: []string{"team"}}))
		})
		if l, err := e.svc.FindList(e.ctx, "example.com", "team"); err != nil || !l.Deleting {
			t.Fatalf("list %+v, %v", l, err)
		}
	})
}

// TestDeleteListLarge: a list with more members than one transaction
// holds is deleted in bounded steps, and a deletion that stopped resumes.
func TestDeleteListLarge(t *testing.T) {
	e := mustOpenAddrEnv(t)
	for _, name := range []string{"big", "stopped"} {
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: name}); err != nil {
			t.Fatal(err)
		}
		putMembers(t, e.st, "example.com", name, 450)
	}
	if err := e.svc.DeleteList(e.dctx, "example.com", "big"); err != nil {
		t.Fatal(err)
	}
	if n := e.st.Count(schema.ListMemberPrefix("example.com", "big")); n != 0 {
		t.Fatalf("%d members left", n)
	}
	if _, ok := e.st.Get(schema.List("example.com", "big")); ok {
		t.Fatal("the list record is left")
	}
	if e.st.maxOps > service.MaxDeleteOps {
		t.Errorf("a transaction held %d operations", e.st.maxOps)
	}
	// A deletion marked and stopped (the node went away) resumes.
	kv, _ := e.st.Get(schema.List("example.com", "stopped"))
	e.st.put(t, kv.Key, strings.Replace(string(kv.Value), `"createdAt"`, `"deleting":true,"createdAt"`, 1))
	if err := e.svc.ResumeDomainDeletions(e.ctx); err != nil {
		t.Fatal(err)
	}
	if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 0 {
		t.Fatalf("%d members left after resuming", len(keys))
	}
	if keys := e.keysUnder(schema.PrefixLists); len(keys) != 0 {
		t.Fatalf("lists left after resuming: %v", keys)
	}
}

// mustCreateListsAndGroup creates the lists one and two and the group
// staff in example.com.
func (e addrEnv) mustCreateListsAndGroup(t *testing.T) {
	t.Helper()
	for _, name := range []string{"one", "two"} {
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.CreateGroup(e.ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff"}); err != nil {
		t.Fatal(err)
	}
}

// TestAccountLists: an account joins and leaves lists in the same
// transaction as its own changes, and its deletion removes its
// memberships.
func TestAccountLists(t *testing.T) {
	e := mustOpenAddrEnv(t)
	e.mustCreateListsAndGroup(t)
	t.Run("Create", func(t *testing.T) {
		if _, err := e.svc.CreateAccount(e.dctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank", Password: "pass-word-1",
			Lists: []string{"one", "TWO@example.com"}, Groups: []string{"staff"}}); err != nil {
			t.Fatal(err)
		}
		if ls, _ := e.svc.AccountLists(e.ctx, "example.com", "frank"); len(ls) != 2 {
			t.Fatalf("lists %v", ls)
		}
		if gs, _ := e.svc.AccountGroups(e.ctx, "example.com", "frank"); len(gs) != 1 || gs[0].Name != "staff" {
			t.Fatalf("groups %v", gs)
		}
	})
	t.Run("ErrCreate", func(t *testing.T) {
		for _, in := range []mailcluster.AccountCreate{
			{Lists: []string{"one", "missing"}},
			{Lists: []string{"one@other.com"}},
			{Groups: []string{"missing"}},
			{Groups: []string{"staff@other.com"}},
		} {
			in.Domain, in.Mailbox, in.Password = "example.com", "gina", "pass-word-1"
			e.refused(t, mailcluster.EINVALID, func() error { return errOf(e.svc.CreateAccount(e.ctx, in)) })
		}
	})
	t.Run("Update", func(t *testing.T) {
		a, err := e.svc.UpdateAccount(e.dctx, "example.com", "frank", mailcluster.AccountUpdate{RemoveLists: []string{"one", "nolist"},
			AddLists: []string{"two"}, RemoveGroups: []string{"staff"}})
		if err != nil || a.Mailbox != "frank" {
			t.Fatalf("update %+v, %v", a, err)
		}
		if ls, _ := e.svc.AccountLists(e.ctx, "example.com", "frank"); len(ls) != 1 || ls[0].Name != "two" {
			t.Fatalf("lists %v", ls)
		}
		if gs, _ := e.svc.AccountGroups(e.ctx, "example.com", "frank"); len(gs) != 0 {
			t.Fatalf("groups %v", gs)
		}
		e.refused(t, mailcluster.EINVALID, func() error {
			return errOf(e.svc.UpdateAccount(e.ctx, "example.com", "frank", mailcluster.AccountUpdate{AddLists: []string{"one"}, RemoveLists: []string{"one"}}))
		})
		if _, err := e.svc.UpdateAccount(e.ctx, "example.com", "frank", mailcluster.AccountUpdate{AddGroups: []string{"staff"}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("DeleteRemovesMemberships", func(t *testing.T) {
		if err := e.svc.DeleteAccount(e.dctx, "example.com", "frank"); err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{schema.PrefixListMembers, schema.PrefixGroupMembers} {
			if keys := e.keysUnder(prefix); len(keys) != 0 {
				t.Fatalf("memberships left: %v", keys)
			}
		}
	})
	t.Run("ErrDeleteOwner", func(t *testing.T) {
		owner := "bob"
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "two", mailcluster.ListUpdate{Owner: &owner}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ECONFLICT, func() error {
			err := e.svc.DeleteAccount(e.ctx, "example.com", "bob")
			if !strings.Contains(mailcluster.ErrorMessage(err), "two@example.com") {
				t.Errorf("message %q does not name the list", mailcluster.ErrorMessage(err))
			}
			return err
		})
	})
	t.Run("ErrDeleteTooManyMemberships", func(t *testing.T) {
		var ops []mailcluster.Op
		b, _ := json.Marshal(mailcluster.MailingList{Domain: "example.com", Policy: mailcluster.ListPostMembers, ReplyTo: mailcluster.ListReplyToSender})
		m, _ := json.Marshal(mailcluster.ListMember{Address: "alice@example.com"})
		for i := range 130 {
			name := fmt.Sprintf("l%03d", i)
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.List("example.com", name), Value: b},
				mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.ListMemberAccount("example.com", name, "alice"), Value: m})
		}
		if _, err := e.st.BoltStore.Txn(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ECONFLICT, func() error {
			err := e.svc.DeleteAccount(e.ctx, "example.com", "alice")
			if msg := mailcluster.ErrorMessage(err); !strings.Contains(msg, "130") || !strings.Contains(msg, "remove at least") {
				t.Errorf("message %q", msg)
			}
			return err
		})
	})
	checkTxnSize(t, e.st)
}

// TestAccountMemberships answers what AccountAliases, AccountLists and
// AccountGroups answer, only the parts asked for, with the same refusals.
func TestAccountMemberships(t *testing.T) {
	e := mustOpenAddrEnv(t)
	e.mustCreateListsAndGroup(t)
	if _, err := e.svc.CreateAccount(e.ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank", Password: "pass-word-1",
		Aliases: []string{"sales", "info"}, Lists: []string{"two"}, Groups: []string{"staff"}}); err != nil {
		t.Fatal(err)
	}
	names := func(n int, name func(int) string) []string {
		out := []string{}
		for i := range n {
			out = append(out, name(i))
		}
		return out
	}
	t.Run("OK", func(t *testing.T) {
		m, err := e.svc.AccountMemberships(e.dctx, "Example.com", "Frank", service.MembershipQuery{Aliases: true, Lists: true, Groups: true})
		if err != nil {
			t.Fatal(err)
		}
		as, _ := e.svc.AccountAliases(e.dctx, "example.com", "frank")
		ls, _ := e.svc.AccountLists(e.dctx, "example.com", "frank")
		gs, _ := e.svc.AccountGroups(e.dctx, "example.com", "frank")
		for _, c := range []struct{ got, want []string }{
			{names(len(m.Aliases), func(i int) string { return m.Aliases[i].Address() }), names(len(as), func(i int) string { return as[i].Address() })},
			{names(len(m.Lists), func(i int) string { return m.Lists[i].Name }), names(len(ls), func(i int) string { return ls[i].Name })},
			{names(len(m.Groups), func(i int) string { return m.Groups[i].Name }), names(len(gs), func(i int) string { return gs[i].Name })},
		} {
			if !slices.Equal(c.got, c.want) || len(c.got) == 0 {
				t.Errorf("memberships %v, want %v", c.got, c.want)
			}
		}
		if len(m.Aliases) != 2 || len(m.Lists) != 1 || len(m.Groups) != 1 {
			t.Errorf("memberships %d aliases, %d lists, %d groups", len(m.Aliases), len(m.Lists), len(m.Groups))
		}
	})
	t.Run("OnlyWhatIsAsked", func(t *testing.T) {
		m, err := e.svc.AccountMemberships(e.dctx, "example.com", "frank", service.MembershipQuery{Lists: true})
		if err != nil || m.Aliases != nil || m.Groups != nil || len(m.Lists) != 1 {
			t.Fatalf("%+v, %v", m, err)
		}
	})
	t.Run("Err", func(t *testing.T) {
		other := service.NewContextWithCaller(context.Background(), &mailcluster.Account{Domain: "other.com", Mailbox: "oadmin", AdminRights: mailcluster.AdminDomain})
		for _, tc := range []struct {
			ctx          context.Context
			domain, mbox string
			code         string
		}{
			{other, "example.com", "frank", mailcluster.EFORBIDDEN},
			{e.dctx, "example.com", "nobody", mailcluster.ENOTFOUND},
			{e.dctx, "example.com", "bad name", mailcluster.EINVALID},
		} {
			e.refused(t, tc.code, func() error {
				_, err := e.svc.AccountMemberships(tc.ctx, tc.domain, tc.mbox, service.MembershipQuery{Aliases: true})
				return err
			})
		}
	})
}
