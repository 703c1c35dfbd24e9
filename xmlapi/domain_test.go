package xmlapi_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

func TestGetDomainList(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "empty.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})

	domainIDs := func(r *Response) []string {
		var ids []string
		for _, d := range r.Result().FindElements("Domains/Domain") {
			ids = append(ids, d.SelectAttrValue("id", ""))
		}
		return ids
	}

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "GetDomainList", "").MustOK(t)
		if got := strings.Join(domainIDs(r), ","); got != "empty.example,example.com,localhost" {
			t.Fatalf("domains %s", got)
		}
		if len(r.Result().FindElements("Domains/Domain/*")) != 0 {
			t.Fatalf("users listed without <Get><Users/></Get>:\n%s", r.Body)
		}
	})
	for _, get := range []string{"<Get><Users/></Get>", "<Get><All/></Get>"} {
		t.Run("Users"+get, func(t *testing.T) {
			r := e.Call(t, "GetDomainList", get).MustOK(t)
			want := map[string]string{"empty.example": "", "example.com": "alice,bob", "localhost": "admin"}
			for _, d := range r.Result().FindElements("Domains/Domain") {
				var users []string
				for _, u := range d.FindElements("Users/User") {
					users = append(users, u.SelectAttrValue("id", ""))
				}
				id := d.SelectAttrValue("id", "")
				if got := strings.Join(users, ","); got != want[id] {
					t.Errorf("users of %s: %q, want %q", id, got, want[id])
				}
				delete(want, id)
			}
			if len(want) != 0 {
				t.Fatalf("domains missing: %v\n%s", want, r.Body)
			}
		})
	}
}

func TestGetDomainInfo(t *testing.T) {
	e := MustOpenEnv(t)
	if _, err := e.Svc.CreateDomain(service.SystemContext(context.Background(), "test"), &mailcluster.Domain{Name: "example.com", Description: "Example", MaxAccounts: 5}); err != nil {
		t.Fatal(err)
	}
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "GetDomainInfo", "<Domain>Example.COM</Domain>").MustOK(t)
		d := r.Result().SelectElement("Domain")
		if d == nil || d.SelectAttrValue("id", "") != "example.com" {
			t.Fatalf("no Domain id:\n%s", r.Body)
		}
		for path, want := range map[string]string{
			"Domain/Name": "example.com", "Domain/Description": "Example",
			"Domain/MaxAccounts": "5", "Domain/AccountCount": "1",
		} {
			if got := r.Text(path); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		if r.Text("Domain/Created") == "" || r.Text("Domain/Updated") == "" {
			t.Errorf("timestamps missing:\n%s", r.Body)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		msg := e.Call(t, "GetDomainInfo", "<Domain>nowhere.example</Domain>").MustStatus(t, xmlapi.StatusNotFound)
		if !strings.Contains(msg, "nowhere.example") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for _, params := range []string{"", "<Domain/>", "<Domain>  </Domain>", "<domain>example.com</domain>"} {
			msg := e.Call(t, "GetDomainInfo", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if msg != "Missing required parameter: Domain." {
				t.Fatalf("message %q", msg)
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.Call(t, "GetDomainInfo", "<Domain>bad_name!</Domain>").MustStatus(t, xmlapi.StatusInvalidParameter)
	})
}

func TestCreateDomain(t *testing.T) {
	e := MustOpenEnv(t)
	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "CreateDomain", "<Domain>example.com</Domain><Description>Our domain</Description><MaxAccounts>10</MaxAccounts>").MustOK(t)
		if r.Text("Domain/Name") != "example.com" || r.Text("Domain/MaxAccounts") != "10" || r.Text("Domain/AccountCount") != "0" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		d, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "example.com")
		if err != nil || d.Description != "Our domain" || d.MaxAccounts != 10 {
			t.Fatalf("stored %+v, %v", d, err)
		}
	})
	t.Run("NameOnly", func(t *testing.T) {
		e.Call(t, "CreateDomain", "<Domain>plain.example</Domain>").MustOK(t)
		if d, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "plain.example"); err != nil || d.MaxAccounts != 0 || d.Description != "" {
			t.Fatalf("stored %+v, %v", d, err)
		}
	})
	t.Run("Postmaster", func(t *testing.T) {
		r := e.Call(t, "CreateDomain", "<Domain>pm.example</Domain><Postmaster>admin@localhost</Postmaster>").MustOK(t)
		if r.Text("Domain/Postmaster") != "admin@localhost" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		e.Call(t, "CreateDomain", "<Domain>pm2.example</Domain><Postmaster>nobody@localhost</Postmaster>").MustStatus(t, xmlapi.StatusInvalidParameter)
		if _, err := e.Svc.FindDomain(sys(), "pm2.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("a refused CreateDomain created the domain: %v", err)
		}
	})
	t.Run("ErrExists", func(t *testing.T) {
		msg := e.Call(t, "CreateDomain", "<Domain>example.com</Domain>").MustStatus(t, xmlapi.StatusConflict)
		if !strings.Contains(msg, "already exists") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		e.Call(t, "CreateDomain", "<Description>x</Description>").MustStatus(t, xmlapi.StatusMissingParameter)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, params := range []string{
			"<Domain>-bad.example</Domain>",
			"<Domain>new.example</Domain><MaxAccounts>many</MaxAccounts>",
			"<Domain>new.example</Domain><MaxAccounts>-1</MaxAccounts>",
		} {
			e.Call(t, "CreateDomain", params).MustStatus(t, xmlapi.StatusInvalidParameter)
		}
		if _, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "new.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("an invalid request created the domain: %v", err)
		}
	})
}

