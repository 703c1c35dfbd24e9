// Package api is the REST/JSON management API of a mailcluster node, served
// with Echo. It is a thin edge over the domain Service: it authenticates
// callers with HTTP Basic (RFC 7617), decodes JSON strictly, calls the
// Service and translates its errors into RFC 9457 problem documents
// (application/problem+json) through one table. The API is described by
// the OpenAPI 3 document of package openapi, served at GET /openapi.yaml.
//
// The server also mounts GET /health, the internal node-to-node API under
// /internal/v1/ (bearer token, RFC 6750) and, when configured, the XML-API
// handler at POST /MdMgmtWS. Raw messages are served as message/rfc822
// (RFC 5322).
package api

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
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
	// InternalToken is the bearer token of the internal node-to-node API
	// (/internal/v1/), derived from the cluster secret (see
	// cluster.InternalToken). Empty refuses every internal request with 401.
	InternalToken string
}

// Server is the HTTP handler of the management API. It sets no timeouts:
// the caller serves it with an http.Server configured with them.
type Server struct {
	e             *echo.Echo
	svc           Service
	mail          MailStore
	log           *slog.Logger
	bodyLimit     int64
	internalToken string
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc Service, cfg Config) *Server {
	s := &Server{e: echo.New(), svc: svc, mail: cfg.Mail, log: cfg.Log, bodyLimit: cfg.BodyLimit, internalToken: cfg.InternalToken}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	s.e.HideBanner = true
	s.e.HidePort = true
	s.e.HTTPErrorHandler = s.handleError
	s.e.Use(s.requestID, s.accessLog, s.recover, s.limitBody)

	registerMetaRoutes(s)
	registerInternalRoutes(s)
	if cfg.XMLAPI != nil {
		s.e.POST("/MdMgmtWS", echo.WrapHandler(cfg.XMLAPI))
	}
	// Authentication is route middleware, not group middleware: Echo would
	// otherwise register catch-all routes for the group that turn every
	// 405 under /api/v1 into a 404.
	v1 := routeGroup{g: s.e.Group("/api/v1"), mw: []echo.MiddlewareFunc{s.authenticate}}
	registerNodeRoutes(s, v1)
	registerDomainRoutes(s, v1)
	registerAccountRoutes(s, v1)
	registerMailRoutes(s, v1)
	registerSettingRoutes(s, v1)
	registerClusterRoutes(s, v1)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// Routes returns the routes registered in Echo, with Echo's path syntax
// (":param"), for tests and diagnostics.
func (s *Server) Routes() []*echo.Route { return s.e.Routes() }

// routeGroup registers routes under a prefix with the same middleware.
type routeGroup struct {
	g  *echo.Group
	mw []echo.MiddlewareFunc
}

func (r routeGroup) add(method, path string, h echo.HandlerFunc) { r.g.Add(method, path, h, r.mw...) }

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
