package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailcluster/service"
	"mailcluster/xmlapi"
)

// wantSecurityHeaders are the headers every answer carries.
var wantSecurityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"Cache-Control":           "no-store",
	"X-Frame-Options":         "DENY",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"Referrer-Policy":         "no-referrer",
}

// rawRequest is one request of the header walk, sent without the
// validating client (some are deliberately outside the spec).
type rawRequest struct {
	name, method, path string
	body               string
	contentType        string
	auth               bool
	header             map[string]string
	status             int
}

func sendRaw(tb testing.TB, client *http.Client, base string, r rawRequest) *http.Response {
	tb.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.auth {
		req.SetBasicAuth(adminAddress, adminPassword)
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if r.status != 0 && res.StatusCode != r.status {
		tb.Fatalf("%s %s: status %d, want %d", r.method, r.path, res.StatusCode, r.status)
	}
	return res
}

// headerWalk is a representative list of routes: successes, errors of
// handlers, of middleware and of Echo's router, the XML-API, health,
// metrics, the spec and the internal API.
func headerWalk(bodyLimit int) []rawRequest {
	xml := `<MDaemon><API><Request><Operation>GetDomainList</Operation></Request></API></MDaemon>`
	return []rawRequest{
		{name: "RESTGet", method: "GET", path: "/api/v1/node", auth: true, status: 200},
		{name: "RESTNotFound", method: "GET", path: "/api/v1/domains/nowhere.example", auth: true, status: 404},
		{name: "RESTUnauthorized", method: "GET", path: "/api/v1/domains", status: 401},
		{name: "RESTCreate", method: "POST", path: "/api/v1/domains", body: `{"name":"headers.example"}`, contentType: "application/json", auth: true, status: 201},
		{name: "RESTCrossSite", method: "POST", path: "/api/v1/domains", body: `{"name":"x.example"}`, contentType: "application/json", auth: true,
			header: map[string]string{"Origin": "http://evil.example"}, status: 403},
		{name: "BodyLimit", method: "POST", path: "/api/v1/domains", body: `{"name":"` + strings.Repeat("a", bodyLimit) + `"}`, contentType: "application/json", auth: true, status: 413},
		{name: "NoRoute", method: "GET", path: "/no/such/route", status: 404},
		{name: "MethodNotAllowed", method: "DELETE", path: "/health", status: 405},
		{name: "XMLAPI", method: "POST", path: "/MdMgmtWS", body: xml, contentType: "text/xml", auth: true, status: 200},
		{name: "XMLAPIRefused", method: "POST", path: "/MdMgmtWS", body: xml, contentType: "text/plain", auth: true, status: 415},
		{name: "Health", method: "GET", path: "/health", status: 200},
		{name: "HealthHead", method: "HEAD", path: "/health", status: 200},
		{name: "Metrics", method: "GET", path: "/metrics", status: 200},
		{name: "OpenAPI", method: "GET", path: "/openapi.yaml", status: 200},
		{name: "Internal", method: "GET", path: "/internal/v1/info", status: 401},
	}
}

func checkSecurityHeaders(t *testing.T, res *http.Response, wantHSTS bool) {
	t.Helper()
	for k, want := range wantSecurityHeaders {
		if got := res.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	hsts := res.Header.Get("Strict-Transport-Security")
	switch {
	case wantHSTS && hsts != "max-age=31536000":
		t.Errorf("Strict-Transport-Security = %q over TLS, want max-age=31536000", hsts)
	case !wantHSTS && hsts != "":
		t.Errorf("Strict-Transport-Security = %q over plain HTTP", hsts)
	}
}

// TestSecurityHeaders walks representative routes over HTTP and HTTPS:
// every answer carries the security headers, and only HTTPS answers
// carry HSTS (also when a plain-HTTP client claims X-Forwarded-Proto).
func TestSecurityHeaders(t *testing.T) {
	const limit = 4096
	env := MustOpenEnv(t, WithBodyLimit(limit),
		WithXMLAPI(func(s *service.Service) http.Handler { return xmlapi.NewHandler(s, nil) }),
		WithMetrics(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})))
	for _, r := range headerWalk(limit) {
		t.Run("HTTP/"+r.name, func(t *testing.T) {
			if r.name == "RESTCreate" {
				r.body = `{"name":"plain.example"}`
			}
			r.header = mergeHeader(r.header, "X-Forwarded-Proto", "https")
			checkSecurityHeaders(t, sendRaw(t, http.DefaultClient, env.HTTP.URL, r), false)
		})
	}

	tlsSrv := httptest.NewUnstartedServer(env.Server)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	client := tlsSrv.Client()
	for _, r := range headerWalk(limit) {
		t.Run("HTTPS/"+r.name, func(t *testing.T) {
			res := sendRaw(t, client, tlsSrv.URL, r)
			if res.TLS == nil {
				t.Fatal("not over TLS")
			}
			checkSecurityHeaders(t, res, true)
		})
	}
}

