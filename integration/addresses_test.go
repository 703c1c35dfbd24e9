package integration_test

import (
	"strings"
	"testing"

	"mailcluster/internal/harness"
)

// TestClusterAddresses manages an alias, a group and a mailing list on the
// primary; the secondary refuses the same writes (naming the primary)
// and, once they replicated, its SMTP listener delivers to the alias's
// target, to every member of the list (with its list headers) and to the
// postmaster of the domain.
func TestClusterAddresses(t *testing.T) {
	c, p := setupMailCluster(t, 2, nil)
	prim, sec := c.Nodes[p], c.Nodes[c.Secondaries(p)[0]]
	for _, mb := range []string{"carol", "dave"} {
		if code, body := admin(t, prim, "POST", "/api/v1/domains/example.com/accounts",
			`{"mailbox":"`+mb+`","password":"`+mb+`-pass-123"}`); code != 201 {
			t.Fatalf("create %s: %d %s", mb, code, body)
		}
	}
	writes := []struct{ path, body string }{
		{"/api/v1/domains/example.com/aliases", `{"name":"sales","target":"alice@example.com"}`},
		{"/api/v1/domains/example.com/groups", `{"name":"team","members":["carol@example.com","dave@example.com"]}`},
		{"/api/v1/domains/example.com/lists", `{"name":"all","description":"Everyone","policy":"anyone","replyTo":"list","members":[{"address":"bulk@example.com"},{"group":"team"}]}`},
	}
	for _, w := range writes {
		code, body := admin(t, sec, "POST", w.path, w.body)
		if code != 403 || !strings.Contains(body, prim.BaseURL) {
			t.Fatalf("POST %s on the secondary: %d %s, want 403 naming %s", w.path, code, body, prim.BaseURL)
		}
		if code, body := admin(t, prim, "POST", w.path, w.body); code != 201 {
			t.Fatalf("POST %s on the primary: %d %s", w.path, code, body)
		}
	}
	eventually(t, waitTimeout, "list replicated to the secondary", func() bool {
		code, _ := admin(t, sec, "GET", "/api/v1/domains/example.com/lists/all", "")
		return code == 200
	})
	// The refused writes changed nothing: exactly one alias exists.
	if code, body := admin(t, sec, "GET", "/api/v1/domains/example.com/aliases", ""); code != 200 || strings.Count(body, `"name":"sales"`) != 1 {
		t.Fatalf("aliases on the secondary: %d %s", code, body)
	}

	if out, ok := swaks(t, sec.SMTP, "sales@example.com", "to-alias", "For sales."); !ok {
		t.Fatalf("mail to the alias:\n%s", out)
	}
	if out, ok := swaks(t, sec.SMTP, "all@example.com", "to-list", "For everyone."); !ok {
		t.Fatalf("mail to the list:\n%s", out)
	}
	if out, ok := swaks(t, sec.SMTP, "postmaster@example.com", "to-postmaster", "For the postmaster."); !ok {
		t.Fatalf("mail to postmaster@:\n%s", out)
	}
	if out, ok := swaks(t, sec.SMTP, "nobody@example.com", "to-nobody", "x"); ok || !strings.Contains(out, "550") {
		t.Fatalf("mail to an unknown address: ok=%v\n%s", ok, out)
	}

	if _, ok := allMessages(t, prim, "alice@example.com")["to-alias"]; !ok {
		t.Fatal("the alias's target did not receive the mail")
	}
	for _, member := range []string{"bulk@example.com", "carol@example.com", "dave@example.com"} {
		id, ok := allMessages(t, prim, member)["to-list"]
		if !ok {
			t.Fatalf("list member %s did not receive the list mail", member)
		}
		mb, _, _ := strings.Cut(member, "@")
		code, raw := admin(t, prim, "GET", "/api/v1/domains/example.com/accounts/"+mb+"/messages/"+id, "")
		if code != 200 || !strings.Contains(raw, "List-Id: ") || !strings.Contains(raw, "<all.example.com>") ||
			!strings.Contains(raw, "List-Post: <mailto:all@example.com>") || !strings.Contains(raw, "Reply-To: <all@example.com>") {
			t.Fatalf("list copy of %s lacks its list headers: %d\n%s", member, code, raw)
		}
	}
	if _, ok := allMessages(t, prim, "alice@example.com")["to-list"]; ok {
		t.Fatal("alice is no member of the list but received its mail")
	}
	// The postmaster of a domain without its own is the first global
	// administrator, the cluster's bootstrap administrator here.
	if _, ok := allMessages(t, prim, harness.AdminUser)["to-postmaster"]; !ok {
		t.Fatalf("postmaster@example.com did not reach %s", harness.AdminUser)
	}
}
