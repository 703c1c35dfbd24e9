package xmlapi_test

import (
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// groupMembers returns the members of a <Group> answer, comma-separated,
// after checking <Members count>.
func groupMembers(t *testing.T, r *Response) string {
	t.Helper()
	return texts(counted(t, r, "Group/Members", "Member"))
}

// TestGroups: CreateGroup, GetGroupInfo, UpdateGroup, GetGroupList and
// DeleteGroup with classic request documents.
func TestGroups(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	for _, m := range []string{"alice", "bob", "carol"} {
		e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: m})
	}
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "other.example", Mailbox: "olga"})

	t.Run("Create", func(t *testing.T) {
		r := e.classic(t, "0", "CreateGroup", `<Domain>example.com</Domain>
			<Group>sales</Group>
			<Description>Sales team</Description>
			<QuotaBytes>1048576</QuotaBytes>
			<QuotaMessages>100</QuotaMessages>
			<Members><Member>alice</Member><Member>bob@example.com</Member></Members>`).MustOK(t)
		mustAttrs(t, r.Result().SelectElement("Group"), map[string]string{"id": "sales", "domain": "example.com"})
		mustTexts(t, r, map[string]string{
			"Group/Name": "sales", "Group/Domain": "example.com", "Group/Description": "Sales team",
			"Group/QuotaBytes": "1048576", "Group/QuotaMessages": "100", "Group/MemberCount": "2",
		})
		if got := groupMembers(t, r); got != "alice@example.com,bob@example.com" {
			t.Fatalf("members %s", got)
		}
		g, err := e.Svc.FindGroup(sys(), "example.com", "sales")
		if err != nil || g.QuotaBytes != 1<<20 || g.QuotaMessages != 100 || g.MemberCount != 2 {
			t.Fatalf("stored %+v, %v", g, err)
		}
	})
	t.Run("Info", func(t *testing.T) {
		for _, params := range []string{
			"<Domain>example.com</Domain><Group>sales</Group>",
			"<Domain>example.com</Domain><GroupName>sales</GroupName>",
			"<Domain>example.com</Domain><Name>sales</Name>",
		} {
			r := e.classic(t, "0", "GetGroupInfo", params).MustOK(t)
			if r.Text("Group/Description") != "Sales team" || groupMembers(t, r) != "alice@example.com,bob@example.com" {
				t.Fatalf("%s:\n%s", params, r.Body)
			}
		}
	})
	t.Run("Update", func(t *testing.T) {
		r := e.classic(t, "0", "UpdateGroup", `<Domain>example.com</Domain><Group>sales</Group>
			<QuotaBytes/><QuotaMessages>200</QuotaMessages>
			<Members><Member action="remove">alice@example.com</Member><Member>carol</Member></Members>`).MustOK(t)
		if r.Text("Group/QuotaBytes") != "1048576" || r.Text("Group/QuotaMessages") != "200" || r.Text("Group/Description") != "Sales team" {
			t.Fatalf("fields (an empty number and an absent Description are unchanged):\n%s", r.Body)
		}
		if got := groupMembers(t, r); got != "bob@example.com,carol@example.com" {
			t.Fatalf("members %s", got)
		}
		ms, _, err := e.Svc.FindGroupMembers(sys(), "example.com", "sales", "", 100)
		if err != nil || strings.Join(ms, ",") != "bob@example.com,carol@example.com" {
			t.Fatalf("stored members %v, %v", ms, err)
		}
	})
	t.Run("List", func(t *testing.T) {
		e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "admins"})
		r := e.classic(t, "0", "GetGroupList", "<Domain>example.com</Domain>").MustOK(t)
		gs := counted(t, r, "Groups", "Group")
		if got := attrValues(gs, "id"); got != "admins,sales" {
			t.Fatalf("ids %s", got)
		}
		mustAttrs(t, gs[1], map[string]string{"id": "sales", "domain": "example.com", "description": "Sales team",
			"quotaBytes": "1048576", "quotaMessages": "200", "members": "2"})
	})

	refused := func(t *testing.T, id int, op, params string) string {
		t.Helper()
		return e.refusedClassic(t, id, op, params, "example.com", "other.example")
	}
	t.Run("ErrBadValues", func(t *testing.T) {
		for _, c := range []struct{ op, params, names string }{
			{"UpdateGroup", `<Domain>example.com</Domain><Group>sales</Group><Members><Member group="admins"/></Members>`, "group"},
			{"UpdateGroup", `<Domain>example.com</Domain><Group>sales</Group><Members><Member action="move">alice</Member></Members>`, `"move"`},
			{"UpdateGroup", `<Domain>example.com</Domain><Group>sales</Group><QuotaBytes>lots</QuotaBytes>`, "QuotaBytes"},
			{"CreateGroup", `<Domain>example.com</Domain><Group>new</Group><Members><Member action="remove">alice</Member></Members>`, "UpdateGroup"},
		} {
			msg := refused(t, xmlapi.StatusInvalidParameter, c.op, c.params)
			if !strings.Contains(msg, c.names) {
				t.Errorf("%s %s: message %q does not mention %s", c.op, c.params, msg, c.names)
			}
		}
	})
	t.Run("ErrOtherDomainMember", func(t *testing.T) {
		refused(t, xmlapi.StatusInvalidParameter, "UpdateGroup",
			`<Domain>example.com</Domain><Group>sales</Group><Description>x</Description><Members><Member>olga@other.example</Member></Members>`)
	})
	t.Run("ErrExists", func(t *testing.T) {
		refused(t, xmlapi.StatusConflict, "CreateGroup", "<Domain>example.com</Domain><Group>sales</Group>")
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			"<Domain>example.com</Domain>": "Group (or GroupName or Name)",
			"<Group>sales</Group>":         "Domain",
		} {
			msg := e.classic(t, "0", "GetGroupInfo", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if msg != "Missing required parameter: "+name+"." {
				t.Fatalf("%s: message %q", params, msg)
			}
		}
	})
	t.Run("Delete", func(t *testing.T) {
		r := e.classic(t, "0", "DeleteGroup", "<Domain>example.com</Domain><Group>sales</Group>").MustOK(t)
		if len(r.Result().ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		e.classic(t, "0", "GetGroupInfo", "<Domain>example.com</Domain><Group>sales</Group>").MustStatus(t, xmlapi.StatusNotFound)
		r = e.classic(t, "0", "GetGroupList", "<Domain>example.com</Domain>").MustOK(t)
		if got := attrValues(r.Result().FindElements("Groups/Group"), "id"); got != "admins" {
			t.Fatalf("groups %s", got)
		}
	})
}
