package xmlapi_test

import (
	"strings"
	"testing"

	"mailcluster/xmlapi"
)

// sendAsOf returns the <SendAs> addresses of a User answer, joined by
// spaces, and fails when the element is missing.
func sendAsOf(tb testing.TB, r *Response) string {
	tb.Helper()
	sa := r.Result().FindElement("User/Details/SendAs")
	if sa == nil {
		tb.Fatalf("no User/Details/SendAs:\n%s", r.Body)
	}
	var out []string
	for _, a := range sa.SelectElements("Address") {
		out = append(out, a.Text())
	}
	return strings.Join(out, " ")
}

// TestUserSendAs creates an account with a SendAs list, reads it back,
// replaces, keeps and clears it, and refuses a list given as text.
func TestUserSendAs(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	user := `<Domain>example.com</Domain><Mailbox>alice</Mailbox>`
	info := func() *Response { return e.Call(t, "GetUserInfo", user).MustOK(t) }

	r := e.Call(t, "CreateUser", user+`<Details><Password>secret-pass-alice</Password>
		<SendAs><Address>info@example.com</Address><Address>@example.com</Address></SendAs></Details>`).MustOK(t)
	if got := sendAsOf(t, r); got != "info@example.com @example.com" {
		t.Fatalf("CreateUser SendAs = %q", got)
	}
	if got := sendAsOf(t, info()); got != "info@example.com @example.com" {
		t.Fatalf("GetUserInfo SendAs = %q", got)
	}

	t.Run("Replace", func(t *testing.T) {
		e.Call(t, "UpdateUser", user+`<Details><SendAs><Address>sales@example.com</Address></SendAs></Details>`).MustOK(t)
		if got := sendAsOf(t, info()); got != "sales@example.com" {
			t.Fatalf("SendAs = %q, want the new list", got)
		}
	})
	t.Run("AbsentKeeps", func(t *testing.T) {
		e.Call(t, "UpdateUser", user+`<Details><FullName>Alice</FullName></Details>`).MustOK(t)
		if got := sendAsOf(t, info()); got != "sales@example.com" {
			t.Fatalf("SendAs = %q after an update without it", got)
		}
	})
	t.Run("ErrText", func(t *testing.T) {
		msg := e.Call(t, "UpdateUser", user+`<Details><SendAs>a@example.com, b@example.com</SendAs></Details>`).
			MustStatus(t, xmlapi.StatusInvalidParameter)
		if !strings.Contains(msg, "SendAs") {
			t.Fatalf("message %q", msg)
		}
		if got := sendAsOf(t, info()); got != "sales@example.com" {
			t.Fatalf("SendAs = %q after a refused update", got)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.Call(t, "UpdateUser", user+`<Details><SendAs><Address>not an address</Address></SendAs></Details>`).
			MustStatus(t, xmlapi.StatusInvalidParameter)
	})
	t.Run("EmptyClears", func(t *testing.T) {
		e.Call(t, "UpdateUser", user+`<Details><SendAs/></Details>`).MustOK(t)
		if got := sendAsOf(t, info()); got != "" {
			t.Fatalf("SendAs = %q, want none", got)
		}
	})
}
