package api

import (
	"bytes"
	"context"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"mailcluster"
	"mailcluster/internal/nodeauth"
)

// indexResponse is the answer of an internal write: the store index at
// which the change is applied.
type indexResponse struct {
	Index uint64 `json:"index"`
}

// internalChallenge is the WWW-Authenticate challenge of the internal API.
const internalChallenge = nodeauth.Scheme + ` realm="mailcluster-internal"`

func registerInternalRoutes(s *Server) {
	s.e.POST("/internal/v1/usage", s.handleInternalUsage, s.authenticateInternal)
	s.e.POST("/internal/v1/screening/failures", s.handleInternalFailures, s.authenticateInternal)
	s.e.GET("/internal/v1/info", s.handleInternalInfo, s.authenticateInternal)
	s.e.GET("/internal/v1/time", s.handleInternalTime, s.authenticateInternal)
	s.e.GET("/internal/v1/log", s.handleInternalLog, s.authenticateInternal)
}

// handleInternalInfo answers GET /internal/v1/info: what this node tells
// the primary about itself when it asks to join.
func (s *Server) handleInternalInfo(c echo.Context) error {
	if s.internalInfo == nil {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "This node answers no admission checks.")
	}
	return c.JSON(http.StatusOK, s.internalInfo())
}

// handleInternalTime answers GET /internal/v1/time, the clock probe.
func (s *Server) handleInternalTime(c echo.Context) error {
	if s.internalTime == nil {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "This node answers no clock probes.")
	}
	return c.JSON(http.StatusOK, s.internalTime())
}

// handleInternalLog answers GET /internal/v1/log: this node's own cluster
// log, for another node's GET /api/v1/cluster/log?node=.
func (s *Server) handleInternalLog(c echo.Context) error {
	q := c.Request().URL.Query()
	q.Del("node")
	c.Request().URL.RawQuery = q.Encode()
	c.SetRequest(c.Request().WithContext(s.nodeContext(c)))
	return s.handleClusterLog(c)
}

// authenticateInternal admits a request signed by another node of the
// cluster (package nodeauth): the signature over method, path, query,
// timestamp, nonce, node and body must match the cluster's key, the
// timestamp must lie within the window and the nonce must be new. The
// body is read (within the body limit) to check its hash and restored for
// the handler. Without a key every request is refused. A refusal is a 401
// with a generic text; the reason goes to the log at warn level. The
// access log names the caller "node:<name>", with "/tls" over HTTPS.
func (s *Server) authenticateInternal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(ctxChallenge, internalChallenge)
		req := c.Request()
		var bodyErr error
		node, err := s.internal.Verify(req, func() ([]byte, error) {
			if req.Body == nil || req.Body == http.NoBody {
				return nil, nil
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				bodyErr = err
				return nil, err
			}
			req.Body = io.NopCloser(bytes.NewReader(b))
			return b, nil
		})
		if err != nil {
			if bodyErr != nil {
				return bodyErr // too large (413) or a broken connection
			}
			s.log.Warn("internal request refused", "reason", err.Error(), "method", req.Method, "path", req.URL.Path,
				"node", req.Header.Get(nodeauth.HeaderNode), "client_ip", c.RealIP())
			return mailcluster.Errorf(mailcluster.EUNAUTHORIZED,
				"Authentication is required: internal requests must be signed by a node of the cluster.")
		}
		caller := "node:" + node
		if req.TLS != nil {
			caller += "/tls"
		}
		c.Set(ctxCaller, caller)
		c.Set(ctxNode, node)
		return next(c)
	}
}

// ctxNode is the echo.Context key of the node that signed an internal
// request.
const ctxNode = "mailcluster.node"

// nodeContext returns the context in which an internal request acts for
// the node that signed it: the Service's caller comes from
// Config.NodeContext (node code); without it the context names no caller
// and the Service refuses the call.
func (s *Server) nodeContext(c echo.Context) context.Context {
	ctx := c.Request().Context()
	node, _ := c.Get(ctxNode).(string)
	if s.nodeCtx == nil || node == "" {
		return ctx
	}
	return s.nodeCtx(ctx, node)
}

// handleInternalUsage answers POST /internal/v1/usage: another node's
// changes to mail, applied exactly once by the primary. The body is the
// JSON form of mailcluster.UsageReport, decoded strictly, so that a
// report with a member this node does not understand stays queued at the
// sender instead of being half applied.
func (s *Server) handleInternalUsage(c echo.Context) error {
	var r mailcluster.UsageReport
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	index, err := s.svc.ApplyUsageReport(s.nodeContext(c), r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, indexResponse{Index: index})
}
