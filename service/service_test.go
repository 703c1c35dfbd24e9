package service_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"mailcluster/kvstore"
	"mailcluster/service"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
)

// fakeLeadership is a Leadership whose answers the test sets.
type fakeLeadership struct {
	role    mailcluster.Role
	primary mailcluster.PrimaryRef
	known   bool
}

func (f *fakeLeadership) Role() mailcluster.Role { return f.role }
func (f *fakeLeadership) Primary() (mailcluster.PrimaryRef, bool) {
	return f.primary, f.known
}

var primaryRef = mailcluster.PrimaryRef{Name: "node1", APIURL: "http://127.0.0.1:8080"}

// MustOpenService returns a bootstrapped Service over a fresh bbolt store
// and the store, with the given leadership (nil: primary); mods set
// options beyond the test defaults (the cheapest bcrypt cost).
func MustOpenService(tb testing.TB, lead mailcluster.Leadership, mods ...func(*service.Options)) (*service.Service, *kvstore.BoltStore) {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := kvstore.OpenBoltStore(filepath.Join(tb.TempDir(), "state.db"), log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	opts := service.Options{BcryptCost: bcrypt.MinCost}
	for _, m := range mods {
		m(&opts)
	}
	boot := service.New(st, mailcluster.StaticLeadership{Self: primaryRef}, log, opts)
	if _, err := boot.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"}); err != nil {
		tb.Fatal(err)
	}
	if lead == nil {
		return boot, st
	}
	return service.New(st, lead, log, opts), st
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := mailcluster.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func TestBootstrap(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	t.Run("OK", func(t *testing.T) {
		svc, st := MustOpenService(t, nil)
		a, err := svc.Authenticate(ctx, "Admin@LocalHost", "secret-pass-1")
		if err != nil {
			t.Fatal(err)
		}
		if a.AdminRights != mailcluster.AdminGlobal || a.PasswordHash != "" {
			t.Fatalf("admin = %+v", a)
		}
		if got := mustLocal(svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, ""); got != "/srv/mc/mailboxes" {
			t.Fatalf("MailboxRoot = %q", got)
		}
		idx := st.Index()
		gen, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "other@localhost", DataDir: "/x"})
		if err != nil || gen != "" || st.Index() != idx {
			t.Fatalf("second bootstrap changed state: gen=%q err=%v index %d -> %d", gen, err, idx, st.Index())
		}
	})
	t.Run("GeneratedPassword", func(t *testing.T) {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), log)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		svc := service.New(st, mailcluster.StaticLeadership{Self: primaryRef}, log, service.Options{BcryptCost: bcrypt.MinCost})
		gen, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "root@example.com", DataDir: "/d"})
		if err != nil || len(gen) < 20 {
			t.Fatalf("gen=%q err=%v", gen, err)
		}
		if _, err := svc.Authenticate(ctx, "root@example.com", gen); err != nil {
			t.Fatalf("generated password does not work: %v", err)
		}
		kv, _ := st.Get("accounts/example.com/root")
		if strings.Contains(string(kv.Value), gen) || !strings.Contains(string(kv.Value), "$2a$") {
			t.Fatalf("stored record must hold only a bcrypt hash: %s", kv.Value)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenService(t, nil)
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []mailcluster.AccountCreate{
		{Domain: "example.com", Mailbox: "user", Password: "user-pass-1"},
		{Domain: "example.com", Mailbox: "frozen", Password: "user-pass-1", AdminRights: mailcluster.AdminDomain, Frozen: true},
		{Domain: "example.com", Mailbox: "off", Password: "user-pass-1", AdminRights: mailcluster.AdminDomain, Disabled: true},
		{Domain: "example.com", Mailbox: "dadmin", Password: "user-pass-1", AdminRights: mailcluster.AdminDomain},
	} {
		if _, err := svc.CreateAccount(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ addr, pw, code string }{
		{"dadmin@example.com", "user-pass-1", ""},
		{"dadmin@example.com", "wrong-pass-1", mailcluster.EUNAUTHORIZED},
		{"user@example.com", "user-pass-1", mailcluster.EUNAUTHORIZED}, // no admin rights
		{"frozen@example.com", "user-pass-1", mailcluster.EUNAUTHORIZED},
		{"off@example.com", "user-pass-1", mailcluster.EUNAUTHORIZED},
		{"nobody@example.com", "user-pass-1", mailcluster.EUNAUTHORIZED},
		{"not-an-address", "user-pass-1", mailcluster.EUNAUTHORIZED},
		{"dadmin@example.com", "", mailcluster.EUNAUTHORIZED},
	} {
		_, err := svc.Authenticate(ctx, tc.addr, tc.pw)
		if mailcluster.ErrorCode(err) != tc.code {
			t.Errorf("Authenticate(%q) = %v, want code %q", tc.addr, err, tc.code)
		}
	}
}

func TestDomains(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenService(t, nil)
	t.Run("OK", func(t *testing.T) {
		d, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "Example.ORG.", Description: "test", MaxAccounts: 2})
		if err != nil {
			t.Fatal(err)
		}
		if d.Name != "example.org" || d.MaxAccounts != 2 || d.CreatedAt.IsZero() {
			t.Fatalf("domain = %+v", d)
		}
		desc := "changed"
		d, err = svc.UpdateDomain(ctx, "example.org", mailcluster.DomainUpdate{Description: &desc})
		if err != nil || d.Description != "changed" || d.MaxAccounts != 2 {
			t.Fatalf("update = %+v, %v", d, err)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		_, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.org"})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, name := range []string{"", "-bad.com", "bad-.com", "a..b", "bad_name.com", "ex ample.com", strings.Repeat("a", 64) + ".com"} {
			_, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: name})
			wantCode(t, err, mailcluster.EINVALID)
		}
		_, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "ok.com", MaxAccounts: -1})
		wantCode(t, err, mailcluster.EINVALID)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := svc.FindDomain(ctx, "missing.com")
		wantCode(t, err, mailcluster.ENOTFOUND)
		wantCode(t, svc.DeleteDomain(ctx, "missing.com", false), mailcluster.ENOTFOUND)
	})
	t.Run("MaxAccounts", func(t *testing.T) {
		for _, mb := range []string{"a", "b"} {
			if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.org", Mailbox: mb, Password: "pass-word-1"}); err != nil {
				t.Fatal(err)
			}
		}
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.org", Mailbox: "c", Password: "pass-word-1"})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("DeleteNeedsForce", func(t *testing.T) {
		wantCode(t, svc.DeleteDomain(ctx, "example.org", false), mailcluster.ECONFLICT)
		if _, err := svc.FindAccount(ctx, "example.org", "a"); err != nil {
			t.Fatalf("refused delete removed an account: %v", err)
		}
		if err := svc.DeleteDomain(ctx, "example.org", true); err != nil {
			t.Fatal(err)
		}
		_, err := svc.FindAccount(ctx, "example.org", "a")
		wantCode(t, err, mailcluster.ENOTFOUND)
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.org"}); err != nil {
			t.Fatal(err)
		}
		if d, _ := svc.FindDomain(ctx, "example.org"); d.AccountCount != 0 {
			t.Fatalf("re-created domain has %d accounts", d.AccountCount)
		}
	})
	t.Run("LastAdminDomain", func(t *testing.T) {
		wantCode(t, svc.DeleteDomain(ctx, "localhost", true), mailcluster.ECONFLICT)
	})
}