func TestUpdateDomain(t *testing.T) {
	e := MustOpenEnv(t)
	if _, err := e.Svc.CreateDomain(service.SystemContext(context.Background(), "test"), &mailcluster.Domain{Name: "example.com", Description: "Old", MaxAccounts: 3}); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><Description>New</Description>").MustOK(t)
		if r.Text("Domain/Description") != "New" || r.Text("Domain/MaxAccounts") != "3" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><MaxAccounts>0</MaxAccounts>").MustOK(t)
		d, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "example.com")
		if err != nil || d.Description != "New" || d.MaxAccounts != 0 {
			t.Fatalf("stored %+v, %v", d, err)
		}
	})
	t.Run("Postmaster", func(t *testing.T) {
		e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank"})
		r := e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><Postmaster>frank@example.com</Postmaster>").MustOK(t)
		if r.Text("Domain/Postmaster") != "frank@example.com" || r.Text("Domain/Description") != "New" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		r = e.Call(t, "GetDomainInfo", "<Domain>example.com</Domain><Get><Details/></Get>").MustOK(t)
		if r.Text("Domain/Postmaster") != "frank@example.com" {
			t.Fatalf("GetDomainInfo:\n%s", r.Body)
		}
		// An absent Postmaster leaves it; another change keeps it.
		e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><Description>Newer</Description>").MustOK(t)
		if d, err := e.Svc.FindDomain(sys(), "example.com"); err != nil || d.Postmaster != "frank@example.com" {
			t.Fatalf("stored %+v, %v", d, err)
		}
		t.Run("ErrNoSuchAccount", func(t *testing.T) {
			index := e.Store.Index()
			msg := e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><Postmaster>nobody@example.com</Postmaster>").
				MustStatus(t, xmlapi.StatusInvalidParameter)
			if !strings.Contains(msg, "nobody@example.com") {
				t.Fatalf("message %q", msg)
			}
			if got := e.Store.Index(); got != index {
				t.Fatalf("store index moved from %d to %d", index, got)
			}
		})
		// Empty: back to the default, the first global administrator.
		r = e.Call(t, "UpdateDomain", "<Domain>example.com</Domain><Postmaster/>").MustOK(t)
		if pm := r.Result().FindElement("Domain/Postmaster"); pm == nil || pm.Text() != "" {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "UpdateDomain", "<Domain>nowhere.example</Domain><Description>x</Description>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		e.Call(t, "UpdateDomain", "<Description>x</Description>").MustStatus(t, xmlapi.StatusMissingParameter)
	})
}

func TestDeleteDomain(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "empty.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})

	t.Run("OK", func(t *testing.T) {
		e.Call(t, "DeleteDomain", "<Domain>empty.example</Domain>").MustOK(t)
		if _, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "empty.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("domain still there: %v", err)
		}
	})
	t.Run("ErrHasAccounts", func(t *testing.T) {
		for _, params := range []string{"<Domain>example.com</Domain>", "<Domain>example.com</Domain><Force>No</Force>"} {
			e.Call(t, "DeleteDomain", params).MustStatus(t, xmlapi.StatusConflict)
		}
		e.MustFindAccount(t, "example.com", "bob")
	})
	t.Run("ErrInvalidForce", func(t *testing.T) {
		e.Call(t, "DeleteDomain", "<Domain>example.com</Domain><Force>perhaps</Force>").MustStatus(t, xmlapi.StatusInvalidParameter)
		e.MustFindAccount(t, "example.com", "bob")
	})
	t.Run("Force", func(t *testing.T) {
		e.Call(t, "DeleteDomain", "<Domain>example.com</Domain><Force>Yes</Force>").MustOK(t)
		if _, err := e.Svc.FindDomain(service.SystemContext(context.Background(), "test"), "example.com"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("domain still there: %v", err)
		}
		if n := e.Store.Count(schema.PrefixAccounts + "example.com/"); n != 0 {
			t.Fatalf("%d accounts left", n)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "DeleteDomain", "<Domain>example.com</Domain>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrOwnDomain", func(t *testing.T) {
		e.Call(t, "DeleteDomain", "<Domain>localhost</Domain><Force>Yes</Force>").MustStatus(t, xmlapi.StatusConflict)
	})
}
