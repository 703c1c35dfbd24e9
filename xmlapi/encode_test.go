package xmlapi

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// writeAnswer writes root as an answer: the XML declaration, then root
// written by writeElement (through xmlWriter.element).
func writeAnswer(buf *bytes.Buffer, root *etree.Element) {
	w := xmlWriter{buf: buf}
	w.declaration()
	w.element(root)
	w.finish()
}

// indentedByEtree is how answers were written before writeAnswer: a
// document with the declaration and a copy of root, Indent(2), WriteTo.
func indentedByEtree(t testing.TB, root *etree.Element) []byte {
	t.Helper()
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
	doc.AddChild(root.Copy())
	doc.Indent(2)
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSameAsEtree fails unless writeAnswer writes root exactly as
// indentedByEtree does, and leaves root as it was.
func checkSameAsEtree(t testing.TB, root *etree.Element) {
	t.Helper()
	before := etree.NewDocument()
	before.AddChild(root.Copy())
	beforeBytes, _ := before.WriteToBytes()
	var buf bytes.Buffer
	writeAnswer(&buf, root)
	want := indentedByEtree(t, root)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("writeAnswer differs from etree's Indent(2):\n got %q\nwant %q", buf.Bytes(), want)
	}
	after := etree.NewDocument()
	after.AddChild(root.Copy())
	if afterBytes, _ := after.WriteToBytes(); !bytes.Equal(beforeBytes, afterBytes) {
		t.Fatalf("writeAnswer changed the tree:\n%s\n%s", beforeBytes, afterBytes)
	}
}

// envelopeWith is an answer's envelope with children under <API>.
func envelopeWith(children ...*etree.Element) *etree.Element {
	root := etree.NewElement("MDaemon")
	api := root.CreateElement("API")
	api.CreateAttr("version", "1")
	for _, c := range children {
		api.AddChild(c)
	}
	resp := api.CreateElement("Response")
	resp.CreateElement("Status").CreateAttr("id", "0")
	return root
}

// hostileText are values with characters that must be escaped, space
// that must be kept, and text that is only white space.
var hostileText = []string{
	"", " ", "   ", "\t\n", "\r\n", "a & b <c> \"d\" 'e'", " lead and trail ", "]]>", "ünïcødé ☃",
	"line1\nline2", "\x7f", "&amp;", "<!-- not a comment -->",
}

func TestWriteAnswerUserAsEtree(t *testing.T) {
	for _, v := range hostileText {
		a := &mailcluster.Account{Domain: "example.com", Mailbox: "alice", FullName: v, FirstName: v, LastName: v + "x",
			MailboxPath: "/m/" + v, QuotaBytes: 3 * mib / 2, QuotaMessages: 7, AdminRights: mailcluster.AdminDomain,
			SendAs: []string{v, "@example.org"}, CreatedAt: time.Unix(1, 0).UTC(), UpdatedAt: time.Unix(2, 0).UTC()}
		u := user{Account: a,
			aliases: []*mailcluster.Alias{{Domain: "example.com", Name: "al" + v}},
			lists:   []*mailcluster.MailingList{{Domain: "example.com", Name: "list"}},
			groups:  []*mailcluster.Group{{Domain: "example.com", Name: v}, {Domain: "example.com", Name: "g2"}}}
		result := etree.NewElement("Result")
		addUser(result, u, v, allSections)
		checkSameAsEtree(t, envelopeWith(result))
	}
}

// echoedRequests are request documents whose <Request> is copied into an
// answer (echo="1"): indentation, comments, processing instructions,
// mixed content, CDATA, prefixes, entities and deep nesting.
var echoedRequests = []string{
	echoEnvelope(),
	`<MDaemon><API><Request echo="1"><Operation>GetUserInfo</Operation><Parameters/></Request></API></MDaemon>`,
	"<MDaemon>\n\t<API>\r\n <Request echo=\"1\" a='&lt;&amp;&quot;&#x9;'>\n  <!-- a comment -->\n  <?pi some data?>\n" +
		"  <Operation> GetUserInfo </Operation>\n  <Parameters>text<Domain>d</Domain>more<X>  </X><Y/>\n" +
		"  <Z><![CDATA[<raw> & ]]></Z>tail</Parameters>\n </Request></API></MDaemon>",
	`<MDaemon><API><Request xmlns:p="urn:x"><p:Operation p:attr="v">x</p:Operation><Parameters>` +
		strings.Repeat("<E>", 60) + "deep" + strings.Repeat("</E>", 60) + `</Parameters></Request></API></MDaemon>`,
	"<MDaemon><API><Request><Parameters>\n\n   \n</Parameters><Password>secret</Password></Request></API></MDaemon>",
}

// echoEnvelope is a compact request with default attributes.
func echoEnvelope() string {
	return `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request version="1.0" echo="1" verbose="0">` +
		`<Operation>GetVersionInfo</Operation><Parameters></Parameters></Request></API></MDaemon>`
}

func TestWriteAnswerEchoAsEtree(t *testing.T) {
	for _, body := range echoedRequests {
		for _, cdata := range []bool{false, true} {
			doc := etree.NewDocument()
			doc.ReadSettings.PreserveCData = cdata
			if err := doc.ReadFromString(body); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			req := doc.FindElement("//Request")
			checkSameAsEtree(t, envelopeWith(redact(req.Copy())))
		}
	}
}

// FuzzWriteAnswer checks writeAnswer against etree's Indent(2) on any
// document etree reads, its root element echoed into an envelope.
func FuzzWriteAnswer(f *testing.F) {
	for _, s := range echoedRequests {
		f.Add(s, false)
	}
	f.Add("<a>\n <b> </b>\n <c>x<d/>y</c><!--c--><?p q?></a>", true)
	f.Fuzz(func(t *testing.T, body string, cdata bool) {
		doc := etree.NewDocument()
		doc.ReadSettings.PreserveCData = cdata
		doc.ReadSettings.MaxDepth = 64
		if err := doc.ReadFromString(body); err != nil {
			return
		}
		root := doc.Root()
		if root == nil {
			return
		}
		checkSameAsEtree(t, envelopeWith(root.Copy()))
	})
}
