package api_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"mailcluster"
	"mailcluster/openapi"
	"mailcluster/schema"
)

// TestRoutesMatchSpec fails when Echo serves an operation the spec does
// not describe, or the spec describes one that Echo does not serve.
func TestRoutesMatchSpec(t *testing.T) {
	env := MustOpenEnv(t)
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	reParam := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	served := map[string]bool{}
	for _, r := range env.Server.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // Echo's own catch-all entries, if any
		}
		served[r.Method+" "+reParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, k := range missing {
		t.Errorf("route %s is served but not in openapi.yaml", k)
	}
	for _, k := range extra {
		t.Errorf("operation %s is in openapi.yaml but not served", k)
	}
	if len(served) < 20 {
		t.Errorf("only %d routes served; the route list looks incomplete", len(served))
	}
}

func TestOpenAPIServed(t *testing.T) {
	env := MustOpenEnv(t)
	res := env.Admin.Anonymous().Get(t, "/openapi.yaml").Expect(t, http.StatusOK)
	if ct := res.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(res.Body, openapi.Spec) {
		t.Error("served document differs from openapi.Spec")
	}
}

func TestNode(t *testing.T) {
	env := MustOpenEnv(t)
	var n struct {
		Name, Mode, Role, Version string
		Primary                   *struct{ Name, APIURL string }
		Index                     uint64
	}
	env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK).JSON(t, &n)
	if n.Name != "node1" || n.Mode != "standalone" || n.Role != "primary" || n.Version != mailcluster.Version || n.Index == 0 {
		t.Errorf("node = %+v", n)
	}
	if n.Primary == nil || n.Primary.Name != "node1" {
		t.Errorf("primary = %+v", n.Primary)
	}
}

