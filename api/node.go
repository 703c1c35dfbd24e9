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
	Mode    string          `json:"mode"`
	Role    string          `json:"role"`
	Version string          `json:"version"`
	Primary *primaryRefJSON `json:"primary,omitempty"`
	Index   uint64          `json:"index"`
	LagMS   int64           `json:"lagMs"`
}

type primaryRefJSON struct {
	Name   string `json:"name"`
	APIURL string `json:"apiUrl"`
}

// healthResponse is the answer of GET /health.
type healthResponse struct {
	Status  string          `json:"status"`
	Role    string          `json:"role"`
	Name    string          `json:"name"`
	Primary *primaryRefJSON `json:"primary,omitempty"`
	Index   uint64          `json:"index"`
	LagMS   int64           `json:"lagMs"`
}

func registerMetaRoutes(s *Server) {
	s.e.GET("/health", s.handleHealth)
	s.e.GET("/openapi.yaml", s.handleOpenAPI)
}

func registerNodeRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/node", s.handleNodeGet)
}

// handleHealth answers GET /health without authentication.
func (s *Server) handleHealth(c echo.Context) error {
	info := s.svc.NodeInfo()
	n := newNodeResponse(info)
	return c.JSON(http.StatusOK, healthResponse{Status: "ok", Role: n.Role, Name: n.Name, Primary: n.Primary, Index: n.Index, LagMS: n.LagMS})
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
	out := nodeResponse{Name: info.Name, Mode: string(info.Mode), Role: string(info.Role), Version: info.Version, Index: info.Index, LagMS: info.LagMS}
	if info.Primary != nil {
		out.Primary = &primaryRefJSON{Name: info.Primary.Name, APIURL: info.Primary.APIURL}
	}
	return out
}