func mergeHeader(h map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for hk, hv := range h {
		out[hk] = hv
	}
	return out
}

// TestCrossSiteWrites refuses REST writes whose Origin names another site
// before authentication, and changes nothing; same-origin writes, writes
// without Origin (scripts) and cross-site reads are served.
func TestCrossSiteWrites(t *testing.T) {
	env := MustOpenEnv(t)
	own := env.HTTP.URL // http://127.0.0.1:port
	foreign := http.Header{"Origin": {"http://evil.example"}}

	t.Run("ErrCreate", func(t *testing.T) {
		env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"csrf.example"}`),
			Header: foreign}).ExpectProblem(t, http.StatusForbidden, "forbidden")
		env.Admin.Get(t, "/api/v1/domains/csrf.example").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrFormPost", func(t *testing.T) {
		// A form post is refused by its content type anyway; with a
		// foreign Origin it is refused before that.
		env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`name=form.example`),
			ContentType: "application/x-www-form-urlencoded", Header: foreign, Invalid: true}).ExpectProblem(t, http.StatusForbidden, "forbidden")
	})
	t.Run("ErrBeforeAuthentication", func(t *testing.T) {
		// Wrong credentials: refused as cross-site (403), not as a failed
		// login (401, counted by screening).
		env.Admin.Anonymous().As(adminAddress, "wrong-password-1").Do(t, Request{Method: http.MethodDelete,
			Path: "/api/v1/domains/localhost", Header: foreign}).ExpectProblem(t, http.StatusForbidden, "forbidden")
		if strings.Contains(env.Log.String(), "wrong-password-1") {
			t.Fatal("password in the log")
		}
	})
	t.Run("ErrDelete", func(t *testing.T) {
		env.Admin.Send(t, http.MethodPost, "/api/v1/domains", map[string]string{"name": "keep.example"}).Expect(t, http.StatusCreated)
		env.Admin.Do(t, Request{Method: http.MethodDelete, Path: "/api/v1/domains/keep.example", Header: foreign}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
		env.Admin.Get(t, "/api/v1/domains/keep.example").Expect(t, http.StatusOK)
	})
	t.Run("SameOrigin", func(t *testing.T) {
		env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"same.example"}`),
			Header: http.Header{"Origin": {own}}}).Expect(t, http.StatusCreated)
	})
	t.Run("NoOrigin", func(t *testing.T) {
		env.Admin.Send(t, http.MethodPost, "/api/v1/domains", map[string]string{"name": "script.example"}).Expect(t, http.StatusCreated)
	})
	t.Run("CrossSiteRead", func(t *testing.T) {
		env.Admin.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/domains/same.example", Header: foreign}).Expect(t, http.StatusOK)
	})
}

// TestXMLAPICrossSite posts what a page of another site can make a
// browser send to the XML-API mounted in the REST server, with valid
// credentials: nothing is created.
func TestXMLAPICrossSite(t *testing.T) {
	env := MustOpenEnv(t, WithXMLAPI(func(s *service.Service) http.Handler { return xmlapi.NewHandler(s, nil) }))
	create := `<MDaemon><API><Request><Operation>CreateDomain</Operation><Parameters><Domain>DOMAIN</Domain></Parameters></Request></API></MDaemon>`
	for _, r := range []rawRequest{
		{name: "plain.example", contentType: "text/plain", status: http.StatusUnsupportedMediaType},
		{name: "form.example", contentType: "application/x-www-form-urlencoded", status: http.StatusUnsupportedMediaType},
		{name: "origin.example", contentType: "text/xml", header: map[string]string{"Origin": "https://evil.example"}, status: http.StatusForbidden},
	} {
		r.method, r.path, r.auth = http.MethodPost, "/MdMgmtWS", true
		r.body = strings.Replace(create, "DOMAIN", r.name, 1)
		sendRaw(t, http.DefaultClient, env.HTTP.URL, r)
		env.Admin.Get(t, "/api/v1/domains/"+r.name).ExpectProblem(t, http.StatusNotFound, "not-found")
	}
	ok := rawRequest{method: http.MethodPost, path: "/MdMgmtWS", auth: true, contentType: "text/xml; charset=utf-8",
		header: map[string]string{"Origin": env.HTTP.URL}, body: strings.Replace(create, "DOMAIN", "ok.example", 1), status: http.StatusOK}
	sendRaw(t, http.DefaultClient, env.HTTP.URL, ok)
	env.Admin.Get(t, "/api/v1/domains/ok.example").Expect(t, http.StatusOK)
}
