package api

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
	"mailcluster/internal/csrf"
	"mailcluster/service"
)

// Keys of values kept in the Echo context. The request id, the client's
// address and an account caller are not among them: they live in the
// answer's header and the request's context (see requestIDOf, clientIP,
// authenticate), so that a read allocates no map of Echo values.
const (
	ctxCaller    = "mailcluster.caller"    // a node calling the internal API
	ctxChallenge = "mailcluster.challenge" // the WWW-Authenticate of a 401; default basicChallenge
)

// basicChallenge is the WWW-Authenticate challenge of the management API.
const basicChallenge = `Basic realm="mailcluster"`

// saneRequestID reports whether a client's X-Request-Id may be kept: 1 to
// 128 characters of A-Z a-z 0-9 . _ : -.
func saneRequestID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits as 32 hex digits. The bits come
// from the runtime's generator (ChaCha8, seeded by the system), not
// crypto/rand: a request id must be unique, it is no secret.
func newRequestID() string {
	var b [32]byte
	const digits = "0123456789abcdef"
	for i, v := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for j := range 16 {
			b[i*16+j] = digits[v>>(60-4*j)&0xf]
		}
	}
	return string(b[:])
}

// securityHeaderValues are set on every answer (see securityHeaders).
// They are the ones Echo's Secure middleware would set (without the
// obsolete X-XSS-Protection), written here because its package would pull
// in dependencies the server does not use.
var securityHeaderValues = [][2]string{
	{echo.HeaderCacheControl, "no-store"},
	{echo.HeaderXContentTypeOptions, "nosniff"},
	{echo.HeaderXFrameOptions, "DENY"},
	{echo.HeaderContentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'"},
	{echo.HeaderReferrerPolicy, "no-referrer"},
}

func init() {
	for _, kv := range securityHeaderValues {
		if http.CanonicalHeaderKey(kv[0]) != kv[0] {
			panic("api: security header " + kv[0] + " is not in canonical form")
		}
	}
}

// hsts is the Strict-Transport-Security of answers over TLS (one year).
const hsts = "max-age=31536000"

// securityHeaders puts the security headers on every answer, errors,
// 404, 405, the XML-API, health and metrics included: nothing the server
// answers may be cached (every answer is data of one request), sniffed
// as another type, framed or sent a referrer. An answer over TLS also
// carries HSTS; the scheme a client claims in X-Forwarded-Proto does not
// count. It runs first, so that the headers are set before any handler or
// the error handler writes.
func securityHeaders(c echo.Context, vals []string) {
	h := c.Response().Header()
	// Each header gets its own one-element slice of vals, capped, so that
	// an Add to one header never writes into the next. The keys are
	// canonical (init).
	for i, kv := range securityHeaderValues {
		vals[i] = kv[1]
		h[kv[0]] = vals[i : i+1 : i+1]
	}
	if c.Request().TLS != nil {
		h.Set(echo.HeaderStrictTransportSecurity, hsts)
	}
}

// refuseCrossSite refuses a write under /api/v1 (POST, PUT, PATCH,
// DELETE) whose Origin header names another site than the server's own
// (see csrf.SameOrigin) with 403, before authentication runs: a browser
// could otherwise be made to send it with cached credentials.
func (s *Server) refuseCrossSite(c echo.Context) error {
	req := c.Request()
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return nil
	}
	if req.URL.Path != "/api/v1" && !strings.HasPrefix(req.URL.Path, "/api/v1/") {
		return nil
	}
	if !csrf.SameOrigin(req) {
		s.log.Info("cross-site request refused", "method", req.Method, "path", req.URL.Path,
			"remote", req.RemoteAddr, "request_id", requestIDOf(c))
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Requests from other sites (Origin) are not accepted.")
	}
	return nil
}

