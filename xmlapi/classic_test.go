package xmlapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// The tests of this file send request documents the way classic
// XML-API clients write them (the vendor's samples, provisioning tools,
// monitors), unchanged, and check what such a client reads in the answer.

// classicDoc is a request document as a classic client builds it: an XML
// declaration, version="20.0.0", echo and verbose attributes.
func classicDoc(echo, op, params string) string {
	return `<?xml version="1.0" encoding="utf-8"?>
<MDaemon>
  <API>
    <Request version="20.0.0" echo="` + echo + `" verbose="0">
      <Operation>` + op + `</Operation>
      <Parameters>
` + params + `
      </Parameters>
    </Request>
  </API>
</MDaemon>
`
}

// classic posts a classic request document as the bootstrap admin.
func (e *Env) classic(tb testing.TB, echo, op, params string) *Response {
	tb.Helper()
	return Post(tb, e.URL, adminAddr, adminPass, strings.NewReader(classicDoc(echo, op, params)))
}

// TestClassicEndpointPath: the endpoint answers at the paths classic
// clients use (a trailing slash, another case) when mounted as IsPath
// says; other paths are not the endpoint.
func TestClassicEndpointPath(t *testing.T) {
	e := MustOpenEnv(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !xmlapi.IsPath(r.URL.Path) {
			http.NotFound(w, r)
			return
		}
		e.Handler.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/MdMgmtWS", "/MdMgmtWS/", "/mdmgmtws", "/MDMGMTWS/", "/mdMgmtWs/"} {
		t.Run("OK"+path, func(t *testing.T) {
			r := Post(t, srv.URL+path, adminAddr, adminPass, strings.NewReader(classicDoc("0", "GetVersionInfo", "")))
			r.MustOK(t)
			if r.Text("Version") != mailcluster.Version {
				t.Fatalf("answer:\n%s", r.Body)
			}
		})
	}
	for _, path := range []string{"/MdMgmtWS//", "/MdMgmtWS/x", "/MdMgmtWSx", "/api/MdMgmtWS", "/"} {
		if xmlapi.IsPath(path) {
			t.Errorf("IsPath(%q) = true", path)
		}
	}
}

// TestClassicAPIVersion: a monitor reads the server's version from
// <API productversion serviceversion> and the outcome from
// <Status value>; mailcluster's own scripts read <API version>.
func TestClassicAPIVersion(t *testing.T) {
	e := MustOpenEnv(t)
	r := e.classic(t, "0", "GetVersionInfo", "")
	api := r.Doc.FindElement("/MDaemon/API")
	for _, attr := range []string{"productversion", "serviceversion", "version"} {
		if got := api.SelectAttrValue(attr, ""); got != mailcluster.Version {
			t.Errorf("API %s = %q, want %q", attr, got, mailcluster.Version)
		}
	}
	if _, value, _ := r.Status(); value != "0x00000000" {
		t.Fatalf("Status value %q", value)
	}
	// Also on a refusal before the operation ran.
	res := Post(t, e.URL, adminAddr, "wrong-password", strings.NewReader(classicDoc("0", "GetVersionInfo", "")))
	if res.Doc.FindElement("/MDaemon/API").SelectAttrValue("productversion", "") != mailcluster.Version {
		t.Fatalf("no productversion on a refusal:\n%s", res.Body)
	}
}

