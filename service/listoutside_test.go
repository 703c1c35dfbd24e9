package service_test

import (
	"fmt"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/schema"
)

func TestListOutsideMembers(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		l, err := e.svc.CreateList(e.dctx, mailcluster.ListCreate{Domain: "example.com", Name: "team",
			Members: []mailcluster.ListMember{{Address: "alice"}, {Address: " Zed@Gmail.COM "}, {Address: "carol@other.com"}, {Address: "zed@gmail.com"}}})
		if err != nil {
			t.Fatal(err)
		}
		if l.MemberCount != 3 {
			t.Fatalf("list %+v", l)
		}
		for _, key := range []string{schema.ListMemberExternal("example.com", "team", "zed@gmail.com"),
			schema.ListMemberExternal("example.com", "team", "carol@other.com")} {
			if _, ok := e.st.Get(key); !ok {
				t.Fatalf("no key %s in %v", key, e.keysUnder(schema.PrefixListMembers))
			}
		}
		all, next, err := e.svc.FindListMembers(e.dctx, "example.com", "team", "", 0)
		want := []mailcluster.ListMember{{Address: "alice@example.com"}, {Address: "carol@other.com", External: true}, {Address: "zed@gmail.com", External: true}}
		if err != nil || next != "" || fmt.Sprint(all) != fmt.Sprint(want) {
			t.Fatalf("members %v %q, %v; want %v", all, next, err, want)
		}
		// Pages: the cursor a page returns, and an outside member's
		// address as cursor.
		for _, cursor := range []string{"", "alice@example.com"} {
			page, next, err := e.svc.FindListMembers(e.dctx, "example.com", "team", cursor, 1)
			if err != nil || len(page) != 1 {
				t.Fatalf("page after %q: %v, %v", cursor, page, err)
			}
			rest, _, err := e.svc.FindListMembers(e.dctx, "example.com", "team", next, 5)
			if err != nil || len(rest) == 0 || rest[0] == page[0] {
				t.Fatalf("page after %q: %v, then %v, %v", next, page, rest, err)
			}
		}
		if page, _, err := e.svc.FindListMembers(e.dctx, "example.com", "team", "Carol@Other.com", 5); err != nil ||
			fmt.Sprint(page) != fmt.Sprint(want[2:]) {
			t.Fatalf("page after carol@other.com: %v, %v", page, err)
		}
		// Remove (any case), add again: present members change nothing.
		l, err = e.svc.UpdateList(e.dctx, "example.com", "team", mailcluster.ListUpdate{
			RemoveMembers: []mailcluster.ListMember{{Address: "ZED@gmail.com"}, {Address: "nobody@nowhere.org"}},
			AddMembers:    []mailcluster.ListMember{{Address: "carol@other.com"}, {Address: "new@example.net"}}})
		if err != nil || l.MemberCount != 3 {
			t.Fatalf("update %+v, %v", l, err)
		}
		if _, ok := e.st.Get(schema.ListMemberExternal("example.com", "team", "zed@gmail.com")); ok {
			t.Fatal("zed@gmail.com is still a member")
		}
		if err := e.svc.DeleteList(e.dctx, "example.com", "team"); err != nil {
			t.Fatal(err)
		}
		if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 0 {
			t.Fatalf("members left: %v", keys)
		}
		checkTxnSize(t, e.st)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team", Members: []mailcluster.ListMember{{Address: "x@gmail.com"}}}); err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 60) + ".org"
		for _, addr := range []string{"a@b\r\nRCPT TO:x", "<a@b.org>", long, "@b.org", "a@", "a@b", "a b@c.org", "a%b@c.org", "\"a\"@b.org",
			"a@[127.0.0.1]", "a@b.org>", "a@b.org\x00", "a@b.org,c@d.org", "a@@b.org", "a@-b.org"} {
			e.refused(t, mailcluster.EINVALID, func() error {
				return errOf(e.svc.UpdateList(e.dctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: addr}}}))
			})
			e.refused(t, mailcluster.EINVALID, func() error {
				return errOf(e.svc.CreateList(e.dctx, mailcluster.ListCreate{Domain: "example.com", Name: "other", Members: []mailcluster.ListMember{{Address: addr}}}))
			})
		}
		if keys := e.keysUnder(schema.PrefixListMembers); len(keys) != 1 {
			t.Fatalf("members: %v", keys)
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "other.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.EFORBIDDEN, func() error {
			return errOf(e.svc.UpdateList(e.dctx, "other.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "x@gmail.com"}}}))
		})
	})
	t.Run("Limits", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team"}); err != nil {
			t.Fatal(err)
		}
		putMembers(t, e.st, "example.com", "team", mailcluster.MaxListMembers-1)
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "x@gmail.com"}}}); err != nil {
			t.Fatal(err)
		}
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{AddMembers: []mailcluster.ListMember{{Address: "y@gmail.com"}}}))
		})
		many := make([]mailcluster.ListMember, 130)
		for i := range many {
			many[i] = mailcluster.ListMember{Address: fmt.Sprintf("m%04d@gmail.com", i)}
		}
		e.refused(t, mailcluster.ETOOLARGE, func() error {
			return errOf(e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "big", Members: many}))
		})
	})
	t.Run("Resolve", func(t *testing.T) {
		e := mustOpenAddrEnv(t)
		l := mustLocal(e.svc)
		if _, err := e.svc.CreateAlias(e.ctx, "other.com", "dave", "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "other.com", Name: "inner"}); err != nil {
			t.Fatal(err)
		}
		// carol@other.com is an account of a served domain (a local copy),
		// dave@other.com an alias of bob, inner@other.com a list and
		// ghost@other.com nothing (neither receives); the others go out.
		if _, err := e.svc.CreateList(e.ctx, mailcluster.ListCreate{Domain: "example.com", Name: "team",
			Members: []mailcluster.ListMember{{Address: "alice"}, {Address: "bob"}, {Address: "carol@other.com"}, {Address: "dave@other.com"},
				{Address: "inner@other.com"}, {Address: "ghost@other.com"}, {Address: "Zed@Gmail.com"}, {Address: "yan@example.net"}}}); err != nil {
			t.Fatal(err)
		}
		r := mustResolve(t, l, "team@example.com", "zed@gmail.com", "alice@example.com,bob@example.com,carol@other.com")
		if fmt.Sprint(r.External) != "[yan@example.net zed@gmail.com]" {
			t.Fatalf("external %v", r.External)
		}
		// Members only: outside members may post, others not.
		mustResolve(t, l, "team@example.com", "YAN@example.net", "alice@example.com,bob@example.com,carol@other.com")
		mustResolve(t, l, "team@example.com", "carol@other.com", "alice@example.com,bob@example.com,carol@other.com")
		for _, sender := range []string{"stranger@gmail.com", "", "dave@example.net"} {
			_, err := l.ResolveRecipient("team@example.com", sender)
			wantCode(t, err, mailcluster.EFORBIDDEN)
		}
		// A moderated list's post for review goes to the owner only.
		moderated, owner := mailcluster.ListPostModerated, "alice"
		if _, err := e.svc.UpdateList(e.ctx, "example.com", "team", mailcluster.ListUpdate{Policy: &moderated, Owner: &owner}); err != nil {
			t.Fatal(err)
		}
		if r := mustResolve(t, l, "team@example.com", "zed@gmail.com", "alice@example.com"); !r.Review || len(r.External) != 0 {
			t.Fatalf("review %+v", r)
		}
	})
}