func TestAuth(t *testing.T) {
	env := MustOpenEnv(t)
	env.Admin.MustCreateAccount(t, "localhost", map[string]any{"mailbox": "user", "password": "user-pass-1"})
	env.Admin.MustCreateAccount(t, "localhost", map[string]any{"mailbox": "off", "password": "off-pass-12",
		"adminRights": "global", "disabled": true})
	anon := env.Admin.Anonymous()

	expect401 := func(t *testing.T, res *Response) {
		t.Helper()
		res.ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		if got := res.Header.Get("WWW-Authenticate"); got != `Basic realm="mailcluster"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	}
	t.Run("OK", func(t *testing.T) {
		env.Admin.Get(t, "/api/v1/domains").Expect(t, http.StatusOK)
	})
	t.Run("ErrMissing", func(t *testing.T) {
		expect401(t, anon.Get(t, "/api/v1/domains"))
	})
	t.Run("ErrWrongPassword", func(t *testing.T) {
		expect401(t, anon.As(adminAddress, "wrong-password").Get(t, "/api/v1/domains"))
	})
	t.Run("ErrUnknownAccount", func(t *testing.T) {
		expect401(t, anon.As("nobody@localhost", adminPassword).Get(t, "/api/v1/node"))
	})
	t.Run("ErrNotAnAddress", func(t *testing.T) {
		expect401(t, anon.As("admin", adminPassword).Get(t, "/api/v1/node"))
	})
	t.Run("ErrNoAdminRights", func(t *testing.T) {
		expect401(t, anon.As("user@localhost", "user-pass-1").Get(t, "/api/v1/node"))
	})
	t.Run("ErrDisabled", func(t *testing.T) {
		expect401(t, anon.As("off@localhost", "off-pass-12").Get(t, "/api/v1/node"))
	})
	t.Run("ErrBadHeader", func(t *testing.T) {
		expect401(t, anon.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/node",
			Header: http.Header{"Authorization": {"Basic !!!not-base64"}}}))
	})
	t.Run("OpenEndpoints", func(t *testing.T) {
		anon.Get(t, "/health").Expect(t, http.StatusOK)
		anon.Get(t, "/openapi.yaml").Expect(t, http.StatusOK)
	})
	t.Run("CredentialsNotLogged", func(t *testing.T) {
		logs := env.Log.String()
		creds := base64.StdEncoding.EncodeToString([]byte(adminAddress + ":" + adminPassword))
		for _, s := range []string{adminPassword, "user-pass-1", "Authorization", creds} {
			if strings.Contains(logs, s) {
				t.Errorf("log contains %q", s)
			}
		}
	})
}

// TestDomainAdmin checks that a domain administrator only manages its own
// domain's accounts.
func TestDomainAdmin(t *testing.T) {
	env := MustOpenEnv(t)
	env.Admin.MustCreateDomain(t, "example.com")
	env.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "boss", "password": "boss-pass-1", "adminRights": "domain"})
	boss := env.Admin.As("boss@example.com", "boss-pass-1")

	t.Run("OwnDomain", func(t *testing.T) {
		boss.Get(t, "/api/v1/domains/example.com").Expect(t, http.StatusOK)
		boss.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1"})
		boss.Get(t, "/api/v1/domains/example.com/accounts/alice").Expect(t, http.StatusOK)
		boss.Send(t, http.MethodPatch, "/api/v1/domains/example.com/accounts/alice", map[string]any{"fullName": "Alice"}).Expect(t, http.StatusOK)
		boss.Delete(t, "/api/v1/domains/example.com/accounts/alice").Expect(t, http.StatusNoContent)
	})
	t.Run("ListShowsOwnDomainOnly", func(t *testing.T) {
		var l struct{ Domains []Domain }
		boss.Get(t, "/api/v1/domains").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Domains) != 1 || l.Domains[0].Name != "example.com" {
			t.Errorf("domains = %+v", l.Domains)
		}
	})
	forbidden := []struct {
		name string
		req  Request
	}{
		{"ErrOtherDomain", Request{Method: http.MethodGet, Path: "/api/v1/domains/localhost"}},
		{"ErrOtherDomainAccounts", Request{Method: http.MethodGet, Path: "/api/v1/domains/localhost/accounts"}},
		{"ErrOtherDomainAccount", Request{Method: http.MethodGet, Path: "/api/v1/domains/localhost/accounts/admin"}},
		{"ErrCreateInOtherDomain", Request{Method: http.MethodPost, Path: "/api/v1/domains/localhost/accounts",
			Body: []byte(`{"mailbox":"x","password":"xxxx-xxxx-1"}`)}},
		{"ErrDeleteOtherDomainAccount", Request{Method: http.MethodDelete, Path: "/api/v1/domains/localhost/accounts/admin"}},
		{"ErrCreateDomain", Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"new.example"}`)}},
		{"ErrUpdateDomain", Request{Method: http.MethodPatch, Path: "/api/v1/domains/example.com", Body: []byte(`{"description":"x"}`)}},
		{"ErrDeleteDomain", Request{Method: http.MethodDelete, Path: "/api/v1/domains/example.com"}},
		{"ErrGrantGlobal", Request{Method: http.MethodPost, Path: "/api/v1/domains/example.com/accounts",
			Body: []byte(`{"mailbox":"x","password":"xxxx-xxxx-1","adminRights":"global"}`)}},
		{"ErrSettings", Request{Method: http.MethodGet, Path: "/api/v1/settings"}},
		{"ErrSettingsFile", Request{Method: http.MethodGet, Path: "/api/v1/settings/mailcluster"}},
		{"ErrSetting", Request{Method: http.MethodGet, Path: "/api/v1/settings/mailcluster/Passwords/MinLength"}},
		{"ErrSetSetting", Request{Method: http.MethodPut, Path: "/api/v1/settings/mailcluster/Passwords/MinLength", Body: []byte(`{"value":"9"}`)}},
	}
	for _, tt := range forbidden {
		t.Run(tt.name, func(t *testing.T) {
			boss.Do(t, tt.req).ExpectProblem(t, http.StatusForbidden, "forbidden")
		})
	}
	t.Run("NothingChanged", func(t *testing.T) {
		env.Admin.Get(t, "/api/v1/domains/localhost/accounts/x").Expect(t, http.StatusNotFound)
		env.Admin.Get(t, "/api/v1/domains/new.example").Expect(t, http.StatusNotFound)
		var s struct{ Value string }
		env.Admin.Get(t, "/api/v1/settings/mailcluster/Passwords/MinLength").Expect(t, http.StatusOK).JSON(t, &s)
		if s.Value != "8" {
			t.Errorf("MinLength = %q", s.Value)
		}
	})
}

