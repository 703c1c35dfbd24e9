package api_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/cluster"
	"mailcluster/clusterlog"
	"mailcluster/internal/nodeauth"
	"mailcluster/kvstore"
	"mailcluster/mailstore"
	"mailcluster/openapi"
	"mailcluster/service"
)

// Credentials of the bootstrap administrator.
const (
	adminAddress  = "admin@localhost"
	adminPassword = "secret-pass-1"
	primaryURL    = "http://127.0.0.1:8080"
)

// internalKey is the internal API's signing key of every test node.
var internalKey = nodeauth.Key("test-cluster-secret")

// peerSigner signs the requests of Request.Signed as node "node3".
var peerSigner = &nodeauth.Signer{Key: internalKey, Node: "node3"}

// sealKey seals the certificate keys of every test node.
var sealKey = mailcluster.SealKey("test-secret-0123456789")

// logBuffer collects a server's log lines for assertions.
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

// Env is one node under test: a bbolt store, the Service, the API server
// on a real listener and a validating client logged in as the admin.
type Env struct {
	Store  *kvstore.BoltStore
	Svc    *service.Service
	Server *api.Server
	HTTP   *httptest.Server
	Log    *logBuffer
	Admin  *Client
	// XMLCalls counts requests that reached the fake XML-API handler.
	XMLCalls *int64Counter
	// XMLClientIP is the client address the fake XML-API handler found
	// in the context of the last request it answered.
	XMLClientIP *stringBox
	// Mail is the node's mailbox store and Outbox carries its changes to
	// mail to the primary; both nil with WithoutMail.
	Mail   *mailstore.Store
	Outbox *cluster.Outbox
}

// EnvOption changes how MustOpenEnv builds a node.
type EnvOption func(*envConfig)

type envConfig struct {
	bodyLimit int64
	faulty    func(mailcluster.Store) mailcluster.Store
	noXMLAPI  bool
	noMail    bool
	noKey     bool
	trusted   []netip.Prefix
	xml       func(*service.Service) http.Handler
	metrics   http.Handler
	// service edits the node's service.Options before service.New.
	service    []func(*service.Options)
	clusterLog bool
	logOut     **clusterlog.File
	// quietLog formats the log at level info into nothing (benchmarks):
	// the log's cost stays, its memory does not grow.
	quietLog   bool
	registerer prometheus.Registerer
}

// WithServiceOptions lets f edit the node's service.Options before the
// Service is built (after the defaults of MustOpenEnv or MustOpenPeer).
func WithServiceOptions(f func(*service.Options)) EnvOption {
	return func(c *envConfig) { c.service = append(c.service, f) }
}

// WithFailures sets Options.Failures: failed logins go to sink.
func WithFailures(sink mailcluster.FailureSink) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Failures = sink })
}

// WithAdmission sets Options.Admit: nodes asking to join are checked by a.
func WithAdmission(a mailcluster.Admission) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Admit = a })
}

// WithClusterControl sets Options.Cluster.
func WithClusterControl(c mailcluster.ClusterControl) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Cluster = c })
}

// WithChecks adds health checks to Options.Checks.
func WithChecks(checks ...mailcluster.HealthCheck) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Checks = append(o.Checks, checks...) })
}

// WithNotifier sets Options.Notify.
func WithNotifier(n mailcluster.Notifier) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Notify = n })
}

// WithClusterLog gives the node's Service a cluster log in a temporary
// file (Options.Events), logging to the node's log, and stores it in *l
// (unless l is nil).
func WithClusterLog(l **clusterlog.File) EnvOption {
	return func(c *envConfig) { c.clusterLog, c.logOut = true, l }
}

// WithQuietLog formats the node's log at level info, as a node does, and
// discards it instead of keeping it in Env.Log.
func WithQuietLog() EnvOption { return func(c *envConfig) { c.quietLog = true } }

// WithRegisterer sets Config.Registerer.
func WithRegisterer(r prometheus.Registerer) EnvOption {
	return func(c *envConfig) { c.registerer = r }
}

// WithMetrics sets Config.Metrics.
func WithMetrics(h http.Handler) EnvOption { return func(c *envConfig) { c.metrics = h } }

// WithTrustedProxies sets Config.TrustedProxies.
func WithTrustedProxies(ps ...string) EnvOption {
	return func(c *envConfig) {
		for _, p := range ps {
			c.trusted = append(c.trusted, netip.MustParsePrefix(p))
		}
	}
}

