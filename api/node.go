package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
	"mailcluster/openapi"
	"mailcluster/service"
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
	// Summary comes first: Consul shows the body as the check's output.
	Summary  string          `json:"summary"`
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
	s.e.GET("/health/primary", s.handleHealthPrimary)
	s.e.HEAD("/health/primary", s.handleHealthPrimary)
	s.e.GET("/health/secondary", s.handleHealthSecondary)
	s.e.HEAD("/health/secondary", s.handleHealthSecondary)
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
	out := s.health()
	return s.answerHealth(c, out, out.Status == healthOK)
}

// handleHealthPrimary answers GET/HEAD /health/primary: 200 only on a
// healthy primary (for load balancers that send admin traffic there).
func (s *Server) handleHealthPrimary(c echo.Context) error {
	out := s.health()
	return s.answerHealth(c, out, out.Status == healthOK && out.Role == string(mailcluster.RolePrimary))
}

// DefaultMaxLag is the replication lag /health/secondary accepts unless
// ?max_lag= says otherwise.
const DefaultMaxLag = 5 * time.Second

// handleHealthSecondary answers GET/HEAD /health/secondary: 200 only on a
// healthy secondary whose replication lag is at most ?max_lag= (a Go
// duration such as 500ms or 5s, or seconds; default 5s).
func (s *Server) handleHealthSecondary(c echo.Context) error {
	maxLag := DefaultMaxLag
	if v := c.QueryParam("max_lag"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			secs, ferr := strconv.ParseFloat(v, 64)
			if ferr != nil || secs < 0 {
				return mailcluster.Errorf(mailcluster.EINVALID, "max_lag must be a duration such as 500ms or 5s, or a number of seconds.")
			}
			d = time.Duration(secs * float64(time.Second))
		}
		if d < 0 {
			return mailcluster.Errorf(mailcluster.EINVALID, "max_lag must not be negative.")
		}
		maxLag = d
	}
	out := s.health()
	ok := out.Status == healthOK && out.Role == string(mailcluster.RoleSecondary) && out.LagMS >= 0 &&
		time.Duration(out.LagMS)*time.Millisecond <= maxLag
	return s.answerHealth(c, out, ok)
}

// health describes the node: unhealthy when a component reports a
// problem or the node is pending (it serves no configuration).
func (s *Server) health() healthResponse {
	info := s.nodeInfo()
	n := newNodeResponse(info)
	out := healthResponse{Status: healthOK, Role: n.Role, Name: n.Name, Primary: n.Primary, Index: n.Index, LagMS: n.LagMS,
		Problems: n.Problems}
	if info.Role == mailcluster.RolePending {
		out.Problems = append(out.Problems, "not registered in the cluster yet: an administrator must add it on the primary")
	}
	if len(out.Problems) > 0 {
		out.Status = healthUnhealthy
	}
	lag := "lag unknown"
	if out.LagMS >= 0 {
		lag = fmt.Sprintf("lag %d ms", out.LagMS)
	}
	out.Summary = fmt.Sprintf("%s; %s; %s", out.Role, lag, out.Status)
	if len(out.Problems) > 0 {
		out.Summary += ": " + strings.Join(out.Problems, "; ")
	}
	return out
}

func (s *Server) answerHealth(c echo.Context, out healthResponse, ok bool) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	return c.JSON(code, out)
}

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
	return c.JSON(http.StatusOK, newNodeResponse(s.nodeInfo()))
}

// nodeInfo describes this node. The health endpoints answer without
// credentials, so the question is asked as the anonymous network (which
// may ask it; it cannot fail then).
func (s *Server) nodeInfo() mailcluster.NodeInfo {
	info, _ := s.svc.NodeInfo(service.Anonymous(context.Background()))
	return info
}

func newNodeResponse(info mailcluster.NodeInfo) nodeResponse {
	out := nodeResponse{Name: info.Name, KeyID: info.KeyID, Mode: string(info.Mode), Role: string(info.Role), Version: info.Version, Index: info.Index,
		LagMS: info.LagMS, Problems: append([]string{}, info.Problems...)}
	if info.Primary != nil {
		out.Primary = &primaryRefJSON{Name: info.Primary.Name, APIURL: info.Primary.APIURL}
	}
	return out
}
