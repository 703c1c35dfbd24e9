package api_test

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"mailcluster"
)

type settingsFile struct {
	Name     string               `json:"name"`
	Sections mailcluster.Sections `json:"sections"`
}

type setting struct {
	File, Section, Key, Value string
}

func TestSettingsList(t *testing.T) {
	env := MustOpenEnv(t)
	var l struct{ Files []string }
	env.Admin.Get(t, "/api/v1/settings").Expect(t, http.StatusOK).JSON(t, &l)
	if !reflect.DeepEqual(l.Files, []string{"mailcluster"}) {
		t.Errorf("files = %v", l.Files)
	}
}

func TestSettingsFileRoundTrip(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	const path = "/api/v1/settings/mailcluster"

	var orig settingsFile
	c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &orig)
	if orig.Name != "mailcluster" || orig.Sections["Passwords"]["MinLength"] != "8" || orig.Sections["NewAccounts"]["MailboxPath"] == "" {
		t.Fatalf("file = %+v", orig)
	}

	t.Run("Text", func(t *testing.T) {
		res := c.Do(t, Request{Method: http.MethodGet, Path: path, Accept: "text/plain"}).Expect(t, http.StatusOK)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q", ct)
		}
		if !bytes.Equal(res.Body, mailcluster.RenderIni(orig.Sections)) {
			t.Errorf("text = %q", res.Body)
		}
		// The same text back changes nothing.
		res = c.Do(t, Request{Method: http.MethodPut, Path: path, Body: res.Body, ContentType: "text/plain; charset=utf-8"}).Expect(t, http.StatusOK)
		var got settingsFile
		res.JSON(t, &got)
		if !reflect.DeepEqual(got, orig) {
			t.Errorf("after PUT text: %+v, want %+v", got, orig)
		}
	})
	t.Run("Negotiation", func(t *testing.T) {
		for accept, wantText := range map[string]bool{
			"":                                    false,
			"*/*":                                 false,
			"application/json":                    false,
			"text/plain, application/json":        false,
			"application/json;q=0.5, text/plain":  true,
			"text/*":                              true,
			"text/plain;q=0.1, application/*;q=1": false,
		} {
			res := c.Do(t, Request{Method: http.MethodGet, Path: path, Accept: accept}).Expect(t, http.StatusOK)
			isText := strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain")
			if isText != wantText {
				t.Errorf("Accept %q: Content-Type %q", accept, res.Header.Get("Content-Type"))
			}
		}
	})
	t.Run("PutTextChanges", func(t *testing.T) {
		secs := cloneSections(orig.Sections)
		secs["Passwords"]["MinLength"] = "10"
		secs["Custom"] = map[string]string{"Greeting": "Hello = world"}
		delete(secs, "AttachmentLinking")
		text := "; edited by hand\n" + string(mailcluster.RenderIni(secs))
		res := c.Do(t, Request{Method: http.MethodPut, Path: path, Body: []byte(text), ContentType: "text/plain", Accept: "text/plain"}).
			Expect(t, http.StatusOK)
		if !bytes.Equal(res.Body, mailcluster.RenderIni(secs)) {
			t.Errorf("answer = %q", res.Body)
		}
		var got settingsFile
		c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &got)
		if !reflect.DeepEqual(got.Sections, secs) {
			t.Errorf("sections = %v, want %v", got.Sections, secs)
		}
	})
	t.Run("PutJSON", func(t *testing.T) {
		res := c.Send(t, http.MethodPut, path, map[string]any{"name": "mailcluster", "sections": orig.Sections}).Expect(t, http.StatusOK)
		var got settingsFile
		res.JSON(t, &got)
		if !reflect.DeepEqual(got, orig) {
			t.Errorf("after PUT JSON: %+v, want %+v", got, orig)
		}
	})
	t.Run("NewFile", func(t *testing.T) {
		c.Get(t, "/api/v1/settings/extra").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Send(t, http.MethodPut, "/api/v1/settings/extra", map[string]any{"sections": map[string]any{"A": map[string]string{"k": "v"}}}).
			Expect(t, http.StatusOK)
		res := c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/settings/extra", Accept: "text/plain"}).Expect(t, http.StatusOK)
		if string(res.Body) != "[A]\nk=v\n" {
			t.Errorf("text = %q", res.Body)
		}
		var l struct{ Files []string }
		c.Get(t, "/api/v1/settings").Expect(t, http.StatusOK).JSON(t, &l)
		if !reflect.DeepEqual(l.Files, []string{"extra", "mailcluster"}) {
			t.Errorf("files = %v", l.Files)
		}
		// No keys at all deletes the file.
		var got settingsFile
		c.Send(t, http.MethodPut, "/api/v1/settings/extra", map[string]any{"sections": map[string]any{}}).Expect(t, http.StatusOK).JSON(t, &got)
		if got.Name != "extra" || len(got.Sections) != 0 {
			t.Errorf("answer = %+v", got)
		}
		c.Get(t, "/api/v1/settings/extra").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrFileName", func(t *testing.T) {
		c.Get(t, "/api/v1/settings/bad.name").ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	// Values set as JSON that the ini syntax would alter (found by
	// FuzzSettingRoundTrip) survive the text form: GET as text, PUT the
	// text back, and every value is unchanged.
	t.Run("TextKeepsOddValues", func(t *testing.T) {
		odd := map[string]string{
			"WinPath": `C:\MDaemon\Users\`, "Quoted": `"Welcome"`, "Single": `'x'`, "Padded": "  x  ",
			"Raw": "`cmd` arg", "Triple": `"""a"""`, "Tab": "\t",
		}
		c.Send(t, http.MethodPut, "/api/v1/settings/odd", map[string]any{"sections": map[string]any{"Odd": odd}}).Expect(t, http.StatusOK)
		text := c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/settings/odd", Accept: "text/plain"}).Expect(t, http.StatusOK).Body
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/settings/odd", Body: text, ContentType: "text/plain"}).Expect(t, http.StatusOK)
		var got settingsFile
		c.Get(t, "/api/v1/settings/odd").Expect(t, http.StatusOK).JSON(t, &got)
		if !reflect.DeepEqual(got.Sections["Odd"], odd) {
			t.Errorf("after the text round trip: %q, want %q\ntext:\n%s", got.Sections["Odd"], odd, text)
		}
	})
}

// TestSettingsFileReplaceInvalid checks that refused replacements change
// nothing.
func TestSettingsFileReplaceInvalid(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	const path = "/api/v1/settings/mailcluster"
	before := c.Do(t, Request{Method: http.MethodGet, Path: path, Accept: "text/plain"}).Expect(t, http.StatusOK).Body
	index := env.Store.Index()

	tests := []struct {
		name   string
		req    Request
		status int
		kind   string
	}{
		{"ErrKeyOutsideSection", Request{Body: []byte("Orphan=1\n[Passwords]\nMinLength=9\n"), ContentType: "text/plain"}, 400, "invalid"},
		{"ErrBadValue", Request{Body: []byte("[Passwords]\nMinLength=lots\n"), ContentType: "text/plain"}, 400, "invalid"},
		{"ErrBadSection", Request{Body: []byte("[Bad Section]\nKey=1\n"), ContentType: "text/plain"}, 400, "invalid"},
		{"ErrUnparsable", Request{Body: []byte("[Passwords\nMinLength=9\n"), ContentType: "text/plain"}, 400, "invalid"},
		{"ErrEmpty", Request{Body: []byte("  \n"), ContentType: "text/plain"}, 400, "invalid"},
		{"ErrValueTooLong", Request{Body: []byte("[Custom]\nKey=" + strings.Repeat("x", 5000) + "\n"), ContentType: "text/plain"}, 413, "too-large"},
		{"ErrJSONBadValue", Request{Body: []byte(`{"sections":{"Passwords":{"MinLength":"0"}}}`)}, 400, "invalid"},
		{"ErrJSONNoSections", Request{Body: []byte(`{"name":"mailcluster"}`), Invalid: true}, 400, "invalid"},
		{"ErrJSONNameMismatch", Request{Body: []byte(`{"name":"other","sections":{}}`)}, 400, "invalid"},
		{"ErrJSONNotStrings", Request{Body: []byte(`{"sections":{"Passwords":{"MinLength":9}}}`), Invalid: true}, 400, "invalid"},
		{"ErrJSONUnknownField", Request{Body: []byte(`{"sections":{},"files":[]}`), Invalid: true}, 400, "invalid"},
		{"ErrMediaType", Request{Body: []byte(`<ini/>`), ContentType: "application/xml", Invalid: true}, 415, "unsupported-media-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Method, tt.req.Path = http.MethodPut, path
			c.Do(t, tt.req).ExpectProblem(t, tt.status, tt.kind)
			after := c.Do(t, Request{Method: http.MethodGet, Path: path, Accept: "text/plain"}).Expect(t, http.StatusOK).Body
			if !bytes.Equal(before, after) {
				t.Errorf("file changed:\n%s\nwant\n%s", after, before)
			}
			if env.Store.Index() != index {
				t.Errorf("store index moved from %d to %d", index, env.Store.Index())
			}
		})
	}
}

func TestSettingKey(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	const path = "/api/v1/settings/mailcluster/Passwords/MinLength"

	t.Run("Get", func(t *testing.T) {
		var s setting
		c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &s)
		if s != (setting{"mailcluster", "Passwords", "MinLength", "8"}) {
			t.Errorf("setting = %+v", s)
		}
	})
	t.Run("Put", func(t *testing.T) {
		var s setting
		c.Send(t, http.MethodPut, path, map[string]string{"value": "12"}).Expect(t, http.StatusOK).JSON(t, &s)
		if s.Value != "12" {
			t.Errorf("setting = %+v", s)
		}
		c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &s)
		if s.Value != "12" {
			t.Errorf("after PUT: %+v", s)
		}
		// The new minimum applies.
		c.Send(t, http.MethodPost, "/api/v1/domains/localhost/accounts", map[string]any{"mailbox": "x", "password": "eleven-char"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("PutNewKey", func(t *testing.T) {
		var s setting
		c.Send(t, http.MethodPut, "/api/v1/settings/custom/Sec.One/Key_1", map[string]string{"value": "a b c"}).Expect(t, http.StatusOK).JSON(t, &s)
		if s != (setting{"custom", "Sec.One", "Key_1", "a b c"}) {
			t.Errorf("setting = %+v", s)
		}
		var f settingsFile
		c.Get(t, "/api/v1/settings/custom").Expect(t, http.StatusOK).JSON(t, &f)
		if f.Sections["Sec.One"]["Key_1"] != "a b c" {
			t.Errorf("file = %+v", f)
		}
	})
	t.Run("ErrPut", func(t *testing.T) {
		c.Send(t, http.MethodPut, path, map[string]string{"value": "many"}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Send(t, http.MethodPut, path, map[string]string{"value": "a\nb"}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPut, Path: path, Body: []byte(`{}`), Invalid: true}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPut, Path: path, Body: []byte(`{"value":12}`), Invalid: true}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/settings/custom/S/K", Body: []byte(`{"value":"` + strings.Repeat("v", 4097) + `"}`), Invalid: true}).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
		var s setting
		c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &s)
		if s.Value != "12" {
			t.Errorf("value changed to %q", s.Value)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, "/api/v1/settings/custom/Sec.One/Key_1").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/settings/custom/Sec.One/Key_1").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, "/api/v1/settings/custom/Sec.One/Key_1").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrNames", func(t *testing.T) {
		c.Get(t, "/api/v1/settings/mailcluster/Bad%20Section/Key").ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Get(t, "/api/v1/settings/mailcluster/Passwords/Nope").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}

func cloneSections(s mailcluster.Sections) mailcluster.Sections {
	out := mailcluster.Sections{}
	for sec, keys := range s {
		out[sec] = map[string]string{}
		for k, v := range keys {
			out[sec][k] = v
		}
	}
	return out
}
