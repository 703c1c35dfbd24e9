package xmlapi_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// TestUserImportedHash: CreateUser and UpdateUser take <PasswordHash>, a
// bcrypt hash of cost 10 or more, instead of <Password>; the account logs
// in with the password behind it, the hash is never answered nor logged,
// and bad hashes are refused (status 3) with nothing written.
func TestUserImportedHash(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	ctx := service.SystemContext(context.Background(), "test")
	hash := func(pw string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	good := hash("secret-pass-imported", 10)

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>imp</Mailbox>
			<Details><PasswordHash>`+good+`</PasswordHash><AdminRights>Domain</AdminRights></Details>`).MustOK(t)
		if r.Text("User/Details/Email") != "imp@example.com" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		Post(t, e.URL, "imp@example.com", "secret-pass-imported", strings.NewReader(Envelope("GetUserInfo",
			`<Domain>example.com</Domain><Mailbox>imp</Mailbox>`))).MustOK(t)
		Post(t, e.URL, "imp@example.com", "secret-pass-other", strings.NewReader(Envelope("GetUserInfo",
			`<Domain>example.com</Domain><Mailbox>imp</Mailbox>`))).MustStatusHTTP(t, xmlapi.StatusUnauthorized, 401)
	})
	t.Run("Update", func(t *testing.T) {
		e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>imp</Mailbox>
			<Details><PasswordHash> `+hash("secret-pass-second", 10)+` </PasswordHash></Details>`).MustOK(t)
		if _, err := e.Svc.Authenticate(ctx, "imp@example.com", "secret-pass-second"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Svc.Authenticate(ctx, "imp@example.com", "secret-pass-imported"); mailcluster.ErrorCode(err) != mailcluster.EUNAUTHORIZED {
			t.Fatalf("the old password: %v", err)
		}
	})
	low := hash("secret-pass-imported", 9)
	for _, tc := range []struct{ name, details string }{
		{"CostBelow10", `<PasswordHash>` + low + `</PasswordHash>`},
		{"NotBcrypt", `<PasswordHash>secret-pass-imported</PasswordHash>`},
		{"Truncated", `<PasswordHash>` + good[:50] + `</PasswordHash>`},
		{"OtherVersion", `<PasswordHash>$2x$` + good[4:] + `</PasswordHash>`},
		{"Both", `<PasswordHash>` + good + `</PasswordHash><Password>secret-pass-imported</Password>`},
	} {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			before := e.Store.Index()
			msg := e.Call(t, "CreateUser", `<Domain>example.com</Domain><Mailbox>bad</Mailbox><Details>`+tc.details+`</Details>`).
				MustStatus(t, xmlapi.StatusInvalidParameter)
			if !strings.Contains(strings.ToLower(msg), "password") {
				t.Errorf("message %q does not name the field", msg)
			}
			kv, _ := e.Store.Get(schema.Account("example.com", "imp"))
			e.Call(t, "UpdateUser", `<Domain>example.com</Domain><Mailbox>imp</Mailbox><Details>`+tc.details+`</Details>`).
				MustStatus(t, xmlapi.StatusInvalidParameter)
			if _, ok := e.Store.Get(schema.Account("example.com", "bad")); ok || e.Store.Index() != before {
				t.Fatal("a refused request wrote something")
			}
			if after, _ := e.Store.Get(schema.Account("example.com", "imp")); after.ModifyIndex != kv.ModifyIndex {
				t.Fatal("a refused update changed the account")
			}
		})
	}
	for _, h := range []string{good, good[7:], low} {
		if strings.Contains(e.Logs.String(), h) {
			t.Fatal("the log holds a password hash")
		}
	}
}