func TestAccounts(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, st := MustOpenService(t, nil)
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		a, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "Alice", FullName: "Alice A",
			Password: "alice-pass-1", QuotaBytes: 1 << 20, AdminRights: mailcluster.AdminDomain})
		if err != nil {
			t.Fatal(err)
		}
		if a.Mailbox != "alice" || a.MailboxPath != "/srv/mc/mailboxes/example.com/alice/" || a.PasswordHash != "" {
			t.Fatalf("account = %+v", a)
		}
		frozen := true
		a, err = svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{Frozen: &frozen})
		if err != nil || !a.Frozen || a.FullName != "Alice A" {
			t.Fatalf("update = %+v, %v", a, err)
		}
	})
	t.Run("Template", func(t *testing.T) {
		if err := svc.SetSetting(ctx, mailcluster.MainSettingsFile, "NewAccounts", "MailboxPath", "$MAILBOXROOT$/$DOMAIN$/$MAILBOXFIRSTCHARS2$/$MAILBOX$/"); err != nil {
			t.Fatal(err)
		}
		a, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob", Password: "bob-pass-12"})
		if err != nil {
			t.Fatal(err)
		}
		if a.MailboxPath != "/srv/mc/mailboxes/example.com/bo/bob/" {
			t.Fatalf("path = %q", a.MailboxPath)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, in := range []mailcluster.AccountCreate{
			{Domain: "example.com", Mailbox: "", Password: "long-enough"},
			{Domain: "example.com", Mailbox: "a/b", Password: "long-enough"},
			{Domain: "example.com", Mailbox: ".a", Password: "long-enough"},
			{Domain: "example.com", Mailbox: "a..b", Password: "long-enough"},
			{Domain: "example.com", Mailbox: "short", Password: "short"},
			{Domain: "example.com", Mailbox: "quota", Password: "long-enough", QuotaBytes: -1},
			{Domain: "example.com", Mailbox: "rights", Password: "long-enough", AdminRights: "root"},
			{Domain: "example.com", Mailbox: "path", Password: "long-enough", MailboxPath: "relative/path"},
			{Domain: "example.com", Mailbox: "path2", Password: "long-enough", MailboxPath: "/a/../etc"},
			{Domain: "example.com", Mailbox: "name", Password: "long-enough", FullName: "a\nb"},
		} {
			before := st.Index()
			_, err := svc.CreateAccount(ctx, in)
			wantCode(t, err, mailcluster.EINVALID)
			if st.Index() != before {
				t.Fatalf("refused create of %+v changed the state", in)
			}
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "ALICE", Password: "alice-pass-1"})
		wantCode(t, err, mailcluster.ECONFLICT)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "nowhere.com", Mailbox: "x", Password: "long-enough"})
		wantCode(t, err, mailcluster.ENOTFOUND)
		_, err = svc.FindAccount(ctx, "example.com", "nobody")
		wantCode(t, err, mailcluster.ENOTFOUND)
		wantCode(t, svc.DeleteAccount(ctx, "example.com", "nobody"), mailcluster.ENOTFOUND)
	})
	t.Run("PasswordChange", func(t *testing.T) {
		pw := "new-alice-pass"
		thaw := false
		if _, err := svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{Password: &pw, Frozen: &thaw}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, "alice@example.com", "alice-pass-1"); err == nil {
			t.Fatal("old password still works")
		}
		if _, err := svc.Authenticate(ctx, "alice@example.com", pw); err != nil {
			t.Fatalf("new password: %v", err)
		}
	})
	t.Run("LastAdmin", func(t *testing.T) {
		none := mailcluster.AdminNone
		_, err := svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{AdminRights: &none})
		wantCode(t, err, mailcluster.ECONFLICT)
		wantCode(t, svc.DeleteAccount(ctx, "localhost", "admin"), mailcluster.ECONFLICT)
	})
}

