package xmlapi_test

import (
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// TestAliases: CreateAlias, GetAliasList, UpdateAlias and DeleteAlias
// with classic request documents, and what the client reads back.
func TestAliases(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "other.example", Mailbox: "bob"})

	t.Run("Create", func(t *testing.T) {
		r := e.classic(t, "0", "CreateAlias",
			"<Domain>example.com</Domain><Alias>Sales</Alias><Target>frank@example.com</Target>").MustOK(t)
		al := r.Result().SelectElement("Alias")
		if al == nil {
			t.Fatalf("no Alias:\n%s", r.Body)
		}
		for k, want := range map[string]string{"id": "sales@example.com", "name": "sales", "domain": "example.com", "target": "frank@example.com"} {
			if got := al.SelectAttrValue(k, ""); got != want {
				t.Errorf("Alias %s = %q, want %q", k, got, want)
			}
		}
		if al.SelectAttrValue("created", "") == "" {
			t.Errorf("no created:\n%s", r.Body)
		}
		a, err := e.Svc.FindAlias(sys(), "example.com", "sales")
		if err != nil || a.Target != "frank@example.com" {
			t.Fatalf("stored %+v, %v", a, err)
		}
	})
	t.Run("CreateByAddress", func(t *testing.T) {
		// The full address alone names the domain.
		r := e.classic(t, "0", "CreateAlias", "<Alias>info@example.com</Alias><Target>frank@example.com</Target>").MustOK(t)
		if got := r.Result().SelectElement("Alias").SelectAttrValue("id", ""); got != "info@example.com" {
			t.Fatalf("id %q", got)
		}
	})
	t.Run("List", func(t *testing.T) {
		r := e.classic(t, "0", "GetAliasList", "<Domain>example.com</Domain>").MustOK(t)
		als := counted(t, r, "Aliases", "Alias")
		if got := attrValues(als, "id"); got != "info@example.com,sales@example.com" {
			t.Fatalf("ids %s", got)
		}
		if got := attrValues(als, "target"); got != "frank@example.com,frank@example.com" {
			t.Fatalf("targets %s", got)
		}
		r = e.classic(t, "0", "GetAliasList", "<Domain>other.example</Domain>").MustOK(t)
		if als := counted(t, r, "Aliases", "Alias"); len(als) != 0 {
			t.Fatalf("aliases of other.example:\n%s", r.Body)
		}
	})
	t.Run("Update", func(t *testing.T) {
		r := e.classic(t, "0", "UpdateAlias",
			"<Domain>example.com</Domain><Alias>sales@example.com</Alias><Target>alice@example.com</Target>").MustOK(t)
		if got := r.Result().SelectElement("Alias").SelectAttrValue("target", ""); got != "alice@example.com" {
			t.Fatalf("target %q:\n%s", got, r.Body)
		}
		if a, err := e.Svc.FindAlias(sys(), "example.com", "sales"); err != nil || a.Target != "alice@example.com" {
			t.Fatalf("stored %+v, %v", a, err)
		}
	})
	t.Run("ErrNameClash", func(t *testing.T) {
		// Accounts, aliases and lists share one name space.
		for _, name := range []string{"alice", "info"} {
			e.refusedClassic(t, xmlapi.StatusConflict, "CreateAlias",
				"<Domain>example.com</Domain><Alias>"+name+"</Alias><Target>frank@example.com</Target>", "example.com")
		}
	})
	t.Run("ErrDomainsDisagree", func(t *testing.T) {
		msg := e.refusedClassic(t, xmlapi.StatusInvalidParameter, "CreateAlias",
			"<Domain>other.example</Domain><Alias>x@example.com</Alias><Target>frank@example.com</Target>", "example.com", "other.example")
		if !strings.Contains(msg, "other.example") || !strings.Contains(msg, "example.com") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			"<Domain>example.com</Domain><Target>frank@example.com</Target>": "Alias",
			"<Alias>x</Alias><Target>frank@example.com</Target>":             "Domain",
			"<Domain>example.com</Domain><Alias>x</Alias>":                   "Target",
		} {
			msg := e.classic(t, "0", "CreateAlias", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if msg != "Missing required parameter: "+name+"." {
				t.Fatalf("%s: message %q", params, msg)
			}
		}
	})
	t.Run("ErrTargetNotFound", func(t *testing.T) {
		e.refusedClassic(t, xmlapi.StatusNotFound, "CreateAlias",
			"<Domain>example.com</Domain><Alias>x</Alias><Target>nobody@example.com</Target>", "example.com")
	})
	t.Run("Delete", func(t *testing.T) {
		r := e.classic(t, "0", "DeleteAlias", "<Domain>example.com</Domain><Alias>info</Alias>").MustOK(t)
		if len(r.Result().ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		if _, err := e.Svc.FindAlias(sys(), "example.com", "info"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("alias still there: %v", err)
		}
		r = e.classic(t, "0", "GetAliasList", "<Domain>example.com</Domain>").MustOK(t)
		if got := attrValues(r.Result().FindElements("Aliases/Alias"), "id"); got != "sales@example.com" {
			t.Fatalf("aliases %s", got)
		}
		e.classic(t, "0", "DeleteAlias", "<Domain>example.com</Domain><Alias>info</Alias>").MustStatus(t, xmlapi.StatusNotFound)
	})
}
