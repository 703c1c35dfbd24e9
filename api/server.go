// Package api is the REST/JSON management API of a mailcluster node, served
// with Echo. It is a thin edge over the domain Service: it authenticates
// callers with HTTP Basic (RFC 7617), decodes JSON strictly, calls the
// Service and translates its errors into RFC 9457 problem documents
// (application/problem+json) through one table. The API is described by
// the OpenAPI 3 document of package openapi, served at GET /openapi.yaml.
//
// The server also mounts GET and HEAD /health (200, or 503 while the node
// reports problems), GET /metrics (the Prometheus text exposition format,
// when configured), the internal node-to-node API under /internal/v1/
// (every request signed by a node, see package nodeauth) and, when
// configured, the XML-API handler at POST /MdMgmtWS. Every request carries the client's address
// (the direct peer, or what trusted proxies report in X-Forwarded-For) in
// its context for dynamic screening, the XML-API's included. Raw messages are served as message/rfc822
// (RFC 5322).
//
// Every answer carries Cache-Control: no-store, X-Content-Type-Options:
// nosniff, X-Frame-Options: DENY, a Content-Security-Policy that allows
// nothing, Referrer-Policy: no-referrer and, over TLS, HSTS (RFC 6797). A
// write under /api/v1 whose Origin header names another site is refused
// with 403 before authentication (cross-site request forgery).
package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster/internal/nodeauth"
	"mailcluster/service"
)

// DefaultBodyLimit is the request body limit when Config.BodyLimit is 0.
const DefaultBodyLimit = 1 << 20

// Config holds the optional settings of a Server; the zero value is usable.
type Config struct {
	// Log receives the access log and the errors; nil discards them.
	Log *slog.Logger
	// BodyLimit is the largest request body in bytes; 0 means
	// DefaultBodyLimit (1 MiB). Larger bodies are refused with 413.
	BodyLimit int64
	// XMLAPI, when non-nil, is mounted at POST /MdMgmtWS. Echo does not
	// authenticate it: the handler checks credentials itself. The request
	// id, access log, panic recovery and body limit still apply.
	XMLAPI http.Handler
	// Mail, when non-nil, serves the mailbox routes (messages and usage
	// recount). When nil those routes stay registered but answer 503: the
	// node runs no mail service.
	Mail MailStore
	// InternalKey signs the requests of the internal node-to-node API
	// (/internal/v1/), derived from the cluster secret (see package
	// nodeauth: a request is accepted once, within 30 s of its timestamp).
	// Empty refuses every internal request with 401.
	InternalKey []byte
	// InternalInfo and InternalTime answer GET /internal/v1/info (what a
	// node tells about itself for admission) and /internal/v1/time (its
	// clock, for the primary's probe); nil answers 404.
	InternalInfo func() any
	// NodeContext returns the context in which the internal API acts for
	// the node that signed a request: a system caller of the Service
	// (service.SystemContext), which only node code creates. Nil: every
	// internal write is refused.
	NodeContext  func(ctx context.Context, node string) context.Context
	InternalTime func() any
	// TrustedProxies are the addresses of load balancers or reverse
	// proxies in front of the node. A request from one of them is taken
	// to come from the address it appends to X-Forwarded-For (the nearest
	// address not in these ranges); from anyone else X-Forwarded-For is
	// ignored. Empty (the default) trusts no proxy: the client is the
	// direct peer. Dynamic screening counts and blocks the client address.
	TrustedProxies []netip.Prefix
	// Metrics, when non-nil, answers GET /metrics, without
	// authentication (for example promhttp.HandlerFor with the node's
	// registry); it must expose nothing secret. When nil, GET /metrics
	// answers 404.
	Metrics http.Handler
	// Registerer, when non-nil, receives the request metrics:
	// mailcluster_http_requests_total{route,method,status} and
	// mailcluster_http_request_duration_seconds{route,method}, where
	// route is Echo's route pattern ("/api/v1/domains/:domain") or
	// "unmatched", never the requested URL. nil records no metrics.
	// Servers may share a Registerer (they then share the collectors);
	// NewServer panics when other collectors with those names are
	// registered there already.
	Registerer prometheus.Registerer
}

