package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// indexResponse is the answer of an internal write: the store index at
// which the change is applied.
type indexResponse struct {
	Index uint64 `json:"index"`
}

// internalChallenge is the WWW-Authenticate challenge of the internal API.
const internalChallenge = `Bearer realm="mailcluster-internal"`

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
	return s.handleClusterLog(c)
}

// authenticateInternal admits a request that carries the internal bearer
// token (RFC 6750); it compares in constant time. Without a configured
// token every request is refused.
func (s *Server) authenticateInternal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(ctxChallenge, internalChallenge)
		token, ok := bearerToken(c.Request())
		if !ok || s.internalToken == "" || !equalSecret(token, s.internalToken) {
			return mailcluster.Errorf(mailcluster.EUNAUTHORIZED,
				"Authentication is required: use the cluster's internal bearer token.")
		}
		c.Set(ctxCaller, "internal")
		return next(c)
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// equalSecret compares two secrets in constant time, also hiding their
// lengths (it compares their SHA-256 digests).
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
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
	index, err := s.svc.ApplyUsageReport(c.Request().Context(), r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, indexResponse{Index: index})
}
