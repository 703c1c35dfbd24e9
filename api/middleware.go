package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
	"mailcluster/internal/csrf"
	"mailcluster/service"
)

// Keys of values kept in the Echo context.
const (
	ctxRequestID = "mailcluster.request_id"
	ctxCaller    = "mailcluster.caller"
	ctxChallenge = "mailcluster.challenge" // the WWW-Authenticate of a 401; default basicChallenge
	ctxClientIP  = "mailcluster.client_ip" // the client's address (see clientIP)
)

// basicChallenge is the WWW-Authenticate challenge of the management API.
const basicChallenge = `Basic realm="mailcluster"`

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

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

// hsts is the Strict-Transport-Security of answers over TLS (one year).
const hsts = "max-age=31536000"

// securityHeaders puts the security headers on every answer, errors,
// 404, 405, the XML-API, health and metrics included: nothing the server
// answers may be cached (every answer is data of one request), sniffed
// as another type, framed or sent a referrer. An answer over TLS also
// carries HSTS; the scheme a client claims in X-Forwarded-Proto does not
// count. It runs first, so that the headers are set before any handler or
// the error handler writes.
func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		for _, kv := range securityHeaderValues {
			h.Set(kv[0], kv[1])
		}
		if c.Request().TLS != nil {
			h.Set(echo.HeaderStrictTransportSecurity, hsts)
		}
		return next(c)
	}
}

// refuseCrossSite refuses a write under /api/v1 (POST, PUT, PATCH,
// DELETE) whose Origin header names another site than the server's own
// (see csrf.SameOrigin) with 403, before authentication runs: a browser
// could otherwise be made to send it with cached credentials.
func (s *Server) refuseCrossSite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return next(c)
		}
		if req.URL.Path != "/api/v1" && !strings.HasPrefix(req.URL.Path, "/api/v1/") {
			return next(c)
		}
		if !csrf.SameOrigin(req) {
			s.log.Info("cross-site request refused", "method", req.Method, "path", req.URL.Path,
				"remote", req.RemoteAddr, "request_id", c.Get(ctxRequestID))
			return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Requests from other sites (Origin) are not accepted.")
		}
		return next(c)
	}
}

// requestID keeps a sane X-Request-Id of the client or makes a new one,
// and echoes it in the response.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !reRequestID.MatchString(rid) {
			var b [16]byte
			_, _ = rand.Read(b[:])
			rid = hex.EncodeToString(b[:])
		}
		c.Set(ctxRequestID, rid)
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

// clientIP puts the client's address, as Echo's IPExtractor finds it (see
// Config.TrustedProxies), into the request context, where the Service
// reads it to refuse blocked addresses and to count failed logins. It
// runs before authentication and before the XML-API handler.
func (s *Server) clientIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ip, err := mailcluster.NormalizeIP(c.RealIP()); err == nil {
			c.Set(ctxClientIP, ip)
			req := c.Request()
			c.SetRequest(req.WithContext(mailcluster.NewContextWithClientIP(req.Context(), ip)))
		}
		return next(c)
	}
}

// observe counts every request and its duration by route pattern,
// method and status (see Config.Registerer), once the error handler has
// answered. Without a Registerer it is a no-op.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	if s.reqMetrics == nil {
		return next
	}
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		s.reqMetrics.observe(c.Path(), c.Request().Method, c.Response().Status, time.Since(start))
		return nil
	}
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
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
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
// answered. It logs neither headers (Authorization) nor bodies.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		attrs := []any{
			"method", req.Method,
			"path", req.URL.Path,
			"status", res.Status,
			"duration", time.Since(start),
			"bytes", res.Size,
			"request_id", c.Get(ctxRequestID),
			"remote", req.RemoteAddr,
		}
		if ip, ok := c.Get(ctxClientIP).(string); ok {
			attrs = append(attrs, "client", ip)
		}
		if a, ok := c.Get(ctxCaller).(string); ok {
			attrs = append(attrs, "caller", a)
		}
		s.log.Info("http request", attrs...)
		return nil
	}
}

// recover turns a panic into an internal error (logged with its stack).
func (s *Server) recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic in handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()),
				"request_id", c.Get(ctxRequestID))
			err = &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "panic", Err: fmt.Errorf("api: panic: %v", r)}
		}()
		return next(c)
	}
}

// limitBody refuses a declared Content-Length over the limit at once and
// cuts any other body at the limit (reads then fail with
// *http.MaxBytesError, which becomes 413).
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.URL.Path == xmlapiPath {
			return next(c) // the XML-API limits its body itself and answers in XML
		}
		if req.ContentLength > s.bodyLimit {
			return mailcluster.Errorf(mailcluster.ETOOLARGE, "%s", tooLargeDetail(s.bodyLimit))
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, s.bodyLimit)
		}
		return next(c)
	}
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
		c.Set(ctxCaller, caller.Address())
		c.SetRequest(req.WithContext(service.NewContextWithCaller(req.Context(), caller)))
		return next(c)
	}
}