// TestClassicDomainList: with <Get><Users/></Get>, clients read
// Domains(count)/Domain(id)/Users(count)/User(id).
func TestClassicDomainList(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "empty.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})

	r := e.classic(t, "0", "GetDomainList", "<Get><Users/></Get>").MustOK(t)
	domains := r.Result().SelectElement("Domains")
	if domains == nil || domains.SelectAttrValue("count", "") != "3" {
		t.Fatalf("Domains count:\n%s", r.Body)
	}
	want := map[string]string{"empty.example": "", "example.com": "alice,bob", "localhost": "admin"}
	for _, d := range domains.SelectElements("Domain") {
		id := d.SelectAttrValue("id", "")
		users := d.SelectElement("Users")
		if users == nil {
			t.Fatalf("no Users in Domain %s:\n%s", id, r.Body)
		}
		var ids []string
		for _, u := range users.SelectElements("User") {
			ids = append(ids, u.SelectAttrValue("id", ""))
		}
		if got := strings.Join(ids, ","); got != want[id] {
			t.Errorf("users of %s: %q, want %q", id, got, want[id])
		}
		if got, wantCount := users.SelectAttrValue("count", ""), len(ids); got != strconv.Itoa(wantCount) {
			t.Errorf("Users count of %s = %q, want %d", id, got, wantCount)
		}
		delete(want, id)
	}
	if len(want) != 0 {
		t.Fatalf("domains missing: %v\n%s", want, r.Body)
	}
}

// TestClassicDomainInfo: GetDomainInfo answers the <Get> sections asked
// for: a client builds its mailbox list from Domain/Users/User(id).
func TestClassicDomainInfo(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", AdminRights: mailcluster.AdminDomain})

	t.Run("Users", func(t *testing.T) {
		r := e.classic(t, "0", "GetDomainInfo", "<Domain>example.com</Domain><Get><Users/></Get>").MustOK(t)
		users := r.Result().FindElement("Domain/Users")
		if users == nil || users.SelectAttrValue("count", "") != "2" {
			t.Fatalf("no Users:\n%s", r.Body)
		}
		var ids []string
		for _, u := range users.SelectElements("User") {
			ids = append(ids, u.SelectAttrValue("id", ""))
		}
		if strings.Join(ids, ",") != "bob,dadmin" {
			t.Fatalf("users %v", ids)
		}
		// Only the section asked for.
		if r.Result().FindElement("Domain/Name") != nil || r.Result().FindElement("Domain/Administrators") != nil {
			t.Fatalf("sections not asked for:\n%s", r.Body)
		}
	})
	t.Run("Sections", func(t *testing.T) {
		r := e.classic(t, "0", "GetDomainInfo",
			"<Domain>example.com</Domain><Get><Details/><Pruning/><Administrators/></Get>").MustOK(t)
		if r.Text("Domain/Name") != "example.com" || r.Text("Domain/AccountCount") != "2" {
			t.Fatalf("Details:\n%s", r.Body)
		}
		if r.Result().FindElement("Domain/Pruning") == nil {
			t.Fatalf("no Pruning:\n%s", r.Body)
		}
		admins := r.Result().FindElements("Domain/Administrators/Administrator")
		if len(admins) != 1 || admins[0].SelectAttrValue("id", "") != "dadmin" || admins[0].SelectAttrValue("rights", "") != "Domain" {
			t.Fatalf("Administrators:\n%s", r.Body)
		}
		if r.Result().FindElement("Domain/Users") != nil {
			t.Fatalf("Users not asked for:\n%s", r.Body)
		}
	})
	t.Run("NoGet", func(t *testing.T) {
		r := e.classic(t, "0", "GetDomainInfo", "<Domain>example.com</Domain>").MustOK(t)
		for _, path := range []string{"Domain/Name", "Domain/Pruning", "Domain/Administrators", "Domain/Users"} {
			if r.Result().FindElement(path) == nil {
				t.Errorf("no %s without <Get>:\n%s", path, r.Body)
			}
		}
	})
}