// requestID keeps a sane X-Request-Id of the client or makes a new one,
// and echoes it in the response.
func requestID(c echo.Context, val []string) {
	rid := c.Request().Header.Get(echo.HeaderXRequestID)
	if !saneRequestID(rid) {
		rid = newRequestID()
	}
	val[0] = rid
	c.Response().Header()[echo.HeaderXRequestID] = val
}

// requestIDOf returns the request id requestID gave the request.
func requestIDOf(c echo.Context) string {
	if v := c.Response().Header()[echo.HeaderXRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// clientIP puts the client's address, as Echo's IPExtractor finds it (see
// Config.TrustedProxies), into the request context, where the Service
// reads it to refuse blocked addresses and to count failed logins. It
// runs before authentication and before the XML-API handler.
func clientIP(c echo.Context) {
	if ip, err := mailcluster.NormalizeIP(c.RealIP()); err == nil {
		req := c.Request()
		c.SetRequest(req.WithContext(mailcluster.NewContextWithClientIP(req.Context(), ip)))
	}
}

// middleware runs around every request, routed or not, in this order:
// securityHeaders, requestID, clientIP; then the handler under recover,
// after limitBody and refuseCrossSite; an error goes to the error
// handler; then the access log line (accessLog) and the request metrics
// (see Config.Registerer). It is one function rather than a middleware
// per step because Echo chains its middleware anew for every request,
// one allocation per step.
func (s *Server) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// One allocation holds the values of the headers every answer gets.
		n := len(securityHeaderValues)
		vals := make([]string, n+1)
		securityHeaders(c, vals[:n:n])
		requestID(c, vals[n:])
		clientIP(c)
		start := time.Now()
		if err := s.guard(c, next); err != nil {
			c.Error(err)
		}
		d := time.Since(start)
		s.accessLog(c, d)
		if s.reqMetrics != nil {
			s.reqMetrics.observe(c.Path(), c.Request().Method, c.Response().Status, d)
		}
		return nil
	}
}

// guard runs next after limitBody and refuseCrossSite, turning a panic
// into an internal error (logged with its stack).
func (s *Server) guard(c echo.Context, next echo.HandlerFunc) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			panic(r)
		}
		s.log.Error("panic in handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()),
			"request_id", requestIDOf(c))
		err = &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "panic", Err: fmt.Errorf("api: panic: %v", r)}
	}()
	if err := s.limitBody(c); err != nil {
		return err
	}
	if err := s.refuseCrossSite(c); err != nil {
		return err
	}
	return next(c)
}

// routeUnmatched is the route label of a request that matched no route.
const routeUnmatched = "unmatched"

// requestMetrics are the collectors of the request metrics. Their labels
// are bounded: route is a registered route pattern or routeUnmatched,
// method one of the standard methods or "other".
type requestMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	routes   map[string]bool // registered route patterns; written before serving
	children sync.Map        // metricKey -> *metricChildren
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	return &requestMetrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailcluster", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "status"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mailcluster", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time taken to answer HTTP requests, by route pattern and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"})),
		routes: map[string]bool{},
	}
}

// learnRoutes records the route patterns that may appear as labels.
func (m *requestMetrics) learnRoutes(rs []*echo.Route) {
	for _, r := range rs {
		m.routes[r.Path] = true
	}
}

func (m *requestMetrics) observe(path, method string, status int, d time.Duration) {
	route := path
	if !m.routes[route] {
		// Echo reports some path of its tree for a request it could not
		// route; only registered patterns become labels.
		route = routeUnmatched
	}
	k := metricKey{route: route, method: methodLabel(method), status: status}
	ch, ok := m.children.Load(k)
	if !ok {
		ch, _ = m.children.LoadOrStore(k, &metricChildren{
			requests: m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(k.route, k.method)})
	}
	c := ch.(*metricChildren)
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}

// metricKey names the collectors' children of one kind of request; the
// labels are bounded (see requestMetrics), so are the keys.
type metricKey struct {
	route, method string
	status        int
}

