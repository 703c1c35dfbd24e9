package service_test

import (
	"fmt"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
)

// TestDeleteDomainAddresses: deleting a domain removes its aliases (with
// their index entries), lists, list members, groups and group members,
// and the aliases of other domains that point into it, in bounded
// transactions; nothing of the domain is left under any prefix.
func TestDeleteDomainAddresses(t *testing.T) {
	e := mustOpenAddrEnv(t)
	ctx := e.ctx
	for i := range 60 {
		target := []string{"alice", "bob"}[i%2]
		if _, err := e.svc.CreateAlias(ctx, "example.com", fmt.Sprintf("a%02d", i), target); err != nil {
			t.Fatal(err)
		}
	}
	for _, al := range [][3]string{
		{"example.com", "carol", "carol@other.com"}, // out of the domain
		{"other.com", "in", "alice@example.com"},    // into the domain
		{"other.com", "in2", "bob@example.com"},
		{"other.com", "stays", "carol"},
	} {
		if _, err := e.svc.CreateAlias(ctx, al[0], al[1], al[2]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.CreateGroup(ctx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff", QuotaBytes: 10, Members: []string{"alice", "bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Owner: "alice",
		Members: []mailcluster.ListMember{{Address: "bob"}, {Group: "staff"}}}); err != nil {
		t.Fatal(err)
	}
	putMembers(t, e.st, "example.com", "team", 150)
	if _, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "other.com", Name: "keep", Members: []mailcluster.ListMember{{Address: "carol"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateGroup(ctx, mailcluster.GroupCreate{Domain: "other.com", Name: "keep", Members: []string{"carol"}}); err != nil {
		t.Fatal(err)
	}
	otherBefore := e.keysOf("other.com")

	if err := e.svc.DeleteDomain(ctx, "example.com", true); err != nil {
		t.Fatal(err)
	}
	if left := e.keysOf("example.com"); len(left) != 0 {
		t.Fatalf("%d keys of the deleted domain are left, first %q", len(left), left[0])
	}
	otherAfter := e.keysOf("other.com")
	want := map[string]bool{}
	for _, k := range otherBefore {
		// The aliases into the deleted domain go, and every index entry
		// naming one of its addresses.
		want[k] = k != schema.Alias("other.com", "in") && k != schema.Alias("other.com", "in2") && !strings.Contains(k, "example.com")
	}
	for _, k := range otherAfter {
		if !want[k] {
			t.Errorf("key %s of the other domain appeared", k)
		}
		delete(want, k)
	}
	for k, kept := range want {
		if kept {
			t.Errorf("key %s of the other domain is gone", k)
		}
	}
	if e.st.maxOps > service.MaxDeleteOps {
		t.Errorf("a transaction held %d operations", e.st.maxOps)
	}
	mustResolve(t, mustLocal(e.svc), "stays@other.com", "", "carol@other.com")
	_, err := mustLocal(e.svc).ResolveRecipient("in@other.com", "")
	wantCode(t, err, mailcluster.ENOTFOUND)
}

// keysOf returns every key that names domain or one of its addresses.
func (e addrEnv) keysOf(domain string) []string {
	var out []string
	for _, kv := range e.st.List("", "", 0) {
		if strings.Contains(kv.Key, domain) {
			out = append(out, kv.Key)
		}
	}
	return out
}

// TestDeleteDomainLeftoverBatches: the records left once the accounts are
// gone (here exactly one batch of usage records, then list members) go in
// transactions of at most MaxDeleteOps operations.
func TestDeleteDomainLeftoverBatches(t *testing.T) {
	e := mustOpenAddrEnv(t)
	if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
		t.Fatal(err)
	}
	putMembers(t, e.st, "example.com", "team", 150)
	var ops []mailcluster.Op
	for i := range service.MaxDeleteOps - 1 {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Usage("example.com", fmt.Sprintf("gone%03d", i)), Value: []byte(`{}`)})
	}
	if _, err := e.st.BoltStore.Txn(e.ctx, ops); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []string{"alice", "bob", "dadmin"} {
		if err := e.svc.DeleteAccount(e.ctx, "example.com", mb); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.DeleteDomain(e.ctx, "example.com", true); err != nil {
		t.Fatal(err)
	}
	if left := e.keysOf("example.com"); len(left) != 0 {
		t.Fatalf("%d keys left, first %q", len(left), left[0])
	}
	if e.st.maxOps > service.MaxDeleteOps {
		t.Errorf("a transaction held %d operations", e.st.maxOps)
	}
}