// TestClassicGetUserInfo: the answer has what the classic clients read;
// <Password note="unavailable"/> is there, never the password or hash.
func TestClassicGetUserInfo(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "colleen.wing", FirstName: "Colleen",
		LastName: "Wing", Password: "secret-pass-colleen", QuotaBytes: 100 << 20, QuotaMessages: 500, AdminRights: mailcluster.AdminDomain})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "plain"})

	r := e.classic(t, "0", "GetUserInfo", `<Domain>example.com</Domain><Mailbox>Colleen.Wing</Mailbox>
		<Get><Details/><Quotas/><Roles/></Get>`).MustOK(t)
	u := r.Result().SelectElement("User")
	for attr, want := range map[string]string{"id": "Colleen.Wing", "displayname": "Colleen Wing", "domain": "example.com"} {
		if got := u.SelectAttrValue(attr, ""); got != want {
			t.Errorf("User %s = %q, want %q", attr, got, want)
		}
	}
	pw := u.FindElement("Details/Password")
	if pw == nil || pw.SelectAttrValue("note", "") != "unavailable" || pw.Text() != "" {
		t.Fatalf("Password:\n%s", r.Body)
	}
	for path, want := range map[string]string{
		"User/Details/DisplayName":        "Colleen Wing",
		"User/Details/MustChangePassword": "No",
		"User/Details/DontExpirePassword": "Yes",
		"User/Quotas/ApplyQuotas":         "Yes",
		"User/Quotas/MaxDiskSpace":        "100",
		"User/Quotas/MaxMessageCount":     "500",
		"User/Roles/IsGlobalAdmin":        "No",
		"User/Roles/IsDomainAdmin":        "Yes",
	} {
		if got := r.Text(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if d := r.Result().FindElement("User/Roles/IsDomainAdmin").SelectAttrValue("domain", ""); d != "example.com" {
		t.Errorf("IsDomainAdmin domain = %q", d)
	}

	t.Run("Defaults", func(t *testing.T) {
		r := e.classic(t, "0", "GetUserInfo", `<Domain>example.com</Domain><Mailbox>plain</Mailbox>`).MustOK(t)
		for path, want := range map[string]string{
			"User/Quotas/ApplyQuotas":  "No",
			"User/Roles/IsGlobalAdmin": "No",
			"User/Roles/IsDomainAdmin": "No",
		} {
			if got := r.Text(path); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		if r.Result().FindElement("User/Details/Password[@note='unavailable']") == nil {
			t.Fatalf("no Password:\n%s", r.Body)
		}
	})
	t.Run("GlobalAdmin", func(t *testing.T) {
		r := e.classic(t, "0", "GetUserInfo", `<Domain>localhost</Domain><Mailbox>admin</Mailbox><Get><Roles/></Get>`).MustOK(t)
		if r.Text("User/Roles/IsGlobalAdmin") != "Yes" || r.Result().FindElement("User/Details") != nil {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
}

// sampleCreateUser is a CreateUser request as a provisioning tool sends
// it: unset flags empty, the sections Roles and Quotas beside Details,
// empty membership sections.
const sampleCreateUser = `<Domain>example.com</Domain>
<Mailbox>Colleen.Wing</Mailbox>
<Details>
  <FirstName>Colleen</FirstName>
  <LastName>Wing</LastName>
  <DisplayName>Colleen Wing</DisplayName>
  <Password>secret-pass-colleen</Password>
  <MustChangePassword></MustChangePassword>
  <DontExpirePassword>No</DontExpirePassword>
  <Frozen></Frozen>
  <Disabled/>
</Details>
<Roles>
  <IsGlobalAdmin>No</IsGlobalAdmin>
  <IsDomainAdmin domain="example.com">Yes</IsDomainAdmin>
</Roles>
<Quotas>
  <ApplyQuotas>Yes</ApplyQuotas>
  <MaxDiskSpace>250</MaxDiskSpace>
  <MaxMessageCount></MaxMessageCount>
</Quotas>
<Aliases/>
<ListMembership/>
<GroupMembership/>`

// TestClassicCreateUser: the sample is accepted as sent; the answer's
// User keeps the case the client sent; the echo blanks the password and
// nothing else.
func TestClassicCreateUser(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")

	r := e.classic(t, "1", "CreateUser", sampleCreateUser).MustOK(t)
	u := r.Result().SelectElement("User")
	for attr, want := range map[string]string{"id": "Colleen.Wing", "displayname": "Colleen Wing", "domain": "example.com"} {
		if got := u.SelectAttrValue(attr, ""); got != want {
			t.Errorf("User %s = %q, want %q", attr, got, want)
		}
	}
	a := e.MustFindAccount(t, "example.com", "colleen.wing")
	if a.FullName != "Colleen Wing" || a.Frozen || a.Disabled || a.AdminRights != mailcluster.AdminDomain ||
		a.QuotaBytes != 250<<20 || a.QuotaMessages != 0 {
		t.Fatalf("stored %+v", a)
	}
	if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "colleen.wing@example.com", "secret-pass-colleen"); err != nil {
		t.Fatalf("login with the password sent: %v", err)
	}
	echoed := r.Doc.FindElement("/MDaemon/API/Request/Parameters")
	if echoed == nil {
		t.Fatalf("no echo:\n%s", r.Body)
	}
	if pw := echoed.FindElement("Details/Password"); pw == nil || pw.Text() != "" {
		t.Fatalf("echoed Password not blanked:\n%s", r.Body)
	}
	for path, want := range map[string]string{
		"Details/DontExpirePassword": "No", "Details/FirstName": "Colleen", "Mailbox": "Colleen.Wing",
	} {
		if el := echoed.FindElement(path); el == nil || el.Text() != want {
			t.Errorf("echoed %s is not as sent:\n%s", path, r.Body)
		}
	}
}

// TestClassicEmptyFlags: an empty flag element leaves the value as it
// is on UpdateUser and means the default (No) on CreateUser.
func TestClassicEmptyFlags(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	ctx := service.SystemContext(context.Background(), "test")
	for _, empty := range []string{"<Frozen></Frozen><Disabled></Disabled>", "<Frozen/><Disabled/>", "<Frozen> </Frozen><Disabled/>"} {
		for _, state := range []bool{true, false} {
			if _, err := e.Svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{Frozen: ptr(state), Disabled: ptr(state)}); err != nil {
				t.Fatal(err)
			}
			e.classic(t, "0", "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details>"+empty+
				"<FullName>Changed</FullName></Details>").MustOK(t)
			if a := e.MustFindAccount(t, "example.com", "alice"); a.Frozen != state || a.Disabled != state || a.FullName != "Changed" {
				t.Fatalf("%s on state %v: stored %+v", empty, state, a)
			}
		}
	}
	e.classic(t, "0", "CreateUser", "<Domain>example.com</Domain><Mailbox>bob</Mailbox><Details>"+
		"<Password>secret-pass-bob</Password><Frozen></Frozen><Disabled/></Details>").MustOK(t)
	if a := e.MustFindAccount(t, "example.com", "bob"); a.Frozen || a.Disabled {
		t.Fatalf("stored %+v", a)
	}
}

// TestClassicRoles: <Roles> in CreateUser and UpdateUser set the admin
// rights; the service decides who may grant them.
func TestClassicRoles(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})
	update := func(t *testing.T, roles string) *Response {
		t.Helper()
		return e.classic(t, "0", "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Roles>"+roles+"</Roles>")
	}
	for _, step := range []struct {
		roles string
		want  mailcluster.AdminRights
	}{
		{`<IsGlobalAdmin>No</IsGlobalAdmin><IsDomainAdmin domain="example.com">Yes</IsDomainAdmin>`, mailcluster.AdminDomain},
		{`<IsGlobalAdmin>Yes</IsGlobalAdmin><IsDomainAdmin domain="example.com">No</IsDomainAdmin>`, mailcluster.AdminGlobal},
		{`<IsDomainAdmin>Yes</IsDomainAdmin>`, mailcluster.AdminGlobal}, // global stays global
		{`<IsGlobalAdmin>No</IsGlobalAdmin>`, mailcluster.AdminNone},
		{`<IsDomainAdmin>Yes</IsDomainAdmin>`, mailcluster.AdminDomain},
		{`<IsGlobalAdmin></IsGlobalAdmin><IsDomainAdmin/>`, mailcluster.AdminDomain}, // empty: unchanged
		{`<IsDomainAdmin>No</IsDomainAdmin>`, mailcluster.AdminNone},
	} {
		r := update(t, step.roles).MustOK(t)
		if a := e.MustFindAccount(t, "example.com", "alice"); a.AdminRights != step.want {
			t.Fatalf("after %s: rights %s, want %s", step.roles, a.AdminRights, step.want)
		}
		if want := mailcluster.FormatFlag(step.want == mailcluster.AdminGlobal); r.Text("User/Roles/IsGlobalAdmin") != want {
			t.Fatalf("after %s: answer\n%s", step.roles, r.Body)
		}
	}
	t.Run("ErrDomainAdminGrantsGlobal", func(t *testing.T) {
		r := Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(classicDoc("0", "UpdateUser",
			"<Domain>example.com</Domain><Mailbox>alice</Mailbox><Roles><IsGlobalAdmin>Yes</IsGlobalAdmin></Roles>")))
		r.MustStatus(t, xmlapi.StatusForbidden)
		if a := e.MustFindAccount(t, "example.com", "alice"); a.AdminRights != mailcluster.AdminNone {
			t.Fatalf("rights %s", a.AdminRights)
		}
	})
	t.Run("ErrDisagreesWithAdminRights", func(t *testing.T) {
		e.classic(t, "0", "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>"+
			"<Details><AdminRights>None</AdminRights></Details><Roles><IsGlobalAdmin>Yes</IsGlobalAdmin></Roles>").
			MustStatus(t, xmlapi.StatusInvalidParameter)
	})
}

