package xmlapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"mailcluster/xmlapi"
)

// postAs sends an XML-API request as the bootstrap admin with the given
// Content-Type (none when "") and extra headers.
func postAs(tb testing.TB, endpoint, contentType, body string, header map[string]string) *Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.SetBasicAuth(adminAddr, adminPass)
	return do(tb, req)
}

// TestCrossSiteRequests replays what a page of another site can make a
// browser send with cached Basic credentials: a form post (text/plain,
// urlencoded, multipart) or any post with its own Origin. Nothing is
// created; XML from the server's own origin (or from no browser) works.
func TestCrossSiteRequests(t *testing.T) {
	e := MustOpenEnv(t)
	create := func(domain string) string {
		return Envelope("CreateDomain", "<Domain>"+domain+"</Domain>")
	}
	u, _ := url.Parse(e.URL)
	own := "http://" + u.Host

	refused := []struct {
		name, contentType, body string
		header                  map[string]string
		status                  int
	}{
		// What <form enctype="text/plain"> sends: name=value with the XML in it.
		{"ErrTextPlainForm", "text/plain", "<MDaemon><API><Request><Operation>CreateDomain</Operation><Parameters><Domain>plain.example</Domain></Parameters></Request></API></MDaemon>=", nil, xmlapi.StatusUnsupportedType},
		{"ErrURLEncodedForm", "application/x-www-form-urlencoded", "x=" + url.QueryEscape(create("form.example")), nil, xmlapi.StatusUnsupportedType},
		{"ErrMultipart", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n" + create("multi.example") + "\r\n--b--\r\n", nil, xmlapi.StatusUnsupportedType},
		{"ErrNoContentType", "", create("none.example"), nil, xmlapi.StatusUnsupportedType},
		{"ErrForeignOrigin", "text/xml", create("origin.example"), map[string]string{"Origin": "http://evil.example"}, xmlapi.StatusForeignOrigin},
		{"ErrNullOrigin", "application/xml", create("null.example"), map[string]string{"Origin": "null"}, xmlapi.StatusForeignOrigin},
		{"ErrOtherPort", "text/xml", create("port.example"), map[string]string{"Origin": "http://" + u.Hostname() + ":1"}, xmlapi.StatusForeignOrigin},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := postAs(t, e.URL, tt.contentType, tt.body, tt.header)
			r.MustStatus(t, tt.status)
			if r.Header.Get("WWW-Authenticate") != "" {
				t.Fatal("a refused cross-site request asks for credentials")
			}
		})
	}
	// Nothing was created by any of them.
	list := e.Call(t, "GetDomainList", "").MustOK(t)
	for _, d := range list.Result().FindElements("//Domain") {
		if id := d.SelectAttrValue("id", d.Text()); id != "localhost" {
			t.Errorf("a refused request created domain %q:\n%s", id, list.Body)
		}
	}

	for _, tt := range []struct {
		name, contentType string
		header            map[string]string
	}{
		{"XMLCharset", "text/xml; charset=utf-8", nil},
		{"ApplicationXML", "application/xml", nil},
		{"PlusXML", "application/soap+xml; charset=utf-8", nil},
		{"SameOrigin", "text/xml", map[string]string{"Origin": own}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			domain := strings.ToLower(tt.name) + ".example"
			postAs(t, e.URL, tt.contentType, create(domain), tt.header).MustOK(t)
			e.Call(t, "GetDomainInfo", "<Domain>"+domain+"</Domain>").MustOK(t)
		})
	}
}
