package openapi_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailcluster"
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
		for _, p := range []string{"/health", "/openapi.yaml", "/MdMgmtWS", "/api/v1/node", "/internal/v1/usage",
			"/api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}", "/api/v1/domains/{domain}/accounts/{mailbox}/usage",
			"/api/v1/screening/ips", "/api/v1/screening/ips/{ip}", "/api/v1/screening/accounts",
			"/api/v1/screening/accounts/{address}", "/api/v1/screening/thaw", "/internal/v1/screening/failures",
			"/metrics", "/api/v1/certificates", "/api/v1/certificates/{name}", "/api/v1/cluster", "/api/v1/cluster/switchover",
			"/api/v1/cluster/servers", "/api/v1/cluster/servers/{name}", "/api/v1/cluster/log"} {
			if doc.Paths.Find(p) == nil {
				t.Errorf("path %s is missing", p)
			}
		}
		for _, name := range []string{"Message", "MessageList", "Usage", "UsageReport", "UsageDelta", "IndexResult",
			"BlockedIP", "BlockedIPList", "BlockIPRequest", "FrozenAccount", "FrozenAccountList", "FreezeRequest",
			"ThawRequest", "LoginFailure", "FailureReport", "Certificate", "CertificateList", "CertificateImport",
			"Server", "ServerList", "ServerRegister", "ClusterLogEntry", "ClusterLog"} {
			if doc.Components.Schemas[name] == nil {
				t.Errorf("schema %s is missing", name)
			}
		}
	})
	t.Run("InternalSignedOnly", func(t *testing.T) {
		doc, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		if s := doc.Components.SecuritySchemes["nodeSignature"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "MC-HMAC-SHA256" {
			t.Fatalf("security scheme nodeSignature = %+v", s)
		}
		for path, item := range doc.Paths.Map() {
			if !strings.HasPrefix(path, "/internal/") {
				continue
			}
			for method, op := range item.Operations() {
				if op.Security == nil || len(*op.Security) != 1 {
					t.Fatalf("%s %s security = %+v", method, path, op.Security)
				}
				if _, ok := (*op.Security)[0]["nodeSignature"]; !ok {
					t.Errorf("%s %s is not signature-only: %+v", method, path, *op.Security)
				}
			}
		}
	})
	t.Run("ThawWithoutCredentials", func(t *testing.T) {
		doc, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		op := doc.Paths.Find("/api/v1/screening/thaw").Post
		if op == nil || op.Security == nil || len(*op.Security) != 0 {
			t.Fatalf("POST /api/v1/screening/thaw security = %+v, want none", op)
		}
	})
	t.Run("OpenMetaRoutes", func(t *testing.T) {
		doc, err := openapi.Load()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"GET /health", "HEAD /health", "GET /metrics"} {
			method, path, _ := strings.Cut(name, " ")
			o := doc.Paths.Find(path).GetOperation(method)
			if o == nil || o.Security == nil || len(*o.Security) != 0 {
				t.Errorf("%s: security = %+v, want none", name, o)
			}
		}
		if doc.Paths.Find("/health").Get.Responses.Status(503) == nil {
			t.Error("GET /health has no 503 response")
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

// TestUsageReportSchema checks that the documented report accepts what a
// node sends (the JSON of mailcluster.UsageReport) and refuses the rest.
func TestUsageReportSchema(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["UsageReport"].Value
	sent, err := json.Marshal(mailcluster.UsageReport{Node: "node2", Epoch: "e1", Deltas: []mailcluster.UsageDelta{
		{Seq: 7, Domain: "example.com", Mailbox: "alice", Bytes: 120, Messages: 1, At: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	delta := `{"seq":1,"domain":"example.com","mailbox":"alice","bytes":-10,"messages":-1,"at":"2025-01-02T03:04:05Z"}`
	tests := []struct {
		name string
		json string
		ok   bool
	}{
		{"OK", `{"node":"node1","epoch":"e1","deltas":[` + delta + `]}`, true},
		{"OKAsSent", string(sent), true},
		{"OKNoDeltas", `{"node":"node1","epoch":"","deltas":null}`, true},
		{"ErrNoNode", `{"epoch":"e1","deltas":[]}`, false},
		{"ErrUnknownMember", `{"node":"node1","epoch":"e1","deltas":[],"extra":true}`, false},
		{"ErrSeqZero", `{"node":"node1","epoch":"e1","deltas":[{"seq":0,"domain":"d","mailbox":"m","bytes":1,"messages":1,"at":"2025-01-02T03:04:05Z"}]}`, false},
		{"ErrDeltaMissingAt", `{"node":"node1","epoch":"e1","deltas":[{"seq":1,"domain":"d","mailbox":"m","bytes":1,"messages":1}]}`, false},
		{"ErrTooMany", `{"node":"node1","epoch":"e1","deltas":[` + strings.Repeat(delta+",", 100) + delta + `]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := schema.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestFailureReportSchema checks that the documented report accepts what a
// node sends (the JSON of mailcluster.LoginFailure) and refuses the rest.
func TestFailureReportSchema(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["FailureReport"].Value
	sent, err := json.Marshal(map[string]any{"failures": []mailcluster.LoginFailure{
		{Time: time.Now(), IP: "203.0.113.7", Address: "alice@example.com", Hash: "0123abcd", Node: "node2", Proto: "smtp"},
		{Time: time.Now(), IP: "2001:db8::1", Hash: "4567ef01", Node: "node2", Proto: "api"}}})
	if err != nil {
		t.Fatal(err)
	}
	failure := `{"time":"2025-01-02T03:04:05Z","ip":"203.0.113.7","hash":"h","node":"node2","proto":"smtp"}`
	tests := []struct {
		name string
		json string
		ok   bool
	}{
		{"OK", `{"failures":[` + failure + `]}`, true},
		{"OKAsSent", string(sent), true},
		{"OKEmpty", `{"failures":[]}`, true},
		{"ErrNoFailures", `{}`, false},
		{"ErrUnknownMember", `{"failures":[{"time":"2025-01-02T03:04:05Z","ip":"1.2.3.4","hash":"h","node":"n","proto":"smtp","password":"x"}]}`, false},
		{"ErrNoIP", `{"failures":[{"time":"2025-01-02T03:04:05Z","hash":"h","node":"n","proto":"smtp"}]}`, false},
		{"ErrTooMany", `{"failures":[` + strings.Repeat(failure+",", 1000) + failure + `]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := schema.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestCertificateSchemas checks that no certificate answer can carry a
// private key and that the import body is what clients send.
func TestCertificateSchemas(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	cert := `{"name":"mail","default":true,"subject":"CN=mail.example.com","issuer":"CN=Test CA","sans":["mail.example.com"],` +
		`"notBefore":"2025-01-02T03:04:05Z","notAfter":"2026-01-02T03:04:05Z",` +
		`"fingerprint":"` + strings.Repeat("ab", 32) + `","chainPem":"-----BEGIN CERTIFICATE-----\n"}`
	tests := []struct {
		name, schema, json string
		ok                 bool
	}{
		{"OK", "Certificate", cert, true},
		{"ErrSealedKey", "Certificate", strings.TrimSuffix(cert, "}") + `,"sealedKey":"abc"}`, false},
		{"ErrKeyPem", "Certificate", strings.TrimSuffix(cert, "}") + `,"keyPem":"abc"}`, false},
		{"ErrFingerprint", "Certificate", strings.Replace(cert, strings.Repeat("ab", 32), "AB:CD", 1), false},
		{"OKList", "CertificateList", `{"certificates":[` + cert + `]}`, true},
		{"OKImport", "CertificateImport", `{"chainPem":"c","keyPem":"k","default":true}`, true},
		{"OKImportNoDefault", "CertificateImport", `{"chainPem":"c","keyPem":"k"}`, true},
		{"ErrImportNoKey", "CertificateImport", `{"chainPem":"c"}`, false},
		{"ErrImportUnknown", "CertificateImport", `{"chainPem":"c","keyPem":"k","password":"x"}`, false},
		{"OKHealthy", "Health", `{"summary":"primary; lag 0 ms; ok","status":"ok","role":"primary","name":"n","index":1,"lagMs":0,"problems":[]}`, true},
		{"OKUnhealthy", "Health", `{"summary":"primary; lag 0 ms; ok","status":"unhealthy","role":"primary","name":"n","index":1,"lagMs":0,"problems":["x"]}`, true},
		{"ErrHealthNoProblems", "Health", `{"summary":"primary; lag 0 ms; ok","status":"ok","role":"primary","name":"n","index":1,"lagMs":0}`, false},
		{"ErrHealthStatus", "Health", `{"summary":"primary; lag 0 ms; ok","status":"degraded","role":"primary","name":"n","index":1,"lagMs":0,"problems":[]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"/"+tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := doc.Components.Schemas[tt.schema].Value.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestClusterSchemas checks the cluster schemas against what the service
// produces (the JSON of mailcluster.Member, ClusterEvent and NodeStatus)
// and against malformed documents.
func TestClusterSchemas(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	server, err := json.Marshal(mailcluster.Member{Name: "node2", APIURL: "http://10.0.0.2:8080", NodeKeyID: "k2",
		Version: mailcluster.Version, TimeZone: "UTC", RegisteredAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	event, err := json.Marshal(mailcluster.ClusterEvent{Time: time.Now().UTC(), Level: "warn", Event: "clock-warning", Node: "node1",
		Message: "m", Fields: map[string]string{"node": "node2"}})
	if err != nil {
		t.Fatal(err)
	}
	node, err := json.Marshal(mailcluster.NodeStatus{Name: "node3", APIURL: "http://10.0.0.3:8080", Role: mailcluster.RolePending,
		Version: "1", LagMS: -1, OffsetMS: -1500, Warnings: []string{"w"}})
	if err != nil {
		t.Fatal(err)
	}
	entry := `{"time":"2030-01-02T03:04:05Z","level":"info","event":"join","node":"node1","message":"m","fields":{}}`
	tests := []struct {
		name, schema, json string
		ok                 bool
	}{
		{"OKAsSent", "Server", string(server), true},
		{"ErrNoKeyID", "Server", `{"name":"n","apiUrl":"u","version":"v","timeZone":"UTC","registeredAt":"2030-01-02T03:04:05Z"}`, false},
		{"ErrUnknown", "Server", strings.TrimSuffix(string(server), "}") + `,"nodeKey":"secret"}`, false},
		{"OKList", "ServerList", `{"servers":[` + string(server) + `]}`, true},
		{"ErrListNull", "ServerList", `{"servers":null}`, false},
		{"OK", "ServerRegister", `{"node":"10.0.0.2:8080"}`, true},
		{"ErrEmpty", "ServerRegister", `{"node":""}`, false},
		{"ErrMissing", "ServerRegister", `{}`, false},
		{"OK", "ClusterLogEntry", entry, true},
		{"OKFields", "ClusterLogEntry", strings.Replace(entry, `{}`, `{"node":"node2","offset_ms":"1500"}`, 1), true},
		{"ErrLevel", "ClusterLogEntry", strings.Replace(entry, `"info"`, `"debug"`, 1), false},
		{"ErrFieldNotString", "ClusterLogEntry", strings.Replace(entry, `{}`, `{"n":1}`, 1), false},
		{"ErrNoFields", "ClusterLogEntry", strings.Replace(entry, `,"fields":{}`, ``, 1), false},
		{"OKAsSent", "ClusterLogEntry", string(event), true},
		{"OKLog", "ClusterLog", `{"entries":[` + entry + `]}`, true},
		{"OKLogEmpty", "ClusterLog", `{"entries":[]}`, true},
		{"OKAsSent", "NodeStatus", string(node), true},
		{"ErrNoWarnings", "NodeStatus", strings.Replace(string(node), `,"warnings":["w"]`, ``, 1), false},
		{"ErrWarningsNull", "NodeStatus", strings.Replace(string(node), `["w"]`, `null`, 1), false},
		{"OKPending", "Role", `"pending"`, true},
		{"ErrRole", "Role", `"leader"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"/"+tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := doc.Components.Schemas[tt.schema].Value.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