// Server is the HTTP handler of the management API. It sets no timeouts:
// the caller serves it with an http.Server configured with them.
type Server struct {
	e            *echo.Echo
	svc          *service.Service
	mail         MailStore
	log          *slog.Logger
	bodyLimit    int64
	internal     *nodeauth.Verifier
	metrics      http.Handler
	internalInfo func() any
	nodeCtx      func(ctx context.Context, node string) context.Context
	internalTime func() any
	reqMetrics   *requestMetrics // nil: no request metrics
	xmlapi       bool            // the XML-API is mounted (see classicXMLAPIPath)
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc *service.Service, cfg Config) *Server {
	s := &Server{e: echo.New(), svc: svc, mail: cfg.Mail, log: cfg.Log, bodyLimit: cfg.BodyLimit, internal: nodeauth.NewVerifier(cfg.InternalKey),
		metrics: cfg.Metrics, internalInfo: cfg.InternalInfo, internalTime: cfg.InternalTime, nodeCtx: cfg.NodeContext}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	s.e.HideBanner = true
	s.e.HidePort = true
	s.e.HTTPErrorHandler = s.handleError
	s.e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	if cfg.Registerer != nil {
		s.reqMetrics = newRequestMetrics(cfg.Registerer)
	}
	s.e.Use(s.middleware)

	registerMetaRoutes(s)
	registerInternalRoutes(s)
	if cfg.XMLAPI != nil {
		s.xmlapi = true
		s.e.POST(xmlapiPath, echo.WrapHandler(cfg.XMLAPI))
	}
	// Authentication is route middleware, not group middleware: Echo would
	// otherwise register catch-all routes for the group that turn every
	// 405 under /api/v1 into a 404.
	v1 := routeGroup{g: s.e.Group("/api/v1"), mw: []echo.MiddlewareFunc{s.authenticate}}
	registerNodeRoutes(s, v1)
	registerDomainRoutes(s, v1)
	registerAccountRoutes(s, v1)
	registerAliasRoutes(s, v1)
	registerListRoutes(s, v1)
	registerGroupRoutes(s, v1)
	registerMailRoutes(s, v1)
	registerSettingRoutes(s, v1)
	registerClusterRoutes(s, v1)
	registerScreeningRoutes(s, v1)
	registerCertificateRoutes(s, v1)
	registerDKIMRoutes(s, v1)
	registerQueueRoutes(s, v1)
	if s.reqMetrics != nil {
		s.reqMetrics.learnRoutes(s.e.Routes())
	}
	return s
}

// ipExtractor returns how Echo finds the client's address: the direct
// peer, or with trusted proxies the X-Forwarded-For entry they vouch for.
// Echo's defaults (trusting every loopback, link-local and private
// address as a proxy) are turned off: only the configured ranges count.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	var ranges []echo.TrustOption
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		ranges = append(ranges, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	if len(ranges) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := append([]echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}, ranges...)
	return echo.ExtractIPFromXFFHeader(opts...)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.xmlapi {
		classicXMLAPIPath(r)
	}
	s.e.ServeHTTP(w, r)
}

// Routes returns the routes registered in Echo, with Echo's path syntax
// (":param"), for tests and diagnostics.
func (s *Server) Routes() []*echo.Route { return s.e.Routes() }

// routeGroup registers routes under a prefix with the same middleware.
type routeGroup struct {
	g  *echo.Group
	mw []echo.MiddlewareFunc
}

// add registers h wrapped in the group's middleware, chained once here
// (Echo would chain route middleware anew for every request).
func (r routeGroup) add(method, path string, h echo.HandlerFunc) {
	for i := len(r.mw) - 1; i >= 0; i-- {
		h = r.mw[i](h)
	}
	r.g.Add(method, path, h)
}

// formatBytes renders a byte count for messages ("1 MiB", "512 bytes").
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// xmlapiPath is where the XML-API is mounted.
const xmlapiPath = "/MdMgmtWS"

// classicXMLAPIPath routes the paths classic XML-API clients send (the
// documented /MdMgmtWS/ with its trailing slash, and other case) to the
// XML-API. It runs before Echo routes the request (as Echo's Pre
// middleware would, without its closures per request).
func classicXMLAPIPath(req *http.Request) {
	if p := req.URL.Path; p != xmlapiPath && strings.EqualFold(strings.TrimSuffix(p, "/"), xmlapiPath) {
		req.URL.Path, req.URL.RawPath = xmlapiPath, ""
	}
}
