package xmlapi_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/beevik/etree"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/kvstore"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

const (
	adminAddr   = "admin@localhost"
	adminPass   = "secret-pass-1"
	primaryName = "node1"
	primaryURL  = "http://127.0.0.1:8080"
)

// sealKey seals the certificate keys of the test nodes.
var sealKey = mailcluster.SealKey("test-secret-0123456789")

// wantStatus pins the documented, stable status table (docs/xml-api.md),
// with the HTTP status of a request refused before its operation runs.
var wantStatus = map[int]struct {
	value string
	http  int
}{
	xmlapi.StatusOK:               {"0x00000000", 200},
	xmlapi.StatusUnknownOperation: {"0x80070032", 200},
	xmlapi.StatusMissingParameter: {"0x80070057", 200},
	xmlapi.StatusInvalidParameter: {"0x800700A0", 200},
	xmlapi.StatusNotFound:         {"0x80070002", 200},
	xmlapi.StatusConflict:         {"0x800700B7", 200},
	xmlapi.StatusReadOnly:         {"0x80070013", 200},
	xmlapi.StatusUnavailable:      {"0x800704CF", 200},
	xmlapi.StatusUnauthorized:     {"0x8007052E", 401},
	xmlapi.StatusForbidden:        {"0x80070005", 200},
	xmlapi.StatusMalformed:        {"0x8007000D", 400},
	xmlapi.StatusTooLarge:         {"0x800700DF", 413},
	xmlapi.StatusInternal:         {"0x80004005", 200},
	xmlapi.StatusMethodNotAllowed: {"0x80070001", 405},
	xmlapi.StatusUnsupportedType:  {"0x8007065E", 415},
	xmlapi.StatusForeignOrigin:    {"0x8007000C", 403},
	xmlapi.StatusNotSupported:     {"0x80004001", 200},
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Env is a bootstrapped primary node's state with an XML-API listener.
type Env struct {
	Store   *kvstore.BoltStore
	Svc     *service.Service
	Handler *xmlapi.Handler
	URL     string
	Logs    *logBuffer
	Log     *slog.Logger
}

// EnvOption edits the service.Options of a test node before its Service
// is built (a Service has no settable fields).
type EnvOption func(*service.Options)

// WithFailures reports the node's failed logins to sink.
func WithFailures(sink mailcluster.FailureSink) EnvOption {
	return func(o *service.Options) { o.Failures = sink }
}

// WithAdmission asks a for the nodes that ask to join.
func WithAdmission(a mailcluster.Admission) EnvOption {
	return func(o *service.Options) { o.Admit = a }
}

// WithEvents records the node's cluster events in l.
func WithEvents(l mailcluster.ClusterLog) EnvOption {
	return func(o *service.Options) { o.Events = l }
}

// WithNodeKeyID reports id as the node key's hash.
func WithNodeKeyID(id string) EnvOption {
	return func(o *service.Options) { o.NodeKeyID = id }
}

// primaryOptions are the service.Options of a standalone test primary
// (cheap password hashes, name node1, the test seal key), edited by opts.
func primaryOptions(opts ...EnvOption) service.Options {
	o := service.Options{BcryptCost: bcrypt.MinCost, NodeName: primaryName, SealKey: sealKey}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// MustOpenEnv opens a bbolt store, bootstraps it (admin@localhost) and
// serves the XML-API of a standalone primary on 127.0.0.1:0; opts give
// the Service its dependencies.
func MustOpenEnv(tb testing.TB, opts ...EnvOption) *Env {
	tb.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := kvstore.OpenBoltStore(filepath.Join(tb.TempDir(), "state.db"), log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc := service.New(store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}}, log, primaryOptions(opts...))
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: adminAddr, AdminPassword: adminPass, DataDir: tb.TempDir(),
	}); err != nil {
		tb.Fatal(err)
	}
	e := &Env{Store: store, Svc: svc, Logs: logs, Log: log}
	e.Handler, e.URL = e.Serve(tb, svc)
	return e
}