func TestRequestErrors(t *testing.T) {
	env := MustOpenEnv(t, WithBodyLimit(1024))
	c := env.Admin

	t.Run("ErrNoRoute", func(t *testing.T) {
		p := c.Anonymous().Get(t, "/nothing").ExpectProblem(t, http.StatusNotFound, "not-found")
		if p.Instance != "/nothing" {
			t.Errorf("instance = %q", p.Instance)
		}
	})
	t.Run("ErrNoRouteInAPI", func(t *testing.T) {
		c.Get(t, "/api/v1/nothing").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Anonymous().Get(t, "/api/v1/domains/x/nothing").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrMethodNotAllowed", func(t *testing.T) {
		res := c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/domains", Body: []byte(`{}`)})
		res.ExpectProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
		if !strings.Contains(res.Header.Get("Allow"), "POST") {
			t.Errorf("Allow = %q", res.Header.Get("Allow"))
		}
	})
	t.Run("ErrMalformedJSON", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name": "x.example",`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, "malformed JSON") {
			t.Errorf("detail = %q", p.Detail)
		}
	})
	t.Run("ErrSyntax", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{name: 1}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, "malformed JSON at byte") {
			t.Errorf("detail = %q", p.Detail)
		}
	})
	t.Run("ErrUnknownField", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"x.example","colour":"red"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, `"colour"`) {
			t.Errorf("detail does not name the field: %q", p.Detail)
		}
	})
	t.Run("ErrWrongType", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"x.example","maxAccounts":"ten"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, `"maxAccounts"`) || !strings.Contains(p.Detail, "integer") {
			t.Errorf("detail = %q", p.Detail)
		}
	})
	t.Run("ErrNotAnObject", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`["x.example"]`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrTrailingData", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`{"name":"x.example"} {}`)}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrEmptyBody", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte{}, Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrContentType", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: []byte(`name=x.example`),
			ContentType: "application/x-www-form-urlencoded", Invalid: true}).
			ExpectProblem(t, http.StatusUnsupportedMediaType, "unsupported-media-type")
	})
	big := []byte(`{"name":"big.example","description":"` + strings.Repeat("a", 2000) + `"}`)
	t.Run("ErrTooLarge", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: big, Invalid: true}).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
		if !strings.Contains(p.Detail, "1 KiB") {
			t.Errorf("detail = %q", p.Detail)
		}
	})
	t.Run("ErrTooLargeChunked", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains", Body: big, Chunked: true, Invalid: true}).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
	})
	t.Run("ErrTooLargeText", func(t *testing.T) {
		text := []byte("[Big]\nValue=" + strings.Repeat("v", 2000) + "\n")
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/settings/big", Body: text, ContentType: "text/plain", Chunked: true}).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
	})
	t.Run("NothingCreated", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/x.example").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/big.example").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/settings/big").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("UnderLimitOK", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/domains", map[string]any{"name": "small.example", "description": strings.Repeat("a", 900)}).
			Expect(t, http.StatusCreated)
	})
}

// faultyStore fails in ways the real stores do not, to check that
// internal errors and panics never reach a client: a damaged domain record
// and a panic when the settings are listed.
type faultyStore struct{ mailcluster.Store }

