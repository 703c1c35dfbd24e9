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

// TestClassicMemberships: CreateUser and UpdateUser with <Aliases>,
// <ListMembership> and <GroupMembership> (beside <Details> or inside
// it), and GetUserInfo showing them.
func TestClassicMemberships(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frank"})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "example.com", Name: "staff"})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "example.com", Name: "news"})
	e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "sales"})
	e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "support"})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "other.example", Name: "staff"})
	e.mustCreateAlias(t, "example.com", "sales.desk", "frank@example.com")

	// shown returns what GetUserInfo shows of colleen's memberships.
	shown := func(t *testing.T, r *Response) (aliases, lists, groups string) {
		t.Helper()
		for _, path := range []string{"User/Aliases", "User/ListMembership", "User/GroupMembership"} {
			if r.Result().FindElement(path) == nil {
				t.Fatalf("no %s:\n%s", path, r.Body)
			}
		}
		return texts(r.Result().FindElements("User/Aliases/Alias")),
			texts(r.Result().FindElements("User/ListMembership/List")),
			texts(r.Result().FindElements("User/GroupMembership/Group"))
	}
	info := func(t *testing.T) (aliases, lists, groups string) {
		t.Helper()
		return shown(t, e.classic(t, "0", "GetUserInfo", "<Domain>example.com</Domain><Mailbox>Colleen.Wing</Mailbox>").MustOK(t))
	}
	mustShow := func(t *testing.T, aliases, lists, groups string) {
		t.Helper()
		a, l, g := info(t)
		if a != aliases || l != lists || g != groups {
			t.Fatalf("aliases %q, lists %q, groups %q; want %q, %q, %q", a, l, g, aliases, lists, groups)
		}
	}

	t.Run("CreateUser", func(t *testing.T) {
		r := e.classic(t, "1", "CreateUser", `<Domain>example.com</Domain><Mailbox>Colleen.Wing</Mailbox>
<Details>
  <FullName>Colleen Wing</FullName>
  <Password>secret-pass-colleen</Password>
  <GroupMembership><Group>sales</Group></GroupMembership>
</Details>
<Aliases><Alias>cwing</Alias><Alias>Info@example.com</Alias></Aliases>
<ListMembership><List>staff@example.com</List><List>news</List></ListMembership>`).MustOK(t)
		a, l, g := shown(t, r)
		if a != "cwing@example.com,info@example.com" || l != "news@example.com,staff@example.com" || g != "sales" {
			t.Fatalf("answer shows aliases %q, lists %q, groups %q:\n%s", a, l, g, r.Body)
		}
		mustShow(t, "cwing@example.com,info@example.com", "news@example.com,staff@example.com", "sales")
		// Stored as the service sees it.
		if al, err := e.Svc.FindAlias(sys(), "example.com", "cwing"); err != nil || al.Target != "colleen.wing@example.com" {
			t.Fatalf("alias %+v, %v", al, err)
		}
		// echo="1" blanks the password and nothing else.
		echoed := r.Doc.FindElement("/MDaemon/API/Request/Parameters")
		if pw := echoed.FindElement("Details/Password"); pw == nil || pw.Text() != "" {
			t.Fatalf("echoed Password not blanked:\n%s", r.Body)
		}
		if got := texts(echoed.FindElements("Aliases/Alias")); got != "cwing,Info@example.com" {
			t.Fatalf("echoed aliases %q:\n%s", got, r.Body)
		}
		if got := texts(echoed.FindElements("Details/GroupMembership/Group")); got != "sales" {
			t.Fatalf("echoed groups %q:\n%s", got, r.Body)
		}
	})
	t.Run("GetSections", func(t *testing.T) {
		r := e.classic(t, "0", "GetUserInfo", "<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox><Get><Aliases/><GroupMembership/></Get>").MustOK(t)
		u := r.Result().SelectElement("User")
		var tags []string
		for _, c := range u.ChildElements() {
			tags = append(tags, c.Tag)
		}
		if strings.Join(tags, ",") != "Aliases,GroupMembership" {
			t.Fatalf("sections %v:\n%s", tags, r.Body)
		}
		r = e.classic(t, "0", "GetUserInfo", "<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox><Get><Details/></Get>").MustOK(t)
		if r.Result().FindElement("User/Aliases") != nil || r.Result().FindElement("User/ListMembership") != nil {
			t.Fatalf("sections not asked for:\n%s", r.Body)
		}
	})
	t.Run("UpdateUser", func(t *testing.T) {
		r := e.classic(t, "0", "UpdateUser", `<Domain>example.com</Domain><Mailbox>Colleen.Wing</Mailbox>
<Aliases><Alias action="remove">info@example.com</Alias><Alias>help</Alias></Aliases>
<ListMembership><List action="remove">staff</List></ListMembership>
<Details><GroupMembership><Group action="Delete">sales</Group><Group action="add">support</Group></GroupMembership></Details>`).MustOK(t)
		a, l, g := shown(t, r)
		if a != "cwing@example.com,help@example.com" || l != "news@example.com" || g != "support" {
			t.Fatalf("answer shows aliases %q, lists %q, groups %q:\n%s", a, l, g, r.Body)
		}
		mustShow(t, "cwing@example.com,help@example.com", "news@example.com", "support")
		if _, err := e.Svc.FindAlias(sys(), "example.com", "info"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("removed alias still there: %v", err)
		}
	})
	t.Run("EmptySections", func(t *testing.T) {
		e.classic(t, "0", "UpdateUser", `<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox>
<Details><FullName>C. Wing</FullName></Details><Aliases/><ListMembership></ListMembership><GroupMembership> </GroupMembership>`).MustOK(t)
		mustShow(t, "cwing@example.com,help@example.com", "news@example.com", "support")
		if a := e.MustFindAccount(t, "example.com", "colleen.wing"); a.FullName != "C. Wing" {
			t.Fatalf("stored %+v", a)
		}
	})

	refused := func(t *testing.T, id int, op, params string) string {
		t.Helper()
		msg := e.refusedClassic(t, id, op, params, "example.com", "other.example")
		if a := e.MustFindAccount(t, "example.com", "colleen.wing"); a.FullName != "C. Wing" {
			t.Fatalf("a refused request changed the account: %+v", a)
		}
		return msg
	}
	update := "<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox><Details><FullName>Changed</FullName></Details>"
	create := "<Domain>example.com</Domain><Mailbox>newbie</Mailbox><Details><Password>secret-pass-newbie</Password></Details>"
	t.Run("ErrNameClash", func(t *testing.T) {
		// An account, an alias or a list of that name exists: nothing of
		// the request is written, the other changes included.
		for _, clash := range []string{"frank", "staff", "sales.desk"} {
			refused(t, xmlapi.StatusConflict, "UpdateUser", update+"<Aliases><Alias>fresh</Alias><Alias>"+clash+"</Alias></Aliases>")
			refused(t, xmlapi.StatusConflict, "CreateUser", create+"<Aliases><Alias>"+clash+"</Alias></Aliases>")
		}
		refused(t, xmlapi.StatusConflict, "CreateUser", "<Domain>example.com</Domain><Mailbox>staff</Mailbox>")
	})
	t.Run("ErrNoSuchListOrGroup", func(t *testing.T) {
		// The account is the object of the request: a list or group it
		// names that does not exist is an invalid parameter.
		for _, c := range []struct{ op, params, names string }{
			{"UpdateUser", update + "<ListMembership><List>nolist</List></ListMembership>", "nolist@example.com"},
			{"CreateUser", create + "<GroupMembership><Group>nogroup</Group></GroupMembership>", "nogroup"},
		} {
			if msg := refused(t, xmlapi.StatusInvalidParameter, c.op, c.params); !strings.Contains(msg, c.names) {
				t.Errorf("%s: message %q does not name %s", c.op, msg, c.names)
			}
		}
		if _, err := e.Svc.FindAccount(sys(), "example.com", "newbie"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("a refused CreateUser created the account: %v", err)
		}
	})
	t.Run("ErrOtherDomainList", func(t *testing.T) {
		// A list of another domain: accounts are members of their own
		// domain's lists only.
		refused(t, xmlapi.StatusInvalidParameter, "UpdateUser", update+"<ListMembership><List>staff@other.example</List></ListMembership>")
	})
	t.Run("ErrBadSection", func(t *testing.T) {
		for _, c := range []struct{ op, params, names string }{
			{"UpdateUser", update + `<Aliases><Alias action="replace">x</Alias></Aliases>`, `"replace"`},
			{"UpdateUser", `<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox><Details><FullName>Changed</FullName>` +
				`<ListMembership><List action="drop">news</List></ListMembership></Details>`, "Details/ListMembership/List"},
			{"UpdateUser", update + `<Aliases>a, b</Aliases>`, "<Alias>"},
			{"UpdateUser", update + `<Aliases><Address>a</Address></Aliases>`, "<Address>"},
			{"UpdateUser", update + `<GroupMembership><Group/></GroupMembership>`, "GroupMembership/Group"},
			{"CreateUser", create + `<Aliases><Alias action="remove">x</Alias></Aliases>`, "UpdateUser"},
			{"UpdateUser", `<Domain>example.com</Domain><Mailbox>colleen.wing</Mailbox><Aliases><Alias>a1</Alias></Aliases>` +
				`<Details><FullName>Changed</FullName><Aliases><Alias>a2</Alias></Aliases></Details>`, "once"},
		} {
			msg := refused(t, xmlapi.StatusInvalidParameter, c.op, c.params)
			if !strings.Contains(msg, c.names) {
				t.Errorf("%s: message %q does not mention %s", c.params, msg, c.names)
			}
		}
	})
}