// TestClassicUnsupported: known elements mailcluster does not support
// are refused with a status naming them, and nothing is written; they
// are never dropped silently.
func TestClassicUnsupported(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", FullName: "Alice"})
	for name, tc := range map[string]struct{ params, names string }{
		"Aliases":            {`<Aliases><Alias>sales@example.com</Alias></Aliases>`, "Aliases"},
		"ListMembership":     {`<ListMembership><List>staff@example.com</List></ListMembership>`, "ListMembership"},
		"GroupMembership":    {`<GroupMembership><Group>Sales</Group></GroupMembership>`, "GroupMembership"},
		"InDetails":          {`<Details><FullName>X</FullName><Aliases><Alias>a@example.com</Alias></Aliases></Details>`, "Details/Aliases"},
		"MustChangePassword": {`<Details><FullName>X</FullName><MustChangePassword>Yes</MustChangePassword></Details>`, "Details/MustChangePassword"},
		"OtherDomainAdmin":   {`<Roles><IsDomainAdmin domain="other.example">Yes</IsDomainAdmin></Roles>`, "Roles/IsDomainAdmin"},
		"MaxSentPerDay":      {`<Quotas><MaxSentPerDay>100</MaxSentPerDay></Quotas>`, "Quotas/MaxSentPerDay"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, op := range []string{"CreateUser", "UpdateUser"} {
				mailbox := "alice"
				if op == "CreateUser" {
					mailbox = "newbie"
				}
				params := "<Domain>example.com</Domain><Mailbox>" + mailbox + "</Mailbox>" + tc.params
				if op == "CreateUser" {
					params += "<Details><Password>secret-pass-newbie</Password></Details>"
				}
				msg := e.classic(t, "0", op, params).MustStatus(t, xmlapi.StatusNotSupported)
				if !strings.Contains(msg, tc.names) || !strings.Contains(msg, "not supported yet") {
					t.Fatalf("%s: message %q does not name %s", op, msg, tc.names)
				}
			}
			if _, err := e.Svc.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", "newbie"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
				t.Fatalf("a refused CreateUser created the account: %v", err)
			}
			if a := e.MustFindAccount(t, "example.com", "alice"); a.FullName != "Alice" || a.AdminRights != mailcluster.AdminNone {
				t.Fatalf("a refused UpdateUser changed the account: %+v", a)
			}
		})
	}
}