// WithXMLAPI mounts the handler f returns instead of the fake XML-API.
func WithXMLAPI(f func(*service.Service) http.Handler) EnvOption {
	return func(c *envConfig) { c.xml = f }
}

// WithBodyLimit sets Config.BodyLimit.
func WithBodyLimit(n int64) EnvOption { return func(c *envConfig) { c.bodyLimit = n } }

// WithFaultyStore serves the API from a Service over f(store), the node's
// store with faults injected (the node itself keeps the real one).
func WithFaultyStore(f func(mailcluster.Store) mailcluster.Store) EnvOption {
	return func(c *envConfig) { c.faulty = f }
}

// WithoutXMLAPI leaves Config.XMLAPI nil.
func WithoutXMLAPI() EnvOption { return func(c *envConfig) { c.noXMLAPI = true } }

// WithoutMail leaves Config.Mail nil: the node runs no mail service.
func WithoutMail() EnvOption { return func(c *envConfig) { c.noMail = true } }

// WithoutInternalKey leaves Config.InternalKey empty.
func WithoutInternalKey() EnvOption { return func(c *envConfig) { c.noKey = true } }

type int64Counter struct {
	mu sync.Mutex
	n  int64
}

func (c *int64Counter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }

// Get returns the count.
func (c *int64Counter) Get() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

type stringBox struct {
	mu sync.Mutex
	s  string
}

func (b *stringBox) set(s string) { b.mu.Lock(); b.s = s; b.mu.Unlock() }

// Get returns the value.
func (b *stringBox) Get() string { b.mu.Lock(); defer b.mu.Unlock(); return b.s }

// newEnvConfig applies opts.
func newEnvConfig(opts []EnvOption) envConfig {
	var cfg envConfig
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// logger returns the node's logger: debug lines into logs, or info lines
// formatted and discarded with WithQuietLog.
func (cfg *envConfig) logger(logs *logBuffer) *slog.Logger {
	if cfg.quietLog {
		return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serviceOptions returns base edited by the options of cfg; a cluster log
// asked for is opened in a temporary directory and logs to logs.
func (cfg *envConfig) serviceOptions(tb testing.TB, base service.Options, logs *logBuffer) service.Options {
	tb.Helper()
	if cfg.clusterLog {
		l := clusterlog.NewFile(filepath.Join(tb.TempDir(), "cluster.log"), base.NodeName, slog.New(slog.NewTextHandler(logs, nil)))
		if cfg.logOut != nil {
			*cfg.logOut = l
		}
		base.Events = l
	}
	for _, f := range cfg.service {
		f(&base)
	}
	return base
}

// MustOpenEnv starts a bootstrapped standalone primary "node1".
func MustOpenEnv(tb testing.TB, opts ...EnvOption) *Env {
	tb.Helper()
	cfg := newEnvConfig(opts)
	logs := &logBuffer{}
	logger := cfg.logger(logs)
	store, err := kvstore.OpenBoltStore(filepath.Join(tb.TempDir(), "state.db"), logger)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	svc := service.New(store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}}, logger,
		cfg.serviceOptions(tb, service.Options{BcryptCost: bcrypt.MinCost, NodeName: "node1", SealKey: sealKey}, logs))
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: adminAddress, AdminPassword: adminPassword, DataDir: tb.TempDir()}); err != nil {
		tb.Fatal(err)
	}
	env := &Env{Store: store, Svc: svc, Log: logs, XMLCalls: &int64Counter{}, XMLClientIP: &stringBox{}}
	// The primary applies its own changes to mail directly.
	env.start(tb, svc, "node1", logger, func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
	}, cfg)
	return env
}

// MustOpenPeer starts another node over the same store whose Service asks
// lead for its role (a secondary in the read-only tests).
// Its changes to mail go to the primary's internal API over HTTP.
func MustOpenPeer(tb testing.TB, primary *Env, lead mailcluster.Leadership, opts ...EnvOption) *Env {
	tb.Helper()
	cfg := newEnvConfig(opts)
	logs := &logBuffer{}
	logger := cfg.logger(logs)
	svc := service.New(primary.Store, lead, logger, cfg.serviceOptions(tb,
		service.Options{BcryptCost: bcrypt.MinCost, NodeName: "node2", SealKey: sealKey, Mode: mailcluster.ModeCluster}, logs))
	env := &Env{Store: primary.Store, Svc: svc, Log: logs, XMLCalls: &int64Counter{}, XMLClientIP: &stringBox{}}
	client := &cluster.InternalClient{Signer: &nodeauth.Signer{Key: internalKey, Node: "node2"}}
	env.start(tb, svc, "node2", logger, func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return client.SendUsage(ctx, primary.HTTP.URL, r)
	}, cfg)
	return env
}