// TestClassicMembershipsDomainAdmin: a domain administrator manages the
// memberships of its own domain's accounts, and cannot reach another
// domain's objects through them.
func TestClassicMembershipsDomainAdmin(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "other.example", Mailbox: "olga"})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "example.com", Name: "staff"})
	e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "sales"})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "other.example", Name: "staff"})
	as := func(op, params string) *Response {
		return Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(classicDoc("0", op, params)))
	}

	t.Run("OwnDomain", func(t *testing.T) {
		r := as("UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Aliases><Alias>al</Alias></Aliases>
<ListMembership><List>staff</List></ListMembership><GroupMembership><Group>sales</Group></GroupMembership>`).MustOK(t)
		if texts(r.Result().FindElements("User/Aliases/Alias")) != "al@example.com" ||
			texts(r.Result().FindElements("User/ListMembership/List")) != "staff@example.com" ||
			texts(r.Result().FindElements("User/GroupMembership/Group")) != "sales" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		as("GetAliasList", "<Domain>example.com</Domain>").MustOK(t)
		as("GetListInfo", "<List>staff@example.com</List>").MustOK(t)
		as("GetGroupInfo", "<Domain>example.com</Domain><Group>sales</Group>").MustOK(t)
	})
	t.Run("ErrOtherDomain", func(t *testing.T) {
		for _, c := range []struct{ op, params string }{
			{"UpdateUser", "<Domain>other.example</Domain><Mailbox>olga</Mailbox><Aliases><Alias>o</Alias></Aliases>"},
			{"UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Aliases><Alias>x@other.example</Alias></Aliases>"},
			{"CreateAlias", "<Domain>other.example</Domain><Alias>o</Alias><Target>olga@other.example</Target>"},
			{"CreateAlias", "<Domain>example.com</Domain><Alias>o</Alias><Target>olga@other.example</Target>"},
			{"GetAliasList", "<Domain>other.example</Domain>"},
			{"GetListInfo", "<List>staff@other.example</List>"},
			{"UpdateList", "<List>staff@other.example</List><Description>x</Description>"},
			{"GetGroupList", "<Domain>other.example</Domain>"},
			{"CreateGroup", "<Domain>other.example</Domain><Group>g</Group>"},
		} {
			t.Run(c.op, func(t *testing.T) {
				e.refusedUnchanged(t, xmlapi.StatusForbidden, func() *Response { return as(c.op, c.params) }, "example.com", "other.example")
			})
		}
	})
}
