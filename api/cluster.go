package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// clusterStatusResponse is the JSON form of mailcluster.ClusterStatus.
type clusterStatusResponse struct {
	Mode    string               `json:"mode"`
	Cluster string               `json:"cluster"`
	Primary *primaryRefJSON      `json:"primary"`
	Nodes   []nodeStatusResponse `json:"nodes"`
}

type nodeStatusResponse struct {
	Name         string `json:"name"`
	APIURL       string `json:"apiUrl"`
	Role         string `json:"role"`
	Version      string `json:"version"`
	Healthy      bool   `json:"healthy"`
	Index        uint64 `json:"index"`
	LagMS        int64  `json:"lagMs"`
	Self         bool   `json:"self"`
	NeverPrimary bool   `json:"neverPrimary"`
	Detail       string `json:"detail"`
}

type switchoverRequest struct {
	Target string `json:"target"`
}

type switchoverResponse struct {
	Status string `json:"status"`
	From   string `json:"from"`
	Target string `json:"target"`
}

func registerClusterRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/cluster", s.handleClusterGet)
	g.add(http.MethodPost, "/cluster/switchover", s.handleClusterSwitchover)
}

// handleClusterGet answers GET /api/v1/cluster.
func (s *Server) handleClusterGet(c echo.Context) error {
	st, err := s.svc.ClusterStatus(c.Request().Context())
	if err != nil {
		return err
	}
	out := clusterStatusResponse{Mode: string(st.Mode), Cluster: st.Cluster, Nodes: make([]nodeStatusResponse, 0, len(st.Nodes))}
	if st.Primary != nil {
		out.Primary = &primaryRefJSON{Name: st.Primary.Name, APIURL: st.Primary.APIURL}
	}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, nodeStatusResponse{Name: n.Name, APIURL: n.APIURL, Role: string(n.Role), Version: n.Version,
			Healthy: n.Healthy, Index: n.Index, LagMS: n.LagMS, Self: n.Self, NeverPrimary: n.NeverPrimary, Detail: n.Detail})
	}
	return c.JSON(http.StatusOK, out)
}

// handleClusterSwitchover answers POST /api/v1/cluster/switchover: the
// primary releases its role to the target (or any other node).
func (s *Server) handleClusterSwitchover(c echo.Context) error {
	var in switchoverRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
	}
	from := s.svc.NodeInfo().Name
	if err := s.svc.Switchover(c.Request().Context(), in.Target); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, switchoverResponse{Status: "released", From: from, Target: in.Target})
}