func (e *Env) start(tb testing.TB, svc *service.Service, node string, logger *slog.Logger, send cluster.SendFunc, cfg envConfig) {
	tb.Helper()
	asvc := svc
	if cfg.faulty != nil {
		asvc = service.New(cfg.faulty(e.Store), mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}}, logger,
			service.Options{NodeName: "node1"})
	}
	acfg := api.Config{Log: logger, BodyLimit: cfg.bodyLimit, InternalKey: internalKey, TrustedProxies: cfg.trusted,
		Metrics: cfg.metrics, Registerer: cfg.registerer, NodeContext: func(ctx context.Context, node string) context.Context {
			return service.SystemContext(ctx, "node "+node)
		}}
	if cfg.noKey {
		acfg.InternalKey = nil
	}
	if !cfg.noMail {
		e.Outbox = mustRunOutbox(tb, node, send, logger)
		e.Mail = mailstore.NewStore(mustLocal(svc), e.Outbox, logger, mailstore.Options{})
		acfg.Mail = e.Mail
	}
	switch {
	case cfg.xml != nil:
		acfg.XMLAPI = cfg.xml(svc)
	case !cfg.noXMLAPI:
		acfg.XMLAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.XMLCalls.inc()
			e.XMLClientIP.set(mailcluster.ClientIPFromContext(r.Context()))
			if _, err := io.ReadAll(r.Body); err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					return
				}
			}
			w.Header().Set("Content-Type", "application/xml")
			_, _ = io.WriteString(w, `<?xml version="1.0"?><MDaemon><API><Response><Status id="0" value="Success"/></Response></API></MDaemon>`)
		})
	}
	e.Server = api.NewServer(asvc, acfg)
	e.HTTP = httptest.NewServer(e.Server)
	tb.Cleanup(e.HTTP.Close)
	e.Admin = NewClient(tb, e.HTTP.URL).As(adminAddress, adminPassword)
	e.Admin.Secret(hex.EncodeToString(internalKey))
}

// signedHeader returns the signature headers s makes for a request, for
// tests that replay or alter them (the host is not signed).
func signedHeader(tb testing.TB, s *nodeauth.Signer, method, path string, body []byte) http.Header {
	tb.Helper()
	req, err := http.NewRequest(method, "http://node.invalid"+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Sign(req, body); err != nil {
		tb.Fatal(err)
	}
	return req.Header
}

// mustRunOutbox opens an outbox in a temporary directory and runs its
// sender until the test ends.
func mustRunOutbox(tb testing.TB, node string, send cluster.SendFunc, logger *slog.Logger) *cluster.Outbox {
	tb.Helper()
	ob, err := cluster.OpenOutbox(filepath.Join(tb.TempDir(), "outbox.db"), node, send, logger)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(service.SystemContext(context.Background(), "test"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		_ = ob.Close()
	})
	return ob
}

// spec is the parsed OpenAPI document and its router, loaded once.
var spec = sync.OnceValues(func() (*openapi3.T, error) { return openapi.Load() })

// Client is an HTTP client that validates every request it sends and
// every response it receives against openapi.yaml, and fails the test
// when a response leaks a password or a bcrypt hash.
type Client struct {
	base    string
	http    *http.Client
	doc     *openapi3.T
	router  routers.Router
	user    string
	pass    string
	secrets *[]string
}

// NewClient returns an anonymous validating client for the server at base.
func NewClient(tb testing.TB, base string) *Client {
	tb.Helper()
	doc, err := spec()
	if err != nil {
		tb.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatal(err)
	}
	secrets := []string{adminPassword}
	return &Client{base: base, http: &http.Client{}, doc: doc, router: router, secrets: &secrets}
}

// As returns a copy of the client that authenticates as address.
func (c *Client) As(address, password string) *Client {
	cp := *c
	cp.user, cp.pass = address, password
	c.Secret(password)
	return &cp
}

// Anonymous returns a copy of the client without credentials.
func (c *Client) Anonymous() *Client {
	cp := *c
	cp.user, cp.pass = "", ""
	return &cp
}

// Secret adds a text that must never appear in a response. Clients made
// with As share the list.
func (c *Client) Secret(s string) {
	if s != "" {
		*c.secrets = append(*c.secrets, s)
	}
}

// Request is one request for Client.Do.
type Request struct {
	Method      string
	Path        string // with query
	Body        []byte // nil: no body
	ContentType string // default application/json when Body is set
	Accept      string
	// Header is added to the request; an Authorization header here
	// replaces the client's Basic credentials.
	Header http.Header
	// Signed signs the request for the internal API as another node of
	// the cluster (peerSigner), afresh on every send; it replaces the
	// client's Basic credentials.
	Signed bool
	// Chunked sends the body without a Content-Length.
	Chunked bool
	// Invalid marks a request that is deliberately malformed: the spec
	// must reject it too (the test fails if kin-openapi accepts it).
	Invalid bool
}

// Response is a received response with its whole body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem is a decoded problem document.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Primary  string `json:"primary"`
}