// Serve starts another listener with a Handler over svc and returns the
// handler and the endpoint URL.
func (e *Env) Serve(tb testing.TB, svc *service.Service) (*xmlapi.Handler, string) {
	tb.Helper()
	h := xmlapi.NewHandler(svc, e.Log)
	mux := http.NewServeMux()
	mux.Handle("/MdMgmtWS", h)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return h, srv.URL + "/MdMgmtWS"
}

// Envelope returns a request document shaped like the classic scripts'.
func Envelope(op, params string) string {
	return EnvelopeAttrs(`version="1.0" echo="0" verbose="0"`, op, params)
}

// EnvelopeAttrs is Envelope with the Request element's attributes.
func EnvelopeAttrs(attrs, op, params string) string {
	return `<?xml version="1.0" encoding="utf-8"?>
<MDaemon>
  <API>
    <Request ` + attrs + `>
      <Operation>` + op + `</Operation>
      <Parameters>` + params + `</Parameters>
    </Request>
  </API>
</MDaemon>`
}

// Response is one answer of the XML-API.
type Response struct {
	Code   int
	Header http.Header
	Body   string
	Doc    *etree.Document
}

// Post sends body with HTTP Basic user:pass (none when user is "") and
// checks what every answer must satisfy: XML content type, a parsable
// envelope, and no password, password hash or private key anywhere.
func Post(tb testing.TB, url, user, pass string, body io.Reader) *Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return do(tb, req)
}

func do(tb testing.TB, req *http.Request) *Response {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := &Response{Code: res.StatusCode, Header: res.Header, Body: string(b)}
	if ct := res.Header.Get("Content-Type"); ct != "application/xml; charset=utf-8" {
		tb.Fatalf("Content-Type = %q", ct)
	}
	if !strings.HasPrefix(r.Body, `<?xml version="1.0" encoding="utf-8"?>`) {
		tb.Fatalf("no XML declaration:\n%s", r.Body)
	}
	for _, secret := range append([]string{"secret-pass", "$2a$", "$2b$", "$2y$", "<Password>"}, keyMarkers()...) {
		if strings.Contains(r.Body, secret) {
			tb.Fatalf("response contains %q:\n%s", secret, r.Body)
		}
	}
	r.Doc = etree.NewDocument()
	if err := r.Doc.ReadFromBytes(b); err != nil {
		tb.Fatalf("response is not XML: %v\n%s", err, r.Body)
	}
	if r.Doc.FindElement("/MDaemon/API/Response/Status") == nil {
		tb.Fatalf("no Status:\n%s", r.Body)
	}
	return r
}

// Call runs an operation as the bootstrap admin.
func (e *Env) Call(tb testing.TB, op, params string) *Response {
	tb.Helper()
	return Post(tb, e.URL, adminAddr, adminPass, strings.NewReader(Envelope(op, params)))
}

// CallAt runs an operation as the bootstrap admin against another endpoint.
func CallAt(tb testing.TB, url, op, params string) *Response {
	tb.Helper()
	return Post(tb, url, adminAddr, adminPass, strings.NewReader(Envelope(op, params)))
}

// Status returns the Status element's id, value and message.
func (r *Response) Status() (id int, value, message string) {
	st := r.Doc.FindElement("/MDaemon/API/Response/Status")
	id, _ = strconv.Atoi(st.SelectAttrValue("id", "-1"))
	return id, st.SelectAttrValue("value", ""), st.SelectAttrValue("message", "")
}

// Result returns the Result element, nil when absent.
func (r *Response) Result() *etree.Element {
	return r.Doc.FindElement("/MDaemon/API/Response/Result")
}

// Text returns the text of the element at an etree path under Result
// ("" when absent).
func (r *Response) Text(path string) string {
	res := r.Result()
	if res == nil {
		return ""
	}
	e := res.FindElement(path)
	if e == nil {
		return ""
	}
	return e.Text()
}

// MustStatus fails unless the response carries status id with its
// documented value and HTTP status, and returns the message.
func (r *Response) MustStatus(tb testing.TB, id int) string {
	tb.Helper()
	return r.MustStatusHTTP(tb, id, wantStatus[id].http)
}