func TestFindAccountsPaging(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenService(t, nil)
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []string{"u1", "u2", "u3", "u4", "u5", "x1", "x2"} {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: "pass-word-1"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		page, next, err := svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: "example.com", Search: "U", Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range page {
			got = append(got, a.Mailbox)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != "u1,u2,u3,u4,u5" || pages != 3 {
		t.Fatalf("got %v in %d pages", got, pages)
	}
	_, _, err := svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: "example.com", Limit: 1001})
	wantCode(t, err, mailcluster.EINVALID)
}

func TestAuthorization(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenService(t, nil)
	for _, d := range []string{"a.com", "b.com"} {
		if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: d}); err != nil {
			t.Fatal(err)
		}
	}
	da, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "a.com", Mailbox: "boss", Password: "pass-word-1", AdminRights: mailcluster.AdminDomain})
	if err != nil {
		t.Fatal(err)
	}
	cctx := service.NewContextWithCaller(ctx, da)
	if _, err := svc.CreateAccount(cctx, mailcluster.AccountCreate{Domain: "a.com", Mailbox: "u", Password: "pass-word-1"}); err != nil {
		t.Fatalf("domain admin in own domain: %v", err)
	}
	_, err = svc.CreateAccount(cctx, mailcluster.AccountCreate{Domain: "b.com", Mailbox: "u", Password: "pass-word-1"})
	wantCode(t, err, mailcluster.EFORBIDDEN)
	_, err = svc.CreateAccount(cctx, mailcluster.AccountCreate{Domain: "a.com", Mailbox: "g", Password: "pass-word-1", AdminRights: mailcluster.AdminGlobal})
	wantCode(t, err, mailcluster.EFORBIDDEN)
	_, err = svc.CreateDomain(cctx, &mailcluster.Domain{Name: "c.com"})
	wantCode(t, err, mailcluster.EFORBIDDEN)
	_, err = svc.SettingsFile(cctx, mailcluster.MainSettingsFile)
	wantCode(t, err, mailcluster.EFORBIDDEN)
	ds, err := svc.FindDomains(cctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "a.com" {
		t.Fatalf("domain admin sees %v, %v", ds, err)
	}
	wantCode(t, svc.DeleteAccount(cctx, "a.com", "boss"), mailcluster.ECONFLICT)
}

