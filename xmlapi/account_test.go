package xmlapi_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

func TestCreateUser(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")

	t.Run("OK", func(t *testing.T) {
		// A mailbox path of the global administrator's choice, below the
		// mailbox root.
		mailDir := mailcluster.MailboxRoots(mustLocal(e.Svc).Setting)[0] + "/custom/alice/"
		r := e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>Alice</Mailbox>
			<Details>
				<FullName>Alice Example</FullName><FirstName>Alice</FirstName><LastName>Example</LastName>
				<Password>secret-pass-alice</Password>
				<MailDir>`+mailDir+`</MailDir>
				<Frozen>No</Frozen><Disabled>Yes</Disabled><AdminRights>Domain</AdminRights>
				<Quotas><MaxDiskSpaceMB>100</MaxDiskSpaceMB><MaxMessageCount>5000</MaxMessageCount></Quotas>
			</Details>`).MustOK(t)
		u := r.Result().SelectElement("User")
		if u == nil || u.SelectAttrValue("id", "") != "Alice" { // the case the client sent
			t.Fatalf("no User id:\n%s", r.Body)
		}
		for path, want := range map[string]string{
			"User/Details/Email":                    "alice@example.com",
			"User/Details/FullName":                 "Alice Example",
			"User/Details/FirstName":                "Alice",
			"User/Details/LastName":                 "Example",
			"User/Details/MailDir":                  mailDir,
			"User/Details/Frozen":                   "No",
			"User/Details/Disabled":                 "Yes",
			"User/Details/AdminRights":              "Domain",
			"User/Details/Quotas/MaxDiskSpaceMB":    "100",
			"User/Details/Quotas/MaxDiskSpaceBytes": "104857600",
			"User/Details/Quotas/MaxMessageCount":   "5000",
		} {
			if got := r.Text(path); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		a := e.MustFindAccount(t, "example.com", "alice")
		if a.FullName != "Alice Example" || !a.Disabled || a.Frozen || a.AdminRights != mailcluster.AdminDomain ||
			a.QuotaBytes != 100<<20 || a.QuotaMessages != 5000 || a.MailboxPath != mailDir {
			t.Fatalf("stored %+v", a)
		}
	})
	t.Run("Minimal", func(t *testing.T) {
		r := e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><Password>secret-pass-bob</Password></Details>`).MustOK(t)
		if r.Text("User/Details/AdminRights") != "None" || r.Text("User/Details/Frozen") != "No" ||
			!strings.HasSuffix(r.Text("User/Details/MailDir"), "/mailboxes/example.com/bob/") {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("PasswordNotTrimmed", func(t *testing.T) {
		e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>spacey</Mailbox>
			<Details><Password> secret-pass-spacey </Password><AdminRights>Domain</AdminRights></Details>`).MustOK(t)
		if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "spacey@example.com", " secret-pass-spacey "); err != nil {
			t.Fatalf("the password was changed on the way: %v", err)
		}
	})
	t.Run("ErrExists", func(t *testing.T) {
		e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><Password>secret-pass-bob2</Password></Details>`).
			MustStatus(t, xmlapi.StatusConflict)
	})
	t.Run("ErrDomainNotFound", func(t *testing.T) {
		e.Call(t, "CreateUser", `<Domain>nowhere.example</Domain><Mailbox>bob</Mailbox><Details><Password>secret-pass-bob</Password></Details>`).
			MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			`<Mailbox>x</Mailbox><Details><Password>secret-pass-x</Password></Details>`:         "Domain",
			`<Domain>example.com</Domain><Details><Password>secret-pass-x</Password></Details>`: "Mailbox",
		} {
			msg := e.Call(t, "CreateUser", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if msg != "Missing required parameter: "+name+"." {
				t.Fatalf("message %q, want it to name %s", msg, name)
			}
		}
	})
	t.Run("NoPassword", func(t *testing.T) {
		// As the classic server: the account is created and cannot log in
		// until a password is set.
		e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>nopw</Mailbox>`).MustStatus(t, xmlapi.StatusOK)
		Post(t, e.URL, "nopw@example.com", "", strings.NewReader(Envelope("GetDomainList", ""))).MustStatus(t, xmlapi.StatusUnauthorized)
		Post(t, e.URL, "nopw@example.com", "any-password-1", strings.NewReader(Envelope("GetDomainList", ""))).MustStatus(t, xmlapi.StatusUnauthorized)
	})
}

func TestGetUserInfo(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", FullName: "Alice",
		Frozen: true, QuotaBytes: 1, AdminRights: mailcluster.AdminGlobal})

	for _, get := range []string{"<Get><Details/></Get>", "<Get><All/></Get>", ""} {
		t.Run("OK"+get, func(t *testing.T) {
			r := e.Call(t, "GetUserInfo", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>"+get).MustOK(t)
			for path, want := range map[string]string{
				"User/Details/Email":                    "alice@example.com",
				"User/Details/FullName":                 "Alice",
				"User/Details/Frozen":                   "Yes",
				"User/Details/Disabled":                 "No",
				"User/Details/AdminRights":              "Global",
				"User/Details/Quotas/MaxDiskSpaceMB":    "1", // 1 byte rounds up, never to 0 (unlimited)
				"User/Details/Quotas/MaxDiskSpaceBytes": "1",
			} {
				if got := r.Text(path); got != want {
					t.Errorf("%s = %q, want %q", path, got, want)
				}
			}
			pw := r.Result().FindElement("User/Details/Password")
			if pw == nil || pw.SelectAttrValue("note", "") != "unavailable" || pw.Text() != "" || strings.Contains(r.Body, "Hash") {
				t.Fatalf("password field in answer:\n%s", r.Body)
			}
		})
	}
	t.Run("UnknownSectionOnly", func(t *testing.T) {
		r := e.Call(t, "GetUserInfo", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Get><Forwarding/></Get>").MustOK(t)
		u := r.Result().SelectElement("User")
		if u == nil || u.SelectAttrValue("id", "") != "alice" || len(u.ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "GetUserInfo", "<Domain>example.com</Domain><Mailbox>nobody</Mailbox>").MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "GetUserInfo", "<Domain>nowhere.example</Domain><Mailbox>alice</Mailbox>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		msg := e.Call(t, "GetUserInfo", "<Domain>example.com</Domain>").MustStatus(t, xmlapi.StatusMissingParameter)
		if !strings.Contains(msg, "Mailbox") {
			t.Fatalf("message %q", msg)
		}
	})
}

func TestUpdateUser(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", FullName: "Alice",
		Frozen: true, QuotaBytes: 5 << 20, AdminRights: mailcluster.AdminDomain, Password: "secret-pass-old"})

	t.Run("Thaw", func(t *testing.T) {
		r := e.Call(t, "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>No</Frozen></Details>").MustOK(t)
		if r.Text("User/Details/Frozen") != "No" || r.Text("User/Details/FullName") != "Alice" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		a := e.MustFindAccount(t, "example.com", "alice")
		if a.Frozen || a.FullName != "Alice" || a.QuotaBytes != 5<<20 || a.AdminRights != mailcluster.AdminDomain {
			t.Fatalf("stored %+v: other fields changed", a)
		}
	})
	t.Run("Fields", func(t *testing.T) {
		e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details>
			<FullName>Alice B</FullName><LastName>B</LastName><AdminRights>none</AdminRights>
			<Quotas><MaxDiskSpaceBytes>12345</MaxDiskSpaceBytes><MaxMessageCount>7</MaxMessageCount></Quotas></Details>`).MustOK(t)
		a := e.MustFindAccount(t, "example.com", "alice")
		if a.FullName != "Alice B" || a.LastName != "B" || a.AdminRights != mailcluster.AdminNone || a.QuotaBytes != 12345 || a.QuotaMessages != 7 {
			t.Fatalf("stored %+v", a)
		}
	})
	t.Run("ClearField", func(t *testing.T) {
		e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><LastName/></Details>`).MustOK(t)
		if a := e.MustFindAccount(t, "example.com", "alice"); a.LastName != "" {
			t.Fatalf("stored %+v", a)
		}
	})
	t.Run("Password", func(t *testing.T) {
		e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox>
			<Details><Password>secret-pass-new</Password><AdminRights>Domain</AdminRights></Details>`).MustOK(t)
		if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "alice@example.com", "secret-pass-new"); err != nil {
			t.Fatalf("new password refused: %v", err)
		}
		if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "alice@example.com", "secret-pass-old"); err == nil {
			t.Fatal("old password still accepted")
		}
	})
	t.Run("ErrShortPassword", func(t *testing.T) {
		e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Password>short</Password></Details>`).
			MustStatus(t, xmlapi.StatusInvalidParameter)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "UpdateUser", "<Domain>example.com</Domain><Mailbox>nobody</Mailbox><Details><Frozen>No</Frozen></Details>").
			MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrLastAdmin", func(t *testing.T) {
		e.Call(t, "UpdateUser", "<Domain>localhost</Domain><Mailbox>admin</Mailbox><Details><AdminRights>None</AdminRights></Details>").
			MustStatus(t, xmlapi.StatusConflict)
	})
}

func TestDeleteUser(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	for _, m := range []string{"alice", "bob", "carol"} {
		e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: m})
	}
	gone := func(t *testing.T, mailbox string) {
		t.Helper()
		if _, err := e.Svc.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", mailbox); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("%s still there: %v", mailbox, err)
		}
	}

	t.Run("OK", func(t *testing.T) {
		e.Call(t, "DeleteUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>").MustOK(t)
		gone(t, "alice")
	})
	t.Run("RemoveFlags", func(t *testing.T) {
		e.Call(t, "DeleteUser", `<Domain>example.com</Domain><Mailbox>bob</Mailbox>
			<RemoveMailbox>Yes</RemoveMailbox><RemoveFromLists>No</RemoveFromLists><RemoveFromGroups>1</RemoveFromGroups>`).MustOK(t)
		gone(t, "bob")
		if !strings.Contains(e.Logs.String(), "mail files stay on disk") {
			t.Fatalf("RemoveMailbox not logged:\n%s", e.Logs.String())
		}
	})
	t.Run("ErrInvalidFlag", func(t *testing.T) {
		msg := e.Call(t, "DeleteUser", "<Domain>example.com</Domain><Mailbox>carol</Mailbox><RemoveMailbox>maybe</RemoveMailbox>").
			MustStatus(t, xmlapi.StatusInvalidParameter)
		if !strings.Contains(msg, "RemoveMailbox") {
			t.Fatalf("message %q", msg)
		}
		e.MustFindAccount(t, "example.com", "carol")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "DeleteUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrOwnAccount", func(t *testing.T) {
		e.Call(t, "DeleteUser", "<Domain>localhost</Domain><Mailbox>admin</Mailbox>").MustStatus(t, xmlapi.StatusConflict)
	})
}

// TestFlags runs every flag spelling through UpdateUser and reads the
// stored value back. (An empty flag leaves the value: TestClassicEmptyFlags.)
func TestFlags(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	for _, tc := range []struct {
		value string
		want  bool
		ok    bool
	}{
		{"Yes", true, true}, {"No", false, true},
		{"1", true, true}, {"0", false, true},
		{"true", true, true}, {"false", false, true},
		{"YES", true, true}, {"no", false, true}, {"True", true, true}, {" Yes ", true, true},
		{"maybe", false, false}, {"2", false, false}, {"Ja", false, false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			// Start from the opposite state, so that a success must change it.
			if _, err := e.Svc.UpdateAccount(service.SystemContext(context.Background(), "test"), "example.com", "alice", mailcluster.AccountUpdate{Frozen: ptr(!tc.want)}); err != nil {
				t.Fatal(err)
			}
			r := e.Call(t, "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>"+tc.value+"</Frozen></Details>")
			if !tc.ok {
				msg := r.MustStatus(t, xmlapi.StatusInvalidParameter)
				if !strings.Contains(msg, "Details/Frozen") {
					t.Fatalf("message %q does not name the parameter", msg)
				}
				if a := e.MustFindAccount(t, "example.com", "alice"); a.Frozen != !tc.want {
					t.Fatal("a refused flag changed the account")
				}
				return
			}
			r.MustOK(t)
			if got := r.Text("User/Details/Frozen"); got != mailcluster.FormatFlag(tc.want) {
				t.Fatalf("answer Frozen %q", got)
			}
			if a := e.MustFindAccount(t, "example.com", "alice"); a.Frozen != tc.want {
				t.Fatalf("stored Frozen %v, want %v", a.Frozen, tc.want)
			}
		})
	}
}

// TestParameterParsing covers the decoding of numbers, quotas, admin
// rights and required parameters of CreateUser.
func TestParameterParsing(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	for i, tc := range []struct {
		name    string
		details string
		status  int
		check   func(*mailcluster.Account) bool
	}{
		{"QuotaMB", "<Quotas><MaxDiskSpaceMB>3</MaxDiskSpaceMB></Quotas>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.QuotaBytes == 3<<20 }},
		{"QuotaBytes", "<Quotas><MaxDiskSpaceBytes>1000</MaxDiskSpaceBytes></Quotas>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.QuotaBytes == 1000 }},
		{"QuotaSpaces", "<Quotas><MaxMessageCount> 42 </MaxMessageCount></Quotas>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.QuotaMessages == 42 }},
		{"QuotaZero", "<Quotas><MaxDiskSpaceMB>0</MaxDiskSpaceMB></Quotas>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.QuotaBytes == 0 }},
		{"AdminGlobal", "<AdminRights>global</AdminRights>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.AdminRights == mailcluster.AdminGlobal }},
		{"AdminNone", "<AdminRights>None</AdminRights>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.AdminRights == mailcluster.AdminNone }},
		{"DisabledTrue", "<Disabled>true</Disabled>", xmlapi.StatusOK,
			func(a *mailcluster.Account) bool { return a.Disabled }},
		{"QuotaBoth", "<Quotas><MaxDiskSpaceMB>1</MaxDiskSpaceMB><MaxDiskSpaceBytes>1</MaxDiskSpaceBytes></Quotas>", xmlapi.StatusInvalidParameter, nil},
		{"QuotaNotNumber", "<Quotas><MaxDiskSpaceMB>lots</MaxDiskSpaceMB></Quotas>", xmlapi.StatusInvalidParameter, nil},
		{"QuotaFraction", "<Quotas><MaxDiskSpaceMB>1.5</MaxDiskSpaceMB></Quotas>", xmlapi.StatusInvalidParameter, nil},
		{"QuotaNegative", "<Quotas><MaxMessageCount>-1</MaxMessageCount></Quotas>", xmlapi.StatusInvalidParameter, nil},
		{"QuotaOverflow", "<Quotas><MaxDiskSpaceMB>9223372036854775807</MaxDiskSpaceMB></Quotas>", xmlapi.StatusInvalidParameter, nil},
		{"QuotaEmpty", "<Quotas><MaxMessageCount/></Quotas>", xmlapi.StatusOK, // empty: the default
			func(a *mailcluster.Account) bool { return a.QuotaMessages == 0 }},
		{"AdminBogus", "<AdminRights>root</AdminRights>", xmlapi.StatusInvalidParameter, nil},
		{"MailDirRelative", "<MailDir>mail/x</MailDir>", xmlapi.StatusInvalidParameter, nil},
		{"FullNameTooLong", "<FullName>" + strings.Repeat("x", 300) + "</FullName>", xmlapi.StatusInvalidParameter, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mailbox := "user" + string(rune('a'+i))
			r := e.Call(t, "CreateUser", "<Domain>example.com</Domain><Mailbox>"+mailbox+"</Mailbox><Details><Password>secret-pass-x1</Password>"+tc.details+"</Details>")
			r.MustStatus(t, tc.status)
			a, err := e.Svc.FindAccount(service.SystemContext(context.Background(), "test"), "example.com", mailbox)
			if tc.status != xmlapi.StatusOK {
				if mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
					t.Fatalf("a refused request created the account: %v", err)
				}
				return
			}
			if err != nil || !tc.check(a) {
				t.Fatalf("stored %+v, %v", a, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