// Get sends a GET.
func (c *Client) Get(tb testing.TB, path string) *Response {
	tb.Helper()
	return c.Do(tb, Request{Method: http.MethodGet, Path: path})
}

// Delete sends a DELETE.
func (c *Client) Delete(tb testing.TB, path string) *Response {
	tb.Helper()
	return c.Do(tb, Request{Method: http.MethodDelete, Path: path})
}

// Send sends v as JSON with method.
func (c *Client) Send(tb testing.TB, method, path string, v any) *Response {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return c.Do(tb, Request{Method: method, Path: path, Body: b})
}

// Do sends r and validates the exchange against the spec.
func (c *Client) Do(tb testing.TB, r Request) *Response {
	tb.Helper()
	req := c.newRequest(tb, r)
	c.validateRequest(tb, r, req)

	send := req.Clone(context.Background())
	if r.Body != nil {
		if r.Chunked {
			send.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(r.Body)})
			send.ContentLength = -1
			send.GetBody = nil
		} else {
			send.Body = io.NopCloser(bytes.NewReader(r.Body))
			send.ContentLength = int64(len(r.Body))
		}
	}
	res, err := c.http.Do(send)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", r.Method, r.Path, err)
	}
	out := &Response{Status: res.StatusCode, Header: res.Header, Body: body}
	c.validateResponse(tb, r, req, out)
	return out
}

func (c *Client) newRequest(tb testing.TB, r Request) *http.Request {
	tb.Helper()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, c.base+r.Path, body)
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if r.Body != nil {
		ct := r.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if r.Accept != "" {
		req.Header.Set("Accept", r.Accept)
	}
	if r.Signed {
		if err := peerSigner.Sign(req, r.Body); err != nil {
			tb.Fatal(err)
		}
	}
	if c.user != "" && req.Header.Get("Authorization") == "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	return req
}

// findRoute returns the spec's route for req, nil when the spec has no
// such operation (the server must then answer 404 or 405).
func (c *Client) findRoute(req *http.Request) (*routers.Route, map[string]string) {
	if p := req.URL.Path; strings.EqualFold(strings.TrimSuffix(p, "/"), "/MdMgmtWS") {
		// The server routes the classic spellings to the XML-API's one.
		req.URL.Path, req.URL.RawPath = "/MdMgmtWS", ""
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return nil, nil
	}
	return route, params
}

func (c *Client) validateRequest(tb testing.TB, r Request, req *http.Request) {
	tb.Helper()
	check := req.Clone(context.Background())
	if r.Body != nil {
		check.Body = io.NopCloser(bytes.NewReader(r.Body))
	}
	route, params := c.findRoute(check)
	if route == nil {
		return
	}
	err := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: check, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, SkipSettingDefaults: true},
	})
	switch {
	case r.Invalid && err == nil:
		tb.Errorf("%s %s: request is marked invalid but the spec accepts it", r.Method, r.Path)
	case !r.Invalid && err != nil:
		tb.Errorf("%s %s: request does not match the spec: %v", r.Method, r.Path, err)
	}
}