func TestSettings(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, st := MustOpenService(t, nil)
	t.Run("ReplaceFromIni", func(t *testing.T) {
		secs, err := mailcluster.ParseIni("extra", []byte("; comment\n[SMTP]\nBanner=Hello; world\nPort=25\n\n[Other]\nA=1\n"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := svc.ReplaceSettingsFile(ctx, "extra", secs)
		if err != nil {
			t.Fatal(err)
		}
		if f.Sections["SMTP"]["Banner"] != "Hello; world" || f.Sections["Other"]["A"] != "1" {
			t.Fatalf("file = %+v", f)
		}
		secs, _ = mailcluster.ParseIni("extra", []byte("[SMTP]\nPort=26\n"))
		f, err = svc.ReplaceSettingsFile(ctx, "extra", secs)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Sections) != 1 || len(f.Sections["SMTP"]) != 1 || f.Sections["SMTP"]["Port"] != "26" {
			t.Fatalf("replace kept old keys: %+v", f.Sections)
		}
		files, _ := svc.SettingsFiles(ctx)
		if strings.Join(files, ",") != "extra,mailcluster" {
			t.Fatalf("files = %v", files)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		before := st.Index()
		for _, text := range []string{
			"Key=outside\n",
			"[Directories]\nMailboxRoot=relative\n",
			"[NewAccounts]\nMailboxPath=$MAILBOXROOT$/$DOMAIN$/\n",
			"[Passwords]\nMinLength=0\n",
			"[AttachmentLinking]\nEnabled=maybe\n",
			"[Bad Section]\nA=1\n",
			"[unclosed\nA=1\n",
		} {
			secs, err := mailcluster.ParseIni(mailcluster.MainSettingsFile, []byte(text))
			if err == nil {
				_, err = svc.ReplaceSettingsFile(ctx, mailcluster.MainSettingsFile, secs)
			}
			wantCode(t, err, mailcluster.EINVALID)
		}
		wantCode(t, svc.SetSetting(ctx, "mailcluster", "SMTP", "Banner", "two\nlines"), mailcluster.EINVALID)
		wantCode(t, svc.SetSetting(ctx, "bad/name", "SMTP", "Banner", "x"), mailcluster.EINVALID)
		wantCode(t, svc.SetSetting(ctx, "mailcluster", "SMTP", "Banner", strings.Repeat("x", 5000)), mailcluster.ETOOLARGE)
		if st.Index() != before {
			t.Fatal("refused settings changed the state")
		}
	})
	t.Run("Keys", func(t *testing.T) {
		if err := svc.SetSetting(ctx, "mailcluster", "SMTP", "Banner", "hi"); err != nil {
			t.Fatal(err)
		}
		if v, err := svc.GetSetting(ctx, "mailcluster", "SMTP", "Banner"); err != nil || v != "hi" {
			t.Fatalf("get = %q, %v", v, err)
		}
		if err := svc.DeleteSetting(ctx, "mailcluster", "SMTP", "Banner"); err != nil {
			t.Fatal(err)
		}
		_, err := svc.GetSetting(ctx, "mailcluster", "SMTP", "Banner")
		wantCode(t, err, mailcluster.ENOTFOUND)
		wantCode(t, svc.DeleteSetting(ctx, "mailcluster", "SMTP", "Banner"), mailcluster.ENOTFOUND)
	})
	t.Run("RenderParseRoundTrip", func(t *testing.T) {
		f, err := svc.SettingsFile(ctx, mailcluster.MainSettingsFile)
		if err != nil {
			t.Fatal(err)
		}
		back, err := mailcluster.ParseIni(mailcluster.MainSettingsFile, mailcluster.RenderIni(f.Sections))
		if err != nil {
			t.Fatal(err)
		}
		if string(mailcluster.RenderIni(back)) != string(mailcluster.RenderIni(f.Sections)) {
			t.Fatalf("round trip differs:\n%s\n---\n%s", mailcluster.RenderIni(back), mailcluster.RenderIni(f.Sections))
		}
	})
}

// TestSecondaryNodeInfo: a secondary reports its role and the primary,
// and serves reads. (Every write is walked on a secondary in
// readonly_test.go, from the method list itself.)
func TestSecondaryNodeInfo(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	lead := &fakeLeadership{role: mailcluster.RoleSecondary, primary: primaryRef, known: true}
	svc, _ := MustOpenService(t, lead)
	if _, err := svc.FindDomain(ctx, "localhost"); err != nil {
		t.Fatalf("reads must work on a secondary: %v", err)
	}
	if info := mustLocal(svc).NodeInfo(); info.Role != mailcluster.RoleSecondary || info.Primary == nil || info.Primary.Name != "node1" {
		t.Fatalf("node info = %+v", info)
	}
}

func TestExpandMailboxPath(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{"$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/", "/root/ex.com/alice/"},
		{"$MAILBOXROOT$/$MAILBOXFIRSTCHARS1$/$MAILBOX$/", "/root/a/alice/"},
		{"$MAILBOXROOT$/$MAILBOXFIRSTCHARS9$/", "/root/alice/"},
		{"/fixed/$DOMAIN$/$MAILBOX$", "/fixed/ex.com/alice"},
	} {
		if got := mailcluster.ExpandMailboxPath(tc.tmpl, "/root/", "ex.com", "alice"); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

func TestParseFlag(t *testing.T) {
	for in, want := range map[string]bool{"Yes": true, "no": false, "1": true, "0": false, "TRUE": true, "false": false, " on ": true} {
		got, err := mailcluster.ParseFlag(in)
		if err != nil || got != want {
			t.Errorf("ParseFlag(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := mailcluster.ParseFlag("maybe"); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
		t.Errorf("ParseFlag(maybe) = %v", err)
	}
}

// TestAccountWithoutPassword: an account created without a password (as
// classic provisioning clients do) exists, cannot log in, and does not
// count as a usable global administrator until a password is set.
func TestAccountWithoutPassword(t *testing.T) {
	svc, _ := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "nopass", AdminRights: mailcluster.AdminGlobal}); err != nil {
		t.Fatalf("create without a password: %v", err)
	}
	_, err := svc.Authenticate(ctx, "nopass@example.com", "")
	wantCode(t, err, mailcluster.EUNAUTHORIZED)
	_, err = svc.Authenticate(ctx, "nopass@example.com", "anything-at-all")
	wantCode(t, err, mailcluster.EUNAUTHORIZED)
	// The only other global administrator cannot be demoted: nopass cannot log in.
	none := mailcluster.AdminNone
	_, err = svc.UpdateAccount(ctx, "localhost", "admin", mailcluster.AccountUpdate{AdminRights: &none})
	wantCode(t, err, mailcluster.ECONFLICT)
	pw := "now-a-password-1"
	if _, err := svc.UpdateAccount(ctx, "example.com", "nopass", mailcluster.AccountUpdate{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, "nopass@example.com", pw); err != nil {
		t.Fatalf("login after the password was set: %v", err)
	}
}
