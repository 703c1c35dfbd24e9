package xmlapi_test

import (
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// listMembers returns the members of a <List> answer as "address" or
// "group:name", comma-separated, after checking <Members count>.
func listMembers(t *testing.T, r *Response) string {
	t.Helper()
	var out []string
	for _, m := range counted(t, r, "List/Members", "Member") {
		if g := m.SelectAttrValue("group", ""); g != "" {
			out = append(out, "group:"+g)
		} else if ty := m.SelectAttrValue("type", ""); ty != "" {
			out = append(out, ty+":"+m.Text())
		} else {
			out = append(out, m.Text())
		}
	}
	return strings.Join(out, ",")
}

// TestLists: CreateList, GetListInfo, UpdateList, GetListList and
// DeleteList with classic request documents.
func TestLists(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	for _, m := range []string{"alice", "bob", "carol"} {
		e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: m})
	}
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "other.example", Mailbox: "olga"})
	e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "sales", Members: []string{"bob"}})

	t.Run("Create", func(t *testing.T) {
		r := e.classic(t, "0", "CreateList", `<Domain>example.com</Domain>
			<ListName>Staff</ListName>
			<Description>All staff</Description>
			<Policy>Moderated</Policy>
			<ReplyTo>list</ReplyTo>
			<Owner>carol@example.com</Owner>
			<Members>
				<Member>alice@example.com</Member>
				<Member group="sales"/>
			</Members>`).MustOK(t)
		if got := r.Result().SelectElement("List").SelectAttrValue("id", ""); got != "staff@example.com" {
			t.Fatalf("List id %q:\n%s", got, r.Body)
		}
		mustTexts(t, r, map[string]string{
			"List/Name": "staff", "List/Domain": "example.com", "List/Address": "staff@example.com",
			"List/Description": "All staff", "List/Policy": "moderated", "List/ReplyTo": "list",
			"List/Owner": "carol@example.com", "List/MemberCount": "2",
		})
		if got := listMembers(t, r); got != "alice@example.com,group:sales" {
			t.Fatalf("members %s", got)
		}
		l, err := e.Svc.FindList(sys(), "example.com", "staff")
		if err != nil || l.Policy != mailcluster.ListPostModerated || l.ReplyTo != mailcluster.ListReplyToList ||
			l.Owner != "carol@example.com" || l.Description != "All staff" || l.MemberCount != 2 {
			t.Fatalf("stored %+v, %v", l, err)
		}
	})
	t.Run("InfoByAddress", func(t *testing.T) {
		for _, params := range []string{
			"<List>staff@example.com</List>",
			"<Domain>example.com</Domain><Name>staff</Name>",
			"<Domain>Example.COM</Domain><ListName>STAFF</ListName>",
		} {
			r := e.classic(t, "0", "GetListInfo", params).MustOK(t)
			if r.Text("List/Policy") != "moderated" || listMembers(t, r) != "alice@example.com,group:sales" {
				t.Fatalf("%s:\n%s", params, r.Body)
			}
		}
	})
	t.Run("Update", func(t *testing.T) {
		r := e.classic(t, "0", "UpdateList", `<Domain>example.com</Domain><ListName>staff</ListName>
			<Policy>anyone</Policy><ReplyTo/>
			<Members>
				<Member>bob@example.com</Member>
				<Member action="remove">alice@example.com</Member>
				<Member action="Delete" group="sales"/>
			</Members>`).MustOK(t)
		if r.Text("List/Policy") != "anyone" || r.Text("List/ReplyTo") != "list" || r.Text("List/Description") != "All staff" {
			t.Fatalf("fields (an empty ReplyTo and an absent Description are unchanged):\n%s", r.Body)
		}
		if got := listMembers(t, r); got != "bob@example.com" {
			t.Fatalf("members %s", got)
		}
		ms, _, err := e.Svc.FindListMembers(sys(), "example.com", "staff", "", 100)
		if err != nil || len(ms) != 1 || ms[0].Address != "bob@example.com" {
			t.Fatalf("stored members %v, %v", ms, err)
		}
	})
	t.Run("EmptyMembers", func(t *testing.T) {
		r := e.classic(t, "0", "UpdateList", "<List>staff@example.com</List><Description>Everyone</Description><Members/>").MustOK(t)
		if r.Text("List/Description") != "Everyone" || listMembers(t, r) != "bob@example.com" {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("List", func(t *testing.T) {
		e.mustCreateList(t, mailcluster.ListCreate{Domain: "example.com", Name: "announce"})
		r := e.classic(t, "0", "GetListList", "<Domain>example.com</Domain>").MustOK(t)
		ls := counted(t, r, "Lists", "List")
		if got := attrValues(ls, "id"); got != "announce@example.com,staff@example.com" {
			t.Fatalf("ids %s", got)
		}
		mustAttrs(t, ls[1], map[string]string{"id": "staff@example.com", "name": "staff", "description": "Everyone",
			"policy": "anyone", "replyTo": "list", "owner": "carol@example.com", "members": "1"})
		r = e.classic(t, "0", "GetListList", "<Domain>other.example</Domain>").MustOK(t)
		if ls := counted(t, r, "Lists", "List"); len(ls) != 0 {
			t.Fatalf("lists of other.example:\n%s", r.Body)
		}
	})

	refused := func(t *testing.T, id int, op, params string) string {
		t.Helper()
		return e.refusedClassic(t, id, op, params, "example.com", "other.example")
	}
	t.Run("OutsideMembers", func(t *testing.T) {
		// Addresses of other domains are outside members, served or not.
		e.classic(t, "0", "CreateList", "<Domain>example.com</Domain><ListName>outside</ListName><Members><Member>alice@example.com</Member>"+
			"<Member>Someone@Elsewhere.example</Member><Member>olga@other.example</Member></Members>").MustOK(t)
		e.classic(t, "0", "UpdateList", `<List>outside@example.com</List><Members><Member action="remove">olga@other.example</Member>`+
			"<Member>new@far.example</Member></Members>").MustOK(t)
		r := e.classic(t, "0", "GetListInfo", "<List>outside@example.com</List>").MustOK(t)
		if got := listMembers(t, r); got != "alice@example.com,external:new@far.example,external:someone@elsewhere.example" {
			t.Fatalf("members %s", got)
		}
		long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 60) + ".org"
		for _, addr := range []string{"a@b&#13;&#10;RCPT TO:x", "&lt;a@b.example&gt;", long, "@b.example", "a@", "a@b", "a%b@c.example", "nobody@example.com"} {
			for _, c := range []struct{ op, params string }{
				{"UpdateList", "<List>outside@example.com</List><Description>Changed</Description><Members><Member>" + addr + "</Member></Members>"},
				{"CreateList", "<Domain>example.com</Domain><ListName>outside2</ListName><Members><Member>alice@example.com</Member><Member>" + addr + "</Member></Members>"},
			} {
				refused(t, xmlapi.StatusInvalidParameter, c.op, c.params)
			}
		}
		e.classic(t, "0", "DeleteList", "<List>outside@example.com</List>").MustOK(t)
	})
	t.Run("ErrNameClash", func(t *testing.T) {
		for _, name := range []string{"alice", "staff"} {
			refused(t, xmlapi.StatusConflict, "CreateList", "<Domain>example.com</Domain><ListName>"+name+"</ListName>")
		}
	})
	t.Run("ErrUnknownAction", func(t *testing.T) {
		msg := refused(t, xmlapi.StatusInvalidParameter, "UpdateList",
			`<List>staff@example.com</List><Members><Member>alice@example.com</Member><Member action="replace">bob@example.com</Member></Members>`)
		if !strings.Contains(msg, `"replace"`) || !strings.Contains(msg, "Members/Member") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrBadValues", func(t *testing.T) {
		for _, c := range []struct{ op, params, names string }{
			{"UpdateList", "<List>staff@example.com</List><Policy>open</Policy>", `"open"`},
			{"UpdateList", "<List>staff@example.com</List><ReplyTo>all</ReplyTo>", `"all"`},
			{"UpdateList", `<List>staff@example.com</List><Members><Member group="sales">bob@example.com</Member></Members>`, "not both"},
			{"UpdateList", `<List>staff@example.com</List><Members><Member/></Members>`, "required"},
			{"UpdateList", `<List>staff@example.com</List><Members>bob@example.com</Members>`, "<Member>"},
			{"UpdateList", `<List>staff@example.com</List><Members><Address>bob@example.com</Address></Members>`, "<Address>"},
			{"UpdateList", `<Domain>other.example</Domain><List>staff@example.com</List><Description>x</Description>`, "other.example"},
			{"CreateList", `<Domain>example.com</Domain><ListName>new</ListName><Members><Member action="remove">bob@example.com</Member></Members>`, "UpdateList"},
		} {
			msg := refused(t, xmlapi.StatusInvalidParameter, c.op, c.params)
			if !strings.Contains(msg, c.names) {
				t.Errorf("%s %s: message %q does not mention %s", c.op, c.params, msg, c.names)
			}
		}
	})
	t.Run("ErrModeratedWithoutOwner", func(t *testing.T) {
		refused(t, xmlapi.StatusInvalidParameter, "CreateList", "<Domain>example.com</Domain><ListName>mod</ListName><Policy>moderated</Policy>")
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			"<Domain>example.com</Domain>": "ListName (or List or Name)",
			"<ListName>staff</ListName>":   "Domain",
		} {
			msg := e.classic(t, "0", "GetListInfo", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if msg != "Missing required parameter: "+name+"." {
				t.Fatalf("%s: message %q", params, msg)
			}
		}
		e.classic(t, "0", "GetListList", "").MustStatus(t, xmlapi.StatusMissingParameter)
	})
	t.Run("Delete", func(t *testing.T) {
		r := e.classic(t, "0", "DeleteList", "<Domain>example.com</Domain><ListName>staff</ListName>").MustOK(t)
		if len(r.Result().ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		if _, err := e.Svc.FindList(sys(), "example.com", "staff"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("list still there: %v", err)
		}
		e.classic(t, "0", "GetListInfo", "<List>staff@example.com</List>").MustStatus(t, xmlapi.StatusNotFound)
		e.classic(t, "0", "DeleteList", "<List>staff@example.com</List>").MustStatus(t, xmlapi.StatusNotFound)
		r = e.classic(t, "0", "GetListList", "<Domain>example.com</Domain>").MustOK(t)
		if got := attrValues(r.Result().FindElements("Lists/List"), "id"); got != "announce@example.com" {
			t.Fatalf("lists %s", got)
		}
	})
}