// MustStatusHTTP is MustStatus with an explicit HTTP status.
func (r *Response) MustStatusHTTP(tb testing.TB, id, httpStatus int) string {
	tb.Helper()
	got, value, msg := r.Status()
	want := wantStatus[id]
	if got != id || value != want.value || r.Code != httpStatus {
		tb.Fatalf("status id=%d value=%s http=%d (%s), want id=%d value=%s http=%d\n%s",
			got, value, r.Code, msg, id, want.value, httpStatus, r.Body)
	}
	if id != xmlapi.StatusOK && r.Result() != nil {
		tb.Fatalf("an error response has a Result:\n%s", r.Body)
	}
	return msg
}

// MustOK fails unless the operation succeeded.
func (r *Response) MustOK(tb testing.TB) *Response {
	tb.Helper()
	r.MustStatus(tb, xmlapi.StatusOK)
	if r.Result() == nil {
		tb.Fatalf("no Result:\n%s", r.Body)
	}
	return r
}

// MustCreateDomain creates a domain through the service.
func (e *Env) MustCreateDomain(tb testing.TB, name string) {
	tb.Helper()
	if _, err := e.Svc.CreateDomain(service.SystemContext(context.Background(), "test"), &mailcluster.Domain{Name: name}); err != nil {
		tb.Fatal(err)
	}
}

// MustCreateAccount creates an account through the service.
func (e *Env) MustCreateAccount(tb testing.TB, in mailcluster.AccountCreate) {
	tb.Helper()
	if in.Password == "" {
		in.Password = "secret-pass-user"
	}
	if _, err := e.Svc.CreateAccount(service.SystemContext(context.Background(), "test"), in); err != nil {
		tb.Fatal(err)
	}
}

