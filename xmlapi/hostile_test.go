package xmlapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailcluster/xmlapi"
)

// writeEnvelope is a CreateDomain request whose <Parameters> are params:
// if a hostile document got through, it would create a domain.
func writeEnvelope(params string) string {
	return Envelope("CreateDomain", "<Domain>hostile.example</Domain>"+params)
}

// TestHostileXML posts hostile documents that would each create a domain
// if they were accepted: DOCTYPEs, entity expansion (billion laughs),
// external entities aimed at a local listener, deep nesting, invalid
// UTF-8 and oversized bodies. Each is refused with its documented status,
// quickly; no external entity is fetched; nothing is written; and the
// handler keeps serving.
func TestHostileXML(t *testing.T) {
	e := MustOpenEnv(t)

	// An external entity pointing here would show up as a request.
	var fetched atomic.Int64
	bait := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		_, _ = io.WriteString(w, "<!ENTITY stolen 'x'>")
	}))
	t.Cleanup(bait.Close)

	laughs := `<!ENTITY lol "lol">`
	for i := 1; i <= 9; i++ {
		prev := "lol"
		if i > 1 {
			prev = "lol" + string(rune('0'+i-1))
		}
		laughs += `<!ENTITY lol` + string(rune('0'+i)) + ` "` + strings.Repeat("&"+prev+";", 10) + `">`
	}
	const deep = 100_000
	deepParams := strings.Repeat("<a>", deep) + strings.Repeat("</a>", deep)
	before := e.Store.Index()

	for _, tc := range []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"DOCTYPE", `<?xml version="1.0"?><!DOCTYPE MDaemon>` + writeEnvelope(""), xmlapi.StatusMalformed, "DOCTYPE"},
		{"DOCTYPEAfterRoot", writeEnvelope("") + `<!DOCTYPE MDaemon>`, xmlapi.StatusMalformed, "DOCTYPE"},
		{"BillionLaughs", `<?xml version="1.0"?><!DOCTYPE MDaemon [` + laughs + `]>` +
			Envelope("CreateDomain", "<Domain>&lol9;.example</Domain>"), xmlapi.StatusMalformed, "DOCTYPE"},
		{"ExternalSystemEntity", `<?xml version="1.0"?><!DOCTYPE MDaemon [<!ENTITY xxe SYSTEM "` + bait.URL + `/xxe">]>` +
			Envelope("CreateDomain", "<Domain>&xxe;</Domain>"), xmlapi.StatusMalformed, "DOCTYPE"},
		{"ExternalFileEntity", `<?xml version="1.0"?><!DOCTYPE MDaemon [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
			Envelope("CreateDomain", "<Domain>&xxe;</Domain>"), xmlapi.StatusMalformed, "DOCTYPE"},
		{"ExternalParameterEntity", `<?xml version="1.0"?><!DOCTYPE MDaemon [<!ENTITY % remote SYSTEM "` + bait.URL + `/dtd"> %remote;]>` +
			writeEnvelope(""), xmlapi.StatusMalformed, "DOCTYPE"},
		{"ExternalDTD", `<?xml version="1.0"?><!DOCTYPE MDaemon SYSTEM "` + bait.URL + `/ext.dtd">` + writeEnvelope(""), xmlapi.StatusMalformed, "DOCTYPE"},
		{"EntityDeclarationInBody", Envelope("CreateDomain", `<!ENTITY x "hostile.example"><Domain>&x;</Domain>`), xmlapi.StatusMalformed, "DOCTYPE"},
		{"UndefinedEntity", Envelope("CreateDomain", "<Domain>&xxe;</Domain>"), xmlapi.StatusMalformed, "well-formed"},
		{"XInclude", Envelope("CreateDomain", `<Domain><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="`+bait.URL+`/inc" parse="text"/></Domain>`),
			xmlapi.StatusMissingParameter, "Domain"}, // not processed: <Domain> has no text
		{"Nested100k", writeEnvelope(deepParams), xmlapi.StatusMalformed, "nested too deeply"},
		{"Nested100kUnclosed", writeEnvelope(strings.Repeat("<a>", deep)), xmlapi.StatusMalformed, ""},
		{"NestedAttributes100k", writeEnvelope(strings.Repeat(`<a b="1">`, deep)), xmlapi.StatusMalformed, ""},
		{"InvalidUTF8Text", writeEnvelope("<Description>caf\xe9</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"InvalidUTF8Name", writeEnvelope("<Descr\xffiption>x</Descr\xffiption>"), xmlapi.StatusMalformed, "well-formed"},
		{"InvalidUTF8Attribute", "<MDaemon><API><Request version=\"\xc0\xaf\"><Operation>CreateDomain</Operation>" +
			"<Parameters><Domain>hostile.example</Domain></Parameters></Request></API></MDaemon>", xmlapi.StatusMalformed, "well-formed"},
		{"OverlongSlash", writeEnvelope("<Description>\xc0\xaf</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"Surrogate", writeEnvelope("<Description>\xed\xa0\x80</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"Truncated4Byte", writeEnvelope("<Description>\xf0\x9f\x98</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"NULCharacterReference", writeEnvelope("<Description>&#0;</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"RawNUL", writeEnvelope("<Description>a\x00b</Description>"), xmlapi.StatusMalformed, "well-formed"},
		{"UTF16Declared", `<?xml version="1.0" encoding="UTF-16"?>` + writeEnvelope(""), xmlapi.StatusMalformed, "UTF-8"},
		{"UTF16BOM", "\xff\xfe<\x00M\x00", xmlapi.StatusMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(tc.body))
			msg := r.MustStatus(t, tc.status)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not mention %q", msg, tc.msg)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			if strings.Contains(r.Body, "root:") || strings.Contains(r.Body, "lollollol") || strings.Contains(r.Body, "stolen") {
				t.Errorf("an entity was expanded:\n%s", r.Body)
			}
		})
	}

	t.Run("TooLarge", func(t *testing.T) {
		pad := "<Description>" + strings.Repeat("x", xmlapi.DefaultMaxBodyBytes) + "</Description>"
		for name, body := range map[string]io.Reader{
			"ContentLength": strings.NewReader(writeEnvelope(pad)),
			"Chunked":       io.MultiReader(strings.NewReader(writeEnvelope(pad))),
			"Endless":       io.LimitReader(repeatReader('x'), 64<<20),
		} {
			t.Run(name, func(t *testing.T) {
				Post(t, e.URL, adminAddr, adminPass, body).MustStatus(t, xmlapi.StatusTooLarge)
			})
		}
	})

	t.Run("NothingWritten", func(t *testing.T) {
		if got := e.Store.Index(); got != before {
			t.Errorf("store index moved from %d to %d", before, got)
		}
		e.Call(t, "GetDomainInfo", "<Domain>hostile.example</Domain>").MustStatus(t, xmlapi.StatusNotFound)
		if n := fetched.Load(); n != 0 {
			t.Errorf("%d external entities were fetched", n)
		}
	})
	t.Run("StillServing", func(t *testing.T) {
		e.Call(t, "GetVersionInfo", "").MustOK(t)
		e.Call(t, "CreateDomain", "<Domain>after.example</Domain>").MustOK(t)
	})
}

// repeatReader is an endless stream of one byte.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	copy(p, bytes.Repeat([]byte{byte(r)}, len(p)))
	return len(p), nil
}