const internalSecret = "open /secret/state.db: disk on fire"

func (s faultyStore) List(prefix, after string, limit int) []mailcluster.KV {
	switch prefix {
	case schema.PrefixDomains:
		return []mailcluster.KV{{Key: schema.Domain("broken.test"), Value: []byte(internalSecret), ModifyIndex: 1}}
	case schema.PrefixSettings:
		panic(internalSecret)
	}
	return s.Store.List(prefix, after, limit)
}

func (s faultyStore) Get(key string) (mailcluster.KV, bool) {
	if key == schema.Domain("broken.test") {
		return mailcluster.KV{Key: key, Value: []byte(internalSecret), ModifyIndex: 1}, true
	}
	return s.Store.Get(key)
}

func TestInternalErrors(t *testing.T) {
	env := MustOpenEnv(t, WithFaultyStore(func(st mailcluster.Store) mailcluster.Store { return faultyStore{st} }))
	env.Admin.Secret(internalSecret)
	for _, tc := range []struct{ path, logged string }{
		{"/api/v1/domains", "A stored domain record is damaged"},
		{"/api/v1/settings", "disk on fire"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := env.Admin.Get(t, tc.path).ExpectProblem(t, http.StatusInternalServerError, "internal")
			if strings.Contains(p.Detail, "disk") || strings.Contains(p.Detail, "damaged") {
				t.Errorf("detail leaks the cause: %q", p.Detail)
			}
			if !strings.Contains(env.Log.String(), tc.logged) {
				t.Error("the cause was not logged")
			}
		})
	}
	t.Run("StillServing", func(t *testing.T) {
		env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
	})
}

func TestRequestID(t *testing.T) {
	env := MustOpenEnv(t)
	t.Run("Kept", func(t *testing.T) {
		res := env.Admin.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/node", Header: http.Header{"X-Request-Id": {"abc-123"}}})
		if got := res.Header.Get("X-Request-Id"); got != "abc-123" {
			t.Errorf("X-Request-Id = %q", got)
		}
	})
	t.Run("Replaced", func(t *testing.T) {
		res := env.Admin.Do(t, Request{Method: http.MethodGet, Path: "/health", Header: http.Header{"X-Request-Id": {"bad id\twith spaces"}}})
		if got := res.Header.Get("X-Request-Id"); len(got) != 32 {
			t.Errorf("X-Request-Id = %q, want a generated id", got)
		}
	})
	t.Run("AccessLog", func(t *testing.T) {
		res := env.Admin.Get(t, "/api/v1/domains/nope.example").Expect(t, http.StatusNotFound)
		rid := res.Header.Get("X-Request-Id")
		var line string
		for _, l := range strings.Split(env.Log.String(), "\n") {
			if strings.Contains(l, "http request") && strings.Contains(l, rid) {
				line = l
			}
		}
		for _, want := range []string{"method=GET", "path=/api/v1/domains/nope.example", "status=404", "duration=", "caller=admin@localhost"} {
			if !strings.Contains(line, want) {
				t.Errorf("access log line %q lacks %q", line, want)
			}
		}
	})
}

