package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"mailcluster/api"
)

// wrongKinds returns JSON values of other kinds than v.
func wrongKinds(v any) []any {
	switch v.(type) {
	case string:
		return []any{1, true, []any{}, map[string]any{}, json.Number("1e400")}
	case float64:
		return []any{"1", true, []any{1}, map[string]any{}, json.Number("1e400"), json.Number("1.5"), json.Number("-99999999999999999999")}
	case bool:
		return []any{"true", 1, []any{}}
	case []any:
		return []any{"x", map[string]any{}, 1}
	case map[string]any:
		return []any{"x", []any{}, 1}
	}
	return []any{"x", 1}
}

// jsonWrites returns the JSON write requests of the spec (the requests of
// the read-only test, which cover every write operation) by name.
func jsonWrites(t *testing.T) (map[string]Request, []string) {
	t.Helper()
	out := map[string]Request{}
	var names []string
	for name, r := range allWriteRequests(t) {
		if r.Body == nil || (r.ContentType != "" && r.ContentType != "application/json") {
			continue
		}
		out[name] = r
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) < 15 {
		t.Fatalf("only %d JSON write operations", len(names))
	}
	return out, names
}

// TestHostileJSON sends every JSON write operation bodies of the wrong
// kind (whole body and member by member), absurd numbers, deep nesting,
// and bodies over the limit. Each is refused with 400 invalid or 413
// too-large as a documented problem, nothing is written, and the node
// keeps serving.
func TestHostileJSON(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1"})
	reqs, names := jsonWrites(t)
	before := env.Store.Index()

	for _, name := range names {
		r := reqs[name]
		t.Run(name, func(t *testing.T) {
			send := func(what string, body []byte, status int, kind string) {
				t.Helper()
				hr := r
				hr.Body, hr.Invalid = body, !strings.HasPrefix(what, "trailing")
				p := c.Do(t, hr).ExpectProblem(t, status, kind)
				if p.Detail == "" {
					t.Errorf("%s: no detail", what)
				}
			}
			for _, whole := range []string{`[]`, `"x"`, `1`, `true`, `[{}]`, `{"a":`, `{"x":1}`, "\xff", `{"name":"\ud800"`} {
				send("body "+whole, []byte(whole), http.StatusBadRequest, "invalid")
			}
			// The valid body with more after it (the spec's validator only
			// reads the first value).
			send("trailing object", append(append([]byte{}, r.Body...), "{}"...), http.StatusBadRequest, "invalid")
			send("trailing garbage", append(append([]byte{}, r.Body...), " x"...), http.StatusBadRequest, "invalid")
			var obj map[string]any
			if err := json.Unmarshal(r.Body, &obj); err != nil {
				t.Fatal(err)
			}
			for member, v := range obj {
				for _, wrong := range wrongKinds(v) {
					m := map[string]any{}
					for k, x := range obj {
						m[k] = x
					}
					m[member] = wrong
					b, err := json.Marshal(m)
					if err != nil {
						t.Fatal(err)
					}
					send(string(b), b, http.StatusBadRequest, "invalid")
				}
			}
			// Nested 100,000 deep: over encoding/json's depth limit.
			send("deep", []byte(`{"x":`+strings.Repeat("[", 100_000)), http.StatusBadRequest, "invalid")
			// Large bodies go without the spec validator (it would parse
			// megabytes per request): just under the 1 MiB limit the
			// decoder refuses the first unknown member; over it, 413,
			// declared or chunked.
			large := `{"pad":"` + strings.Repeat("x", 1<<20-64) + `"}`
			huge := `{"pad":"` + strings.Repeat("x", 2<<20) + `"}`
			for _, b := range []struct {
				what    string
				body    io.Reader
				data    string // what body reads, for a signature
				status  int
				problem string
			}{
				{"large", strings.NewReader(large), large, http.StatusBadRequest, "invalid"},
				{"huge", strings.NewReader(huge), huge, http.StatusRequestEntityTooLarge, "too-large"},
				{"huge chunked", io.MultiReader(strings.NewReader(huge)), huge, http.StatusRequestEntityTooLarge, "too-large"},
			} {
				req, err := http.NewRequest(r.Method, env.HTTP.URL+r.Path, b.body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if r.Signed {
					if err := peerSigner.Sign(req, []byte(b.data)); err != nil {
						t.Fatal(err)
					}
				} else if h := r.Header.Get("Authorization"); h != "" {
					req.Header.Set("Authorization", h)
				} else {
					req.SetBasicAuth(adminAddress, adminPassword)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", b.what, err)
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var p Problem
				if res.StatusCode != b.status || res.Header.Get("Content-Type") != "application/problem+json" ||
					json.Unmarshal(out, &p) != nil || p.Type != api.ProblemTypePrefix+b.problem {
					t.Errorf("%s: %d %s %s", b.what, res.StatusCode, res.Header.Get("Content-Type"), out)
				}
			}
		})
	}

	t.Run("NothingWritten", func(t *testing.T) {
		if got := env.Store.Index(); got != before {
			t.Errorf("store index moved from %d to %d", before, got)
		}
	})
	t.Run("StillServing", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/example.com").Expect(t, http.StatusOK)
		c.MustCreateDomain(t, "after.example")
	})
}
