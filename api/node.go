package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"mailcluster"
	"mailcluster/openapi"
)

// nodeResponse is the JSON form of mailcluster.NodeInfo.
type nodeResponse struct {
	Name    string          `json:"name"`
	KeyID   string          `json:"keyId,omitempty"` // a hash of the node key
	Mode    string          `json:"mode"`
	Role    string          `json:"role"`
	Version string          `json:"version"`
	Primary *primaryRefJSON `json:"primary,omitempty"`
	Index   uint64          `json:"index"`
	LagMS   int64           `json:"lagMs"`
	// Problems says what makes the node unhealthy; empty when healthy.
	Problems []string `json:"problems"`
}

type primaryRefJSON struct {
	Name   string `json:"name"`
	APIURL string `json:"apiUrl"`
}

// Values of healthResponse.Status.
const (
	healthOK        = "ok"
	healthUnhealthy = "unhealthy"
)

// healthResponse is the answer of GET /health.
type healthResponse struct {
	Status   string          `json:"status"`
	Role     string          `json:"role"`
	Name     string          `json:"name"`
	Primary  *primaryRefJSON `json:"primary,omitempty"`
	Index    uint64          `json:"index"`
	LagMS    int64           `json:"lagMs"`
	Problems []string        `json:"problems"`
}

func registerMetaRoutes(s *Server) {
	s.e.GET("/health", s.handleHealth)
	s.e.HEAD("/health", s.handleHealth)
	s.e.GET("/openapi.yaml", s.handleOpenAPI)
	// The route exists with or without a metrics handler, so that the
	// served routes always match the spec; without one it answers 404.
	s.e.GET("/metrics", s.handleMetrics)
}

func registerNodeRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/node", s.handleNodeGet)
}

// handleHealth answers GET and HEAD /health without authentication: 200
// with status "ok" while the node has no problems, else 503 with status
// "unhealthy" and the problems (the same body), so that a load balancer
// or a Consul HTTP check needs only the status code.
func (s *Server) handleHealth(c echo.Context) error {
	n := newNodeResponse(s.svc.NodeInfo())
	out := healthResponse{Status: healthOK, Role: n.Role, Name: n.Name, Primary: n.Primary, Index: n.Index, LagMS: n.LagMS,
		Problems: n.Problems}
	code := http.StatusOK
	if len(n.Problems) > 0 {
		out.Status, code = healthUnhealthy, http.StatusServiceUnavailable
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(code, out)
}

// handleMetrics answers GET /metrics without authentication with
// Config.Metrics, or 404 when the node serves no metrics.
func (s *Server) handleMetrics(c echo.Context) error {
	if s.metrics == nil {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "This node serves no metrics.")
	}
	s.metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

// handleOpenAPI answers GET /openapi.yaml without authentication.
func (s *Server) handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openapi.Spec)
}

// handleNodeGet answers GET /api/v1/node.
func (s *Server) handleNodeGet(c echo.Context) error {
	return c.JSON(http.StatusOK, newNodeResponse(s.svc.NodeInfo()))
}

func newNodeResponse(info mailcluster.NodeInfo) nodeResponse {
	out := nodeResponse{Name: info.Name, KeyID: info.KeyID, Mode: string(info.Mode), Role: string(info.Role), Version: info.Version, Index: info.Index,
		LagMS: info.LagMS, Problems: append([]string{}, info.Problems...)}
	if info.Primary != nil {
		out.Primary = &primaryRefJSON{Name: info.Primary.Name, APIURL: info.Primary.APIURL}
	}
	return out
}