// The access line of a successful read is at Debug; a write, any answer
// of 400 or more, a login failure and a request of another node are at
// Info. The XML-API, which logs its own outcome, has its access line at
// Debug.
func TestAccessLogLevel(t *testing.T) {
	env := MustOpenEnv(t, WithClusterLog(nil))
	levelOf := func(t *testing.T, res *Response) string {
		t.Helper()
		rid := res.Header.Get("X-Request-Id")
		for _, l := range strings.Split(env.Log.String(), "\n") {
			if strings.Contains(l, `msg="http request"`) && strings.Contains(l, "request_id="+rid) {
				level, _, _ := strings.Cut(strings.SplitN(l, "level=", 2)[1], " ")
				return level
			}
		}
		t.Fatalf("no access line for request %s:\n%s", rid, env.Log.String())
		return ""
	}
	for _, tc := range []struct {
		name string
		send func(t *testing.T) *Response
		want string
	}{
		{"Read", func(t *testing.T) *Response { return env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK) }, "DEBUG"},
		{"Write", func(t *testing.T) *Response {
			return env.Admin.Send(t, http.MethodPost, "/api/v1/domains", map[string]any{"name": "level.example"}).Expect(t, http.StatusCreated)
		}, "INFO"},
		{"ErrNotFound", func(t *testing.T) *Response {
			return env.Admin.Get(t, "/api/v1/domains/nope.example").Expect(t, http.StatusNotFound)
		}, "INFO"},
		{"ErrUnauthorized", func(t *testing.T) *Response {
			return env.Admin.Anonymous().Get(t, "/api/v1/domains").Expect(t, http.StatusUnauthorized)
		}, "INFO"},
		{"InternalRead", func(t *testing.T) *Response {
			return env.Admin.Anonymous().Do(t, Request{Method: http.MethodGet, Path: "/internal/v1/log", Signed: true}).Expect(t, http.StatusOK)
		}, "INFO"},
		{"XMLAPI", func(t *testing.T) *Response {
			return env.Admin.Anonymous().Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml",
				Body: []byte(`<MDaemon><API><Request><Operation>GetDomainList</Operation></Request></API></MDaemon>`)}).Expect(t, http.StatusOK)
		}, "DEBUG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := levelOf(t, tc.send(t)); got != tc.want {
				t.Errorf("access line at %s, want %s", got, tc.want)
			}
		})
	}
}

func TestXMLAPIMount(t *testing.T) {
	env := MustOpenEnv(t, WithBodyLimit(1024))
	c := env.Admin.Anonymous()
	t.Run("NoEchoAuth", func(t *testing.T) {
		res := c.Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml",
			Body: []byte(`<MDaemon><API><Request><Operation>GetDomainList</Operation></Request></API></MDaemon>`)})
		res.Expect(t, http.StatusOK)
		if env.XMLCalls.Get() != 1 {
			t.Errorf("handler called %d times", env.XMLCalls.Get())
		}
	})
	t.Run("BodyLimitLeftToXMLAPI", func(t *testing.T) {
		// The XML-API limits its own body and answers in XML (status 11),
		// so the REST body limit does not answer for it in JSON.
		before := env.XMLCalls.Get()
		c.Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml",
			Body: []byte("<MDaemon>" + strings.Repeat("x", 2048) + "</MDaemon>")}).Expect(t, http.StatusOK)
		if env.XMLCalls.Get() != before+1 {
			t.Error("the XML-API handler did not get the large body")
		}
	})
	t.Run("ErrMethod", func(t *testing.T) {
		c.Get(t, "/MdMgmtWS").ExpectProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
	})
	t.Run("ClassicPaths", func(t *testing.T) {
		// The vendor documents /MdMgmtWS/; clients also send other case.
		for _, path := range []string{"/MdMgmtWS/", "/mdmgmtws", "/MDMGMTWS/"} {
			before := env.XMLCalls.Get()
			c.Do(t, Request{Method: http.MethodPost, Path: path, ContentType: "application/xml",
				Body: []byte(`<MDaemon><API><Request><Operation>GetDomainList</Operation></Request></API></MDaemon>`)}).Expect(t, http.StatusOK)
			if env.XMLCalls.Get() != before+1 {
				t.Errorf("POST %s did not reach the XML-API", path)
			}
		}
		c.Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWSx", ContentType: "application/xml",
			Body: []byte(`<MDaemon/>`)}).ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("NotMounted", func(t *testing.T) {
		env := MustOpenEnv(t, WithoutXMLAPI())
		env.Admin.Anonymous().Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml",
			Body: []byte(`<MDaemon/>`)}).ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}