// MustFindAccount reads an account through the service.
func (e *Env) MustFindAccount(tb testing.TB, domain, mailbox string) *mailcluster.Account {
	tb.Helper()
	a, err := e.Svc.FindAccount(service.SystemContext(context.Background(), "test"), domain, mailbox)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func TestEnvelope(t *testing.T) {
	e := MustOpenEnv(t)

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "GetVersionInfo", "").MustOK(t)
		id, value, msg := r.Status()
		if id != 0 || value != "0x00000000" || msg != "The operation completed successfully." {
			t.Fatalf("status %d %s %q", id, value, msg)
		}
		api := r.Doc.FindElement("/MDaemon/API")
		if v := api.SelectAttrValue("version", ""); v != mailcluster.Version {
			t.Fatalf("API version %q", v)
		}
		resp := r.Doc.FindElement("/MDaemon/API/Response")
		if v := resp.SelectAttrValue("version", ""); v != "1.0" {
			t.Fatalf("Response version %q, want the request's 1.0", v)
		}
		if et, err := strconv.ParseFloat(resp.SelectAttrValue("et", ""), 64); err != nil || et < 0 {
			t.Fatalf("et %q: %v", resp.SelectAttrValue("et", ""), err)
		}
		if sv := r.Doc.FindElement("/MDaemon/API/Response/ServiceVersion"); sv == nil || sv.Text() != mailcluster.Version {
			t.Fatalf("ServiceVersion missing:\n%s", r.Body)
		}
		if r.Doc.FindElement("/MDaemon/API/Request") != nil {
			t.Fatalf("request echoed without echo=1:\n%s", r.Body)
		}
		if got := r.Header.Get("Cache-Control"); got != "no-store" {
			t.Fatalf("Cache-Control %q", got)
		}
	})

	t.Run("NoAttributes", func(t *testing.T) {
		body := `<MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body)).MustOK(t)
		if v := r.Doc.FindElement("/MDaemon/API/Response").SelectAttrValue("version", ""); v != xmlapi.APIVersion {
			t.Fatalf("Response version %q, want %q", v, xmlapi.APIVersion)
		}
	})

	t.Run("Echo", func(t *testing.T) {
		body := EnvelopeAttrs(`version="1.0" echo="1" verbose="0"`, "GetDomainInfo", "<Domain>localhost</Domain>")
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body)).MustOK(t)
		api := r.Doc.FindElement("/MDaemon/API")
		kids := api.ChildElements()
		if len(kids) != 2 || kids[0].Tag != "Request" || kids[1].Tag != "Response" {
			t.Fatalf("want Request then Response under API:\n%s", r.Body)
		}
		if op := kids[0].FindElement("Operation"); op == nil || op.Text() != "GetDomainInfo" {
			t.Fatalf("echoed Operation missing:\n%s", r.Body)
		}
		if d := kids[0].FindElement("Parameters/Domain"); d == nil || d.Text() != "localhost" {
			t.Fatalf("echoed Parameters missing:\n%s", r.Body)
		}
		if v := kids[0].SelectAttrValue("echo", ""); v != "1" {
			t.Fatalf("echoed attributes missing:\n%s", r.Body)
		}
	})

	t.Run("EchoOnError", func(t *testing.T) {
		body := EnvelopeAttrs(`echo="Yes"`, "GetDomainInfo", "<Domain>nowhere.example</Domain>")
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body))
		r.MustStatus(t, xmlapi.StatusNotFound)
		if r.Doc.FindElement("/MDaemon/API/Request/Operation") == nil {
			t.Fatalf("request not echoed on an operation error:\n%s", r.Body)
		}
	})

	t.Run("EchoRedactsPassword", func(t *testing.T) {
		body := EnvelopeAttrs(`version="1.0" echo="1" verbose="0"`, "CreateUser",
			`<Domain>localhost</Domain><Mailbox>echo</Mailbox><Details><Password>secret-pass-echo</Password></Details>`)
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body)).MustOK(t) // Post checks the body
		pw := r.Doc.FindElement("/MDaemon/API/Request/Parameters/Details/Password")
		if pw == nil || pw.Text() != "" {
			t.Fatalf("echoed password not emptied:\n%s", r.Body)
		}
		if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "echo@localhost", "secret-pass-echo"); err == nil {
			t.Fatal("a non-admin account may authenticate")
		}
		if a := e.MustFindAccount(t, "localhost", "echo"); a.Mailbox != "echo" {
			t.Fatalf("account %+v", a)
		}
	})
}

func TestGetVersionInfo(t *testing.T) {
	e := MustOpenEnv(t)
	r := e.Call(t, "GetVersionInfo", "").MustOK(t)
	for path, want := range map[string]string{
		"Version": mailcluster.Version,
		"Node":    primaryName,
		"Mode":    "standalone",
		"Role":    "primary",
	} {
		if got := r.Text(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	p := r.Result().FindElement("Primary")
	if p == nil || p.SelectAttrValue("name", "") != primaryName || p.SelectAttrValue("url", "") != primaryURL {
		t.Fatalf("Primary missing:\n%s", r.Body)
	}
}

func TestUnknownOperation(t *testing.T) {
	e := MustOpenEnv(t)
	for _, op := range []string{"FrobnicateUser", "getversioninfo", "GETDOMAINLIST"} {
		t.Run(op, func(t *testing.T) {
			msg := e.Call(t, op, "").MustStatus(t, xmlapi.StatusUnknownOperation)
			if !strings.Contains(msg, op) {
				t.Fatalf("message %q does not name %s", msg, op)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "user", Password: "secret-pass-user"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "frozen", Password: "secret-pass-frozen",
		AdminRights: mailcluster.AdminGlobal, Frozen: true})

	for _, tc := range []struct{ name, user, pass string }{
		{"ErrNoCredentials", "", ""},
		{"ErrWrongPassword", adminAddr, "secret-pass-wrong"},
		{"ErrUnknownAccount", "nobody@localhost", adminPass},
		{"ErrNotAnAddress", "admin", adminPass},
		{"ErrNotAdmin", "user@example.com", "secret-pass-user"},
		{"ErrFrozenAdmin", "frozen@example.com", "secret-pass-frozen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Post(t, e.URL, tc.user, tc.pass, strings.NewReader(Envelope("GetVersionInfo", "")))
			msg := r.MustStatus(t, xmlapi.StatusUnauthorized)
			if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="mailcluster"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if msg != "Authentication failed." {
				t.Fatalf("message %q reveals more than a failure", msg)
			}
		})
	}
}

func TestForbidden(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})
	call := func(op, params string) *Response {
		return Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope(op, params)))
	}

	t.Run("ErrForbidden", func(t *testing.T) {
		for _, c := range []struct{ op, params string }{
			{"CreateDomain", "<Domain>new.example</Domain>"},
			{"GetDomainInfo", "<Domain>other.example</Domain>"},
			{"CreateUser", "<Domain>other.example</Domain><Mailbox>x</Mailbox><Details><Password>secret-pass-x1</Password></Details>"},
			{"GetIniSettings", ""},
			{"UpdateIniSettings", `<Section name="Custom"><Key name="A">1</Key></Section>`},
		} {
			call(c.op, c.params).MustStatus(t, xmlapi.StatusForbidden)
		}
	})
	t.Run("OwnDomain", func(t *testing.T) {
		r := call("GetDomainList", "").MustOK(t)
		ds := r.Result().FindElements("Domains/Domain")
		if len(ds) != 1 || ds[0].SelectAttrValue("id", "") != "example.com" {
			t.Fatalf("a domain admin sees other domains:\n%s", r.Body)
		}
		call("CreateUser", "<Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><Password>secret-pass-bob</Password></Details>").MustOK(t)
	})
}

func TestMalformed(t *testing.T) {
	e := MustOpenEnv(t)
	for _, tc := range []struct{ name, body, msg string }{
		{"Empty", ``, "<MDaemon>"},
		{"NotXML", `this is not xml`, ""},
		{"Truncated", `<MDaemon><API><Request><Operation>GetVersionInfo</Operation>`, "well-formed"},
		{"Mismatched", `<MDaemon><API></Request></API></MDaemon>`, "well-formed"},
		{"WrongRoot", `<Mail><API><Request><Operation>GetVersionInfo</Operation></Request></API></Mail>`, "<MDaemon>"},
		{"LowerCase", `<mdaemon><api><request><operation>GetVersionInfo</operation></request></api></mdaemon>`, "<MDaemon>"},
		{"Namespaced", `<x:MDaemon xmlns:x="urn:x"><API><Request><Operation>GetVersionInfo</Operation></Request></API></x:MDaemon>`, "<MDaemon>"},
		{"TwoRoots", `<MDaemon/><MDaemon/>`, "<MDaemon>"},
		{"NoAPI", `<MDaemon><Request><Operation>GetVersionInfo</Operation></Request></MDaemon>`, "<API>"},
		{"NoRequest", `<MDaemon><API/></MDaemon>`, "<Request>"},
		{"TwoRequests", `<MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`, "<Request>"},
		{"NoOperation", `<MDaemon><API><Request><Parameters/></Request></API></MDaemon>`, "<Operation>"},
		{"EmptyOperation", `<MDaemon><API><Request><Operation> </Operation></Request></API></MDaemon>`, "<Operation>"},
		{"Latin1", `<?xml version="1.0" encoding="ISO-8859-1"?><MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`, "UTF-8"},
		{"InvalidUTF8", "<MDaemon><API><Request><Operation>GetVersionInfo\xff</Operation></Request></API></MDaemon>", "well-formed"},
		{"UndefinedEntity", `<MDaemon><API><Request><Operation>&xxe;</Operation></Request></API></MDaemon>`, "well-formed"},
		{"DOCTYPE", `<?xml version="1.0"?><!DOCTYPE MDaemon><MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`, "DOCTYPE"},
		{"ENTITY", `<?xml version="1.0"?>
<!DOCTYPE MDaemon [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<MDaemon><API><Request><Operation>&xxe;</Operation></Request></API></MDaemon>`, "DOCTYPE"},
		{"BillionLaughs", `<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<MDaemon><API><Request><Operation>&lol2;</Operation></Request></API></MDaemon>`, "DOCTYPE"},
		{"LowerCaseDoctype", `<!doctype MDaemon><MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`, "DOCTYPE"},
		{"DirectiveInside", `<MDaemon><API><!ENTITY x "y"><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`, "DOCTYPE"},
		{"TooDeep", `<MDaemon><API><Request><Operation>GetVersionInfo</Operation><Parameters>` +
			strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + `</Parameters></Request></API></MDaemon>`, "nested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(tc.body))
			msg := r.MustStatus(t, xmlapi.StatusMalformed)
			if !strings.Contains(msg, tc.msg) {
				t.Fatalf("message %q does not mention %q", msg, tc.msg)
			}
			if strings.Contains(r.Body, "root:") {
				t.Fatalf("an external entity was expanded:\n%s", r.Body)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	e := MustOpenEnv(t)

	t.Run("DefaultLimit", func(t *testing.T) {
		if e.Handler.MaxBodyBytes != 0 {
			t.Fatalf("MaxBodyBytes = %d, want the zero default", e.Handler.MaxBodyBytes)
		}
		pad := strings.Repeat(" ", xmlapi.DefaultMaxBodyBytes)
		r := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(Envelope("GetVersionInfo", pad)))
		r.MustStatus(t, xmlapi.StatusTooLarge)
	})
	t.Run("JustUnderDefaultLimit", func(t *testing.T) {
		env := Envelope("GetVersionInfo", "")
		pad := strings.Repeat(" ", xmlapi.DefaultMaxBodyBytes-len(env))
		Post(t, e.URL, adminAddr, adminPass, strings.NewReader(Envelope("GetVersionInfo", pad))).MustOK(t)
	})

	small, url2 := e.Serve(t, e.Svc)
	small.MaxBodyBytes = 512
	big := Envelope("GetVersionInfo", strings.Repeat("<X/>", 200))

	t.Run("ContentLength", func(t *testing.T) {
		r := Post(t, url2, adminAddr, adminPass, strings.NewReader(big))
		msg := r.MustStatus(t, xmlapi.StatusTooLarge)
		if !strings.Contains(msg, "512") {
			t.Fatalf("message %q does not give the limit", msg)
		}
	})
	t.Run("Chunked", func(t *testing.T) {
		// io.MultiReader hides the length, so the client sends chunks.
		r := Post(t, url2, adminAddr, adminPass, io.MultiReader(strings.NewReader(big)))
		r.MustStatus(t, xmlapi.StatusTooLarge)
	})
	t.Run("UnderLimit", func(t *testing.T) {
		Post(t, url2, adminAddr, adminPass, io.MultiReader(strings.NewReader(Envelope("GetVersionInfo", "")))).MustOK(t)
	})
}

func TestMethodNotAllowed(t *testing.T) {
	e := MustOpenEnv(t)
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			req, err := http.NewRequest(method, e.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth(adminAddr, adminPass)
			r := do(t, req)
			r.MustStatus(t, xmlapi.StatusMethodNotAllowed)
			if got := r.Header.Get("Allow"); got != http.MethodPost {
				t.Fatalf("Allow %q", got)
			}
		})
	}
}

// damagedStore holds a domain record that cannot be decoded; its text
// must not reach the client.
type damagedStore struct{ mailcluster.Store }

const damagedRecord = "bolt: disk exploded at /var/secret/state.db"

func (s damagedStore) List(prefix, after string, limit int) []mailcluster.KV {
	if prefix == schema.PrefixDomains {
		return []mailcluster.KV{{Key: schema.Domain("broken.test"), Value: []byte(damagedRecord), ModifyIndex: 1}}
	}
	return s.Store.List(prefix, after, limit)
}

func (s damagedStore) Get(key string) (mailcluster.KV, bool) {
	if key == schema.Domain("broken.test") {
		return mailcluster.KV{Key: key, Value: []byte(damagedRecord), ModifyIndex: 1}, true
	}
	return s.Store.Get(key)
}

func TestInternalError(t *testing.T) {
	e := MustOpenEnv(t)
	svc := service.New(damagedStore{e.Store}, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}}, e.Log, service.Options{})
	_, url := e.Serve(t, svc)
	r := CallAt(t, url, "GetDomainList", "")
	msg := r.MustStatus(t, xmlapi.StatusInternal)
	if msg != "An internal error occurred." || strings.Contains(r.Body, "secret") || strings.Contains(r.Body, "exploded") || strings.Contains(r.Body, "damaged") {
		t.Fatalf("internal details reached the client:\n%s", r.Body)
	}
	if !strings.Contains(e.Logs.String(), "A stored domain record is damaged") {
		t.Fatalf("the internal error was not logged:\n%s", e.Logs.String())
	}
}
