package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"mailcluster/api"
)

// getRaw sends GET path to the secondary with the admin's credentials
// and extra headers, and returns the response with its whole body.
func getRaw(t *testing.T, sec *Env, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, sec.HTTP.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(adminAddress, adminPassword)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

// TestGetAccountResponse checks the whole answer of GET of an account on a
// secondary: exactly the headers it always had (security headers, a
// fresh request id or the client's own, content type and length) and a
// body byte for byte what encoding/json writes for it, for plain values
// and for values that need escaping, and with ?pretty.
func TestGetAccountResponse(t *testing.T) {
	primary, sec := mustOpenRead(t)
	wantHeaders := map[string]string{
		"Cache-Control":           "no-store",
		"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		"Content-Type":            "application/json",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
	}
	reID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	check := func(t *testing.T, path string) []byte {
		t.Helper()
		res, body := getRaw(t, sec, path, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
		for k, v := range wantHeaders {
			if got := res.Header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if id := res.Header.Values("X-Request-Id"); len(id) != 1 || !reID.MatchString(id[0]) {
			t.Errorf("X-Request-Id %q", id)
		}
		for k := range res.Header {
			switch k {
			case "Content-Length", "Date", "X-Request-Id":
			default:
				if _, ok := wantHeaders[k]; !ok {
					t.Errorf("unexpected header %s: %q", k, res.Header.Values(k))
				}
			}
		}
		var a api.Account
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		if strings.Contains(path, "?pretty") {
			enc.SetIndent("", "  ")
		}
		if err := enc.Encode(&a); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, want.Bytes()) {
			t.Fatalf("body\n%s\nwant\n%s", body, want.Bytes())
		}
		if a.Address != "alice@read.example" {
			t.Fatalf("address %q", a.Address)
		}
		return body
	}
	t.Run("OK", func(t *testing.T) {
		b := check(t, readPath)
		if !bytes.Contains(b, []byte(`"fullName":"Alice Example"`)) || !bytes.Contains(b, []byte(`"sendAs":[]`)) {
			t.Fatalf("body %s", b)
		}
		// Two answers carry two request ids.
		r1, _ := getRaw(t, sec, readPath, nil)
		r2, _ := getRaw(t, sec, readPath, nil)
		if r1.Header.Get("X-Request-Id") == r2.Header.Get("X-Request-Id") {
			t.Fatal("the same request id twice")
		}
	})
	t.Run("Pretty", func(t *testing.T) {
		b := check(t, readPath+"?pretty")
		if !bytes.Contains(b, []byte("\n  \"address\": ")) {
			t.Fatalf("not indented: %s", b)
		}
	})
	t.Run("ClientRequestID", func(t *testing.T) {
		res, _ := getRaw(t, sec, readPath, map[string]string{"X-Request-Id": "client-id.1:2_3"})
		if got := res.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "client-id.1:2_3" {
			t.Fatalf("X-Request-Id %q", got)
		}
		res, _ = getRaw(t, sec, readPath, map[string]string{"X-Request-Id": "bad id<"})
		if got := res.Header.Get("X-Request-Id"); !reID.MatchString(got) {
			t.Fatalf("X-Request-Id %q for an insane one", got)
		}
	})
	t.Run("Escaped", func(t *testing.T) {
		// A change on the primary is seen at once by the secondary (same
		// state): never the answer of the account as it was.
		mustStatus(t, primary.Admin.Send(t, http.MethodPatch, "/api/v1/domains/read.example/accounts/alice",
			map[string]any{"fullName": `<b>Zoë & "Al"</b>`, "sendAs": []string{"a@read.example"}, "quotaBytes": 1 << 30}), http.StatusOK)
		b := check(t, readPath)
		if !bytes.Contains(b, []byte(`"fullName":"\u003cb\u003eZoë \u0026 \"Al\"\u003c/b\u003e"`)) ||
			!bytes.Contains(b, []byte(`"sendAs":["a@read.example"]`)) || !bytes.Contains(b, []byte(`"quotaBytes":1073741824`)) {
			t.Fatalf("body %s", b)
		}
		mustStatus(t, primary.Admin.Send(t, http.MethodPatch, "/api/v1/domains/read.example/accounts/alice",
			map[string]any{"fullName": "Alice Again"}), http.StatusOK)
		if b := check(t, readPath); !bytes.Contains(b, []byte(`"fullName":"Alice Again"`)) {
			t.Fatalf("stale body %s", b)
		}
	})
	t.Run("AccessLog", func(t *testing.T) {
		logs := sec.Log
		res, _ := getRaw(t, sec, readPath, nil)
		id := res.Header.Get("X-Request-Id")
		line := ""
		for l := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(l, "request_id="+id) {
				line = l
			}
		}
		for _, want := range []string{`msg="http request"`, "method=GET", "path=" + readPath, "status=200", "duration=",
			"bytes=", "remote=127.0.0.1:", "client=127.0.0.1", "caller=admin@localhost"} {
			if !strings.Contains(line, want) {
				t.Fatalf("access log line %q lacks %q\n%s", line, want, logs)
			}
		}
		if strings.Contains(logs.String(), adminPassword) {
			t.Fatal("the password is in the log")
		}
	})
}