// metricChildren are the collectors' children of one metricKey, resolved
// once instead of by label values on every request.
type metricChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// methodLabel keeps the standard methods and folds any other into "other".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// register registers c with reg, or returns the equal collector that is
// registered there already (several Servers may share a registry). It
// panics on any other conflict, as prometheus.MustRegister does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(fmt.Errorf("api: register metrics: %w", err))
	}
	return c
}

// accessLog writes one line per request after the error handler has
// answered, d after the request came, at the level accessLevel gives. It
// logs neither headers (Authorization) nor bodies.
func (s *Server) accessLog(c echo.Context, d time.Duration) {
	req, res := c.Request(), c.Response()
	ctx := req.Context()
	level := accessLevel(req, res.Status)
	if !s.log.Enabled(ctx, level) {
		return
	}
	rid := requestIDOf(c)
	var buf [9]slog.Attr
	attrs := append(buf[:0],
		slog.String("method", req.Method),
		slog.String("path", req.URL.Path),
		slog.Int("status", res.Status),
		slog.Duration("duration", d),
		slog.Int64("bytes", res.Size),
		slog.String("request_id", rid),
		slog.String("remote", req.RemoteAddr))
	if ip := mailcluster.ClientIPFromContext(ctx); ip != "" {
		attrs = append(attrs, slog.String("client", ip))
	}
	if a := service.CallerFromContext(ctx); a != nil {
		attrs = append(attrs, slog.String("caller", a.Address()))
	} else if node, ok := c.Get(ctxCaller).(string); ok {
		attrs = append(attrs, slog.String("caller", node))
	}
	s.log.LogAttrs(ctx, level, "http request", attrs...)
}

// accessLevel is the level of a request's access line: Info for a
// request that may change something (POST, PUT, PATCH, DELETE), for any
// answer of 400 or more (failed logins, refusals, errors) and for every
// request of another node (the internal API: few, and the log tells who
// called and whether over TLS); Debug for a successful read (GET, HEAD,
// OPTIONS), which is most of the traffic of monitoring and provisioning
// scripts, as Consul logs its HTTP requests. An XML-API request (always a
// POST) logs its outcome itself, writes at Info and reads at Debug, so its
// access line is at Debug unless it failed at the HTTP level.
func accessLevel(req *http.Request, status int) slog.Level {
	switch {
	case status >= http.StatusBadRequest, strings.HasPrefix(req.URL.Path, "/internal/"):
		return slog.LevelInfo
	case req.Method == http.MethodGet, req.Method == http.MethodHead, req.Method == http.MethodOptions:
		return slog.LevelDebug
	case req.URL.Path == xmlapiPath:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// limitBody refuses a declared Content-Length over the limit at once and
// cuts any other body at the limit (reads then fail with
// *http.MaxBytesError, which becomes 413).
func (s *Server) limitBody(c echo.Context) error {
	req := c.Request()
	if req.URL.Path == xmlapiPath {
		return nil // the XML-API limits its body itself and answers in XML
	}
	if req.ContentLength > s.bodyLimit {
		return mailcluster.Errorf(mailcluster.ETOOLARGE, "%s", tooLargeDetail(s.bodyLimit))
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = http.MaxBytesReader(c.Response(), req.Body, s.bodyLimit)
	}
	return nil
}

// authenticate checks HTTP Basic credentials with the Service and puts the
// caller into the request context for the Service's authorization. The
// Service refuses a client address blocked by dynamic screening (403,
// whatever the credentials) and counts failed logins.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		address, password, ok := req.BasicAuth()
		if !ok {
			return mailcluster.Errorf(mailcluster.EUNAUTHORIZED,
				"Authentication is required: use HTTP Basic with an administrator's full address and password.")
		}
		caller, err := s.svc.Authenticate(service.Anonymous(req.Context()), address, password)
		if err != nil {
			return err
		}
		c.SetRequest(req.WithContext(service.NewContextWithCaller(req.Context(), caller)))
		return next(c)
	}
}
