package openapi_test

import (
	"bytes"
	"testing"

	"mailcluster/openapi"
)

func TestLoad(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		doc, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		if doc.OpenAPI != "3.0.3" {
			t.Errorf("openapi version = %q, want 3.0.3", doc.OpenAPI)
		}
		if doc.Components.Schemas["Problem"] == nil {
			t.Error("schema Problem is missing")
		}
		if doc.Components.SecuritySchemes["basicAuth"] == nil {
			t.Error("security scheme basicAuth is missing")
		}
		for _, p := range []string{"/health", "/openapi.yaml", "/MdMgmtWS", "/api/v1/node"} {
			if doc.Paths.Find(p) == nil {
				t.Errorf("path %s is missing", p)
			}
		}
	})
	t.Run("FreshCopy", func(t *testing.T) {
		a, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		a.Info.Title = "changed"
		b, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		if b.Info.Title == "changed" {
			t.Error("Load returned a shared document")
		}
	})
	t.Run("Embedded", func(t *testing.T) {
		if !bytes.HasPrefix(openapi.Spec, []byte("openapi: 3.0.3")) {
			t.Error("Spec does not start with the OpenAPI version line")
		}
	})
}

// TestProblemSchema checks that the documented problem shape accepts the
// documents the api package sends and refuses malformed ones.
func TestProblemSchema(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["Problem"].Value
	tests := []struct {
		name  string
		value map[string]any
		ok    bool
	}{
		{"OK", map[string]any{"type": "urn:mailcluster:problem:not-found", "title": "Not found", "status": 404}, true},
		{"OKReadOnly", map[string]any{"type": "urn:mailcluster:problem:read-only", "title": "Read-only node", "status": 403,
			"detail": "d", "instance": "/api/v1/domains", "primary": "http://127.0.0.1:8080"}, true},
		{"ErrMissingType", map[string]any{"title": "x", "status": 400}, false},
		{"ErrBadType", map[string]any{"type": "about:blank", "title": "x", "status": 400}, false},
		{"ErrBadStatus", map[string]any{"type": "urn:mailcluster:problem:invalid", "title": "x", "status": 200}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// VisitJSON wants JSON-decoded numbers.
			v := map[string]any{}
			for k, x := range tt.value {
				if n, ok := x.(int); ok {
					v[k] = float64(n)
				} else {
					v[k] = x
				}
			}
			err := schema.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
