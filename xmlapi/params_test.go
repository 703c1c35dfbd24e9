package xmlapi_test

import (
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// TestParameterTextPieces reads parameters whose text comes in several
// pieces (split by comments, processing instructions and CDATA sections)
// or one: each is the concatenation of its pieces, trimmed.
func TestParameterTextPieces(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", FullName: "Alice Example"})
	for name, params := range map[string]string{
		"One":      `<Domain>example.com</Domain><Mailbox>alice</Mailbox>`,
		"Trimmed":  "<Domain>\n example.com\t</Domain><Mailbox> alice </Mailbox>",
		"Comments": `<Domain>exam<!-- c -->ple<!---->.com</Domain><Mailbox> al<?pi x?>ice</Mailbox>`,
		"CDATA":    `<Domain><![CDATA[example]]>.com</Domain><Mailbox><![CDATA[ali]]><![CDATA[ce]]></Mailbox>`,
		"Elements": `<Domain>example<X>ignored</X>.com</Domain><Mailbox>alice<Y/></Mailbox>`,
	} {
		t.Run(name, func(t *testing.T) {
			r := e.Call(t, "GetUserInfo", params+`<Get><Details/></Get>`).MustOK(t)
			if got := r.Text("User/Details/Email"); got != "alice@example.com" {
				t.Fatalf("Email = %q\n%s", got, r.Body)
			}
		})
	}
	t.Run("ErrMissing", func(t *testing.T) {
		e.Call(t, "GetUserInfo", `<Domain><!-- c --> <![CDATA[ ]]></Domain><Mailbox>alice</Mailbox>`).
			MustStatus(t, xmlapi.StatusMissingParameter)
	})
}
