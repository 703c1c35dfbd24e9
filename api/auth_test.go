package api_test

import (
	"context"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/internal/nodeauth"
	"mailcluster/openapi"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// countingSink counts the failed logins reported to screening.
type countingSink struct {
	mu  sync.Mutex
	got []mailcluster.LoginFailure
}

func (s *countingSink) Report(f mailcluster.LoginFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, f)
}

func (s *countingSink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// reNoAuth matches the paths documented without credentials.
var reNoAuth = regexp.MustCompile(`^(/health(/.*)?|/openapi\.yaml|/metrics|/api/v1/screening/thaw)$`)

// samplePathValues fill the spec's path parameters.
var samplePathValues = map[string]string{
	"domain": "example.com", "mailbox": "alice", "id": "1700000000.M1P2Q3.host,S=10", "file": "mailcluster",
	"section": "Passwords", "key": "MinLength", "name": "mail", "ip": "203.0.113.1", "address": "alice@example.com",
}

var rePathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// specOperation is one operation of openapi.yaml with the security scheme
// it requires ("" for none).
type specOperation struct {
	method, path, scheme string
}

// specOperations lists every operation of openapi.yaml.
func specOperations(t *testing.T) []specOperation {
	t.Helper()
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []specOperation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			out = append(out, specOperation{method: method, path: path, scheme: securityScheme(t, method+" "+path, sec)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	if len(out) < 40 {
		t.Fatalf("only %d operations in the spec", len(out))
	}
	return out
}

func securityScheme(t *testing.T, op string, sec openapi3.SecurityRequirements) string {
	t.Helper()
	if len(sec) == 0 {
		return ""
	}
	if len(sec) != 1 || len(sec[0]) != 1 {
		t.Fatalf("%s: unexpected security %v", op, sec)
	}
	for name := range sec[0] {
		return name
	}
	return ""
}

// authRequest returns a valid request for an operation (the read-only
// test's request for writes), so that only credentials can refuse it.
func authRequest(t *testing.T, op specOperation) Request {
	t.Helper()
	r := Request{Method: op.method, Path: rePathParam.ReplaceAllStringFunc(op.path, func(p string) string {
		return samplePathValues[strings.Trim(p, "{}")]
	})}
	if w, ok := writeRequests[op.method+" "+op.path]; ok {
		r.Body, r.ContentType = w.Body, w.ContentType
		if w.Path != "" {
			r.Path = w.Path
		}
	}
	if op.path == "/MdMgmtWS" {
		r.Body, r.ContentType = []byte(`<MDaemon><API><Request><Operation>CreateDomain</Operation>`+
			`<Parameters><Domain>new.example</Domain></Parameters></Request></API></MDaemon>`), "text/xml"
	}
	return r
}

// TestAuthEverywhere walks every operation of openapi.yaml: each one that
// the spec protects with HTTP Basic answers 401 (the XML-API: status 8,
// HTTP 401) without credentials, with a wrong password, an unknown
// account, a malformed header or a node's signature; each internal
// operation answers 401 without a signature, with an altered one, with the
// key as a bearer token or with an administrator's Basic credentials
// (nodeauth's own tests cover the rest); only the documented operations
// need no credentials. Every wrong password or unknown account is reported
// to dynamic screening, and nothing is written.
func TestAuthEverywhere(t *testing.T) {
	sink := &countingSink{}
	env := MustOpenEnv(t, WithXMLAPI(func(s *service.Service) http.Handler { return xmlapi.NewHandler(s, nil) }), WithFailures(sink))
	env.Admin.MustCreateDomain(t, "example.com")
	env.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1"})
	// This walk sends thousands of wrong logins from 127.0.0.1: exempt it
	// from the attempt limits (failures are still reported, and counted
	// below), which screening's own tests cover.
	if err := env.Svc.SetSetting(service.SystemContext(context.Background(), "test"), mailcluster.MainSettingsFile, "Screening", "AllowIPs", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	anon := env.Admin.Anonymous()
	before := env.Store.Index()
	reported := 0

	expect401 := func(t *testing.T, r Request, challenge string) {
		t.Helper()
		res := anon.Do(t, r)
		if res.Status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401: %s", res.Status, res.Body)
		}
		if got := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, challenge) {
			t.Errorf("WWW-Authenticate %q, want %s...", got, challenge)
		}
		if r.Path == "/MdMgmtWS" {
			if !strings.Contains(string(res.Body), `<Status id="8" value="0x8007052E"`) {
				t.Errorf("XML-API answer without status 8:\n%s", res.Body)
			}
		} else if p := res.Problem(t); p.Type != api.ProblemTypePrefix+"unauthorized" {
			t.Errorf("problem type %q", p.Type)
		}
	}
	n := 0
	for _, op := range specOperations(t) {
		name := op.method + " " + op.path
		t.Run(name, func(t *testing.T) {
			r := authRequest(t, op)
			with := func(h ...string) Request {
				c := r
				c.Header = http.Header{}
				for i := 0; i+1 < len(h); i += 2 {
					c.Header.Set(h[i], h[i+1])
				}
				return c
			}
			switch op.scheme {
			case "":
				if !reNoAuth.MatchString(op.path) {
					t.Fatalf("%s needs no credentials, but is not one of the documented open operations", name)
				}
			case "basicAuth":
				if strings.HasPrefix(op.path, "/internal/") {
					t.Fatalf("%s: an internal operation with Basic auth", name)
				}
				expect401(t, r, "Basic ")
				n++
				wrong := "wrong-pass-" + strconv.Itoa(n)
				expect401(t, with("Authorization", basic(adminAddress, wrong)), "Basic ")
				expect401(t, with("Authorization", basic("nobody@example.com", adminPassword)), "Basic ")
				expect401(t, with("Authorization", basic("not-an-address", adminPassword)), "Basic ")
				reported += 3
				expect401(t, with("Authorization", basic("alice@example.com", "alice-pass-1")), "Basic ") // no admin rights
				expect401(t, with("Authorization", "Basic !!!"), "Basic ")
				signed := r
				signed.Signed = true
				expect401(t, signed, "Basic ")
			case "nodeSignature":
				if !strings.HasPrefix(op.path, "/internal/v1/") {
					t.Fatalf("%s: node signatures outside the internal API", name)
				}
				const challenge = "MC-HMAC-SHA256 "
				expect401(t, r, challenge)
				h := signedHeader(t, peerSigner, r.Method, r.Path, r.Body)
				sig := h.Get("Authorization")
				alter := func(k, v string) Request {
					c := r
					c.Header = h.Clone()
					c.Header.Set(k, v)
					return c
				}
				flip := "0"
				if strings.HasSuffix(sig, "0") {
					flip = "1"
				}
				expect401(t, alter("Authorization", sig[:len(sig)-1]+flip), challenge)
				expect401(t, alter("Authorization", "Bearer "+strings.TrimPrefix(sig, challenge)), challenge)
				expect401(t, alter(nodeauth.HeaderNode, "node4"), challenge)
				expect401(t, alter(nodeauth.HeaderTimestamp, "1"), challenge)
				expect401(t, with("Authorization", "Bearer "+hex.EncodeToString(internalKey)), challenge)
				expect401(t, with("Authorization", "Basic "+hex.EncodeToString(internalKey)), challenge)
				expect401(t, with("Authorization", basic(adminAddress, adminPassword)), challenge)
			default:
				t.Fatalf("%s: unknown security scheme %q", name, op.scheme)
			}
			if got := sink.Count(); got != reported {
				t.Errorf("%d failed logins reported to screening, want %d", got, reported)
			}
		})
	}
	t.Run("ThawTokenCounted", func(t *testing.T) {
		anon.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/thaw",
			Body: []byte(`{"address":"alice@example.com","token":"WRONGTOKEN"}`)}).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		if got := sink.Count(); got != reported+1 {
			t.Errorf("%d failures reported, want %d", got, reported+1)
		}
		for _, f := range sink.got {
			if strings.Contains(f.Hash, "wrong-pass") || strings.Contains(f.Hash, "WRONGTOKEN") || strings.Contains(f.Hash, adminPassword) {
				t.Errorf("a secret is in a reported failure: %+v", f)
			}
		}
	})
	t.Run("NothingWritten", func(t *testing.T) {
		if got := env.Store.Index(); got != before {
			t.Errorf("store index moved from %d to %d", before, got)
		}
		env.Admin.Get(t, "/api/v1/domains/new.example").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}

// basic returns an Authorization header value for HTTP Basic.
func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// TestAuthBlocksAfterThreshold checks that wrong credentials on the REST
// API and the XML-API count together: the third distinct failure from an
// address blocks it on both.
func TestAuthBlocksAfterThreshold(t *testing.T) {
	sink := &syncSink{}
	env := MustOpenEnv(t, WithXMLAPI(func(s *service.Service) http.Handler { return xmlapi.NewHandler(s, nil) }), WithFailures(sink))
	sink.svc = env.Svc
	if err := env.Svc.SetSetting(service.SystemContext(context.Background(), "test"), mailcluster.MainSettingsFile, mailcluster.SectionScreening, mailcluster.KeyIPFailures, "3"); err != nil {
		t.Fatal(err)
	}
	anon := env.Admin.Anonymous()
	xml := Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "text/xml",
		Body: []byte(`<MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`)}
	as := func(r Request, pass string) Request {
		r.Header = http.Header{"Authorization": {basic(adminAddress, pass)}}
		return r
	}
	anon.Do(t, as(Request{Method: http.MethodGet, Path: "/api/v1/node"}, "wrong-pass-1")).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	anon.Do(t, as(xml, "wrong-pass-2")).Expect(t, http.StatusUnauthorized)
	env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
	anon.Do(t, as(Request{Method: http.MethodGet, Path: "/api/v1/domains"}, "wrong-pass-3")).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	env.Admin.Get(t, "/api/v1/node").ExpectProblem(t, http.StatusForbidden, "forbidden")
	res := anon.Do(t, as(xml, adminPassword)).Expect(t, http.StatusOK)
	if !strings.Contains(string(res.Body), `<Status id="9"`) {
		t.Errorf("XML-API from a blocked address:\n%s", res.Body)
	}
}

// TestSecretComparisons checks, on the source, that the internal API is
// authenticated by nodeauth (which compares signatures with hmac.Equal),
// and that no comparison in the package's code involves a token or
// password with == or !=.
// (Passwords are compared by bcrypt and thaw tokens with hmac.Equal in the
// root package; see TestSecretComparisons there.)
func TestSecretComparisons(t *testing.T) {
	fset, files := parseSources(t, ".")
	reSecretName := regexp.MustCompile(`(?i)(token|password|secret)$`)
	funcs := map[string]*ast.FuncDecl{}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				funcs[fd.Name.Name] = fd
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok || (be.Op != token.EQL && be.Op != token.NEQ) || isEmpty(be.X) || isEmpty(be.Y) {
				return true // a check for emptiness tells nothing about the value
			}
			for _, side := range []ast.Expr{be.X, be.Y} {
				if id := exprName(side); reSecretName.MatchString(id) {
					t.Errorf("%s: %s compared with %s", fset.Position(be.Pos()), id, be.Op)
				}
			}
			return true
		})
	}
	calls := func(fn, callee string) bool {
		fd := funcs[fn]
		if fd == nil {
			t.Fatalf("no function %s", fn)
		}
		found := false
		ast.Inspect(fd, func(n ast.Node) bool {
			if ce, ok := n.(*ast.CallExpr); ok && exprName(ce.Fun) == callee {
				found = true
			}
			return true
		})
		return found
	}
	if !calls("authenticateInternal", "s.internal.Verify") {
		t.Error("authenticateInternal does not check the signature with nodeauth")
	}
}

// isEmpty tells whether e is "" or nil.
func isEmpty(e ast.Expr) bool {
	if bl, ok := e.(*ast.BasicLit); ok {
		return bl.Value == `""` || bl.Value == "``"
	}
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "nil"
}

// parseSources parses the non-test Go files of dir.
func parseSources(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return fset, files
}

// exprName renders an identifier or selector ("s.internalToken").
func exprName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprName(x.X) + "." + x.Sel.Name
	}
	return ""
}