func (c *Client) validateResponse(tb testing.TB, r Request, req *http.Request, res *Response) {
	tb.Helper()
	where := r.Method + " " + r.Path
	if res.Header.Get("X-Request-Id") == "" {
		tb.Errorf("%s: response has no X-Request-Id", where)
	}
	c.checkSecrets(tb, where, res)

	route, params := c.findRoute(req.Clone(context.Background()))
	if route == nil {
		// No operation in the spec: only Echo's own 404/405 may answer,
		// and still as a documented Problem.
		if res.Status != http.StatusNotFound && res.Status != http.StatusMethodNotAllowed && res.Status != http.StatusUnauthorized {
			tb.Errorf("%s: no such operation in the spec, but status %d", where, res.Status)
		}
		c.validateProblem(tb, where, res)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.Status,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(res.Body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if err != nil {
		tb.Errorf("%s: response %d does not match the spec: %v\nbody: %s", where, res.Status, err, res.Body)
	}
	// An unhealthy node's /health answers 503 with its Health document.
	if res.Status >= 400 && route.Path != "/MdMgmtWS" && !(strings.HasPrefix(route.Path, "/health") && res.Status == http.StatusServiceUnavailable) &&
		r.Method != http.MethodHead {
		c.validateProblem(tb, where, res)
	}
}

// validateProblem checks an error answer against the Problem schema and
// the rules of the type URI and status.
func (c *Client) validateProblem(tb testing.TB, where string, res *Response) {
	tb.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("%s: error Content-Type %q, want application/problem+json", where, ct)
		return
	}
	var v any
	if err := json.Unmarshal(res.Body, &v); err != nil {
		tb.Errorf("%s: problem is not JSON: %v", where, err)
		return
	}
	if err := c.doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
		tb.Errorf("%s: problem does not match the schema: %v", where, err)
	}
	var p Problem
	_ = json.Unmarshal(res.Body, &p)
	if p.Status != res.Status {
		tb.Errorf("%s: problem status %d, HTTP status %d", where, p.Status, res.Status)
	}
}

func (c *Client) checkSecrets(tb testing.TB, where string, res *Response) {
	tb.Helper()
	var all strings.Builder
	all.Write(res.Body)
	for k, vs := range res.Header {
		all.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	text := all.String()
	for _, marker := range []string{"$2a$", "$2b$", "$2y$", "passwordHash", "PasswordHash"} {
		// The spec itself describes the passwordHash request field.
		if strings.Contains(text, marker) && !strings.HasPrefix(where, "GET /openapi.yaml") {
			tb.Errorf("%s: response contains %q: %s", where, marker, res.Body)
		}
	}
	for _, s := range *c.secrets {
		if strings.Contains(text, s) {
			tb.Errorf("%s: response contains a password", where)
		}
	}
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Problem decodes a problem document.
func (r *Response) Problem(tb testing.TB) Problem {
	tb.Helper()
	var p Problem
	r.JSON(tb, &p)
	return p
}

// Expect fails the test unless the status is want.
func (r *Response) Expect(tb testing.TB, want int) *Response {
	tb.Helper()
	if r.Status != want {
		tb.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Body)
	}
	return r
}

// ExpectProblem checks status and problem type suffix ("not-found").
func (r *Response) ExpectProblem(tb testing.TB, status int, kind string) Problem {
	tb.Helper()
	r.Expect(tb, status)
	p := r.Problem(tb)
	if want := api.ProblemTypePrefix + kind; p.Type != want {
		tb.Errorf("problem type %q, want %q (detail %q)", p.Type, want, p.Detail)
	}
	return p
}

// Account is the JSON form of an account in answers.
type Account struct {
	Address       string `json:"address"`
	Domain        string `json:"domain"`
	Mailbox       string `json:"mailbox"`
	FullName      string `json:"fullName"`
	FirstName     string `json:"firstName"`
	LastName      string `json:"lastName"`
	MailboxPath   string `json:"mailboxPath"`
	Frozen        bool   `json:"frozen"`
	Disabled      bool   `json:"disabled"`
	QuotaBytes    int64  `json:"quotaBytes"`
	QuotaMessages int64  `json:"quotaMessages"`
	AdminRights   string `json:"adminRights"`
	Usage         struct {
		Bytes    int64 `json:"bytes"`
		Messages int64 `json:"messages"`
	} `json:"usage"`
}

// Domain is the JSON form of a domain in answers.
type Domain struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	MaxAccounts  int    `json:"maxAccounts"`
	AccountCount int    `json:"accountCount"`
}

// MustCreateDomain creates a domain through the API.
func (c *Client) MustCreateDomain(tb testing.TB, name string) {
	tb.Helper()
	c.Send(tb, http.MethodPost, "/api/v1/domains", map[string]any{"name": name}).Expect(tb, http.StatusCreated)
}

// MustCreateAccount creates an account through the API.
func (c *Client) MustCreateAccount(tb testing.TB, domain string, fields map[string]any) Account {
	tb.Helper()
	if pw, ok := fields["password"].(string); ok {
		c.Secret(pw)
	}
	var a Account
	c.Send(tb, http.MethodPost, "/api/v1/domains/"+domain+"/accounts", fields).Expect(tb, http.StatusCreated).JSON(tb, &a)
	return a
}
