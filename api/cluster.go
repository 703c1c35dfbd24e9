package api

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// clusterStatusResponse is the JSON form of mailcluster.ClusterStatus.
type clusterStatusResponse struct {
	Mode    string               `json:"mode"`
	Cluster string               `json:"cluster"`
	Primary *primaryRefJSON      `json:"primary"`
	Nodes   []nodeStatusResponse `json:"nodes"`
}

// nodeStatusResponse is the JSON form of mailcluster.NodeStatus; warnings
// is an array, never null.
type nodeStatusResponse struct {
	Name         string   `json:"name"`
	APIURL       string   `json:"apiUrl"`
	Role         string   `json:"role"`
	Version      string   `json:"version"`
	Healthy      bool     `json:"healthy"`
	Registered   bool     `json:"registered"`
	Index        uint64   `json:"index"`
	LagMS        int64    `json:"lagMs"`
	OffsetMS     int64    `json:"offsetMs"`
	Self         bool     `json:"self"`
	NeverPrimary bool     `json:"neverPrimary"`
	Detail       string   `json:"detail"`
	Warnings     []string `json:"warnings"`
}

type switchoverRequest struct {
	Target string `json:"target"`
}

type switchoverResponse struct {
	Status string `json:"status"`
	From   string `json:"from"`
	Target string `json:"target"`
}

// serverResponse is the JSON form of mailcluster.Member (a registered node).
type serverResponse struct {
	Name         string    `json:"name"`
	APIURL       string    `json:"apiUrl"`
	NodeKeyID    string    `json:"nodeKeyId"`
	Version      string    `json:"version"`
	TimeZone     string    `json:"timeZone"`
	RegisteredAt time.Time `json:"registeredAt"`
}

type serverListResponse struct {
	Servers []serverResponse `json:"servers"`
}

// serverRegisterRequest is the body of POST /api/v1/cluster/servers: the
// node's name, or its address (host:port or URL).
type serverRegisterRequest struct {
	Node string `json:"node"`
}

func newServerResponse(sv *mailcluster.Member) serverResponse {
	return serverResponse{Name: sv.Name, APIURL: sv.APIURL, NodeKeyID: sv.NodeKeyID, Version: sv.Version, TimeZone: sv.TimeZone,
		RegisteredAt: sv.RegisteredAt.UTC()}
}

func registerClusterRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/cluster", s.handleClusterGet)
	g.add(http.MethodPost, "/cluster/switchover", s.handleClusterSwitchover)
	g.add(http.MethodGet, "/cluster/servers", s.handleServerList)
	g.add(http.MethodPost, "/cluster/servers", s.handleServerRegister)
	g.add(http.MethodDelete, "/cluster/servers/:name", s.handleServerRemove)
	g.add(http.MethodGet, "/cluster/log", s.handleClusterLog)
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
			Healthy: n.Healthy, Registered: n.Registered, Index: n.Index, LagMS: n.LagMS, OffsetMS: n.OffsetMS, Self: n.Self,
			NeverPrimary: n.NeverPrimary, Detail: n.Detail, Warnings: append([]string{}, n.Warnings...)})
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
	from := s.nodeInfo().Name
	if err := s.svc.Switchover(c.Request().Context(), in.Target); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, switchoverResponse{Status: "released", From: from, Target: in.Target})
}

// handleServerList answers GET /api/v1/cluster/servers with the
// registered servers, sorted by name.
func (s *Server) handleServerList(c echo.Context) error {
	svs, err := s.svc.Members(c.Request().Context())
	if err != nil {
		return err
	}
	out := serverListResponse{Servers: make([]serverResponse, 0, len(svs))}
	for i := range svs {
		out.Servers = append(out.Servers, newServerResponse(&svs[i]))
	}
	slices.SortFunc(out.Servers, func(a, b serverResponse) int { return cmp.Compare(a.Name, b.Name) })
	return c.JSON(http.StatusOK, out)
}

// handleServerRegister answers POST /api/v1/cluster/servers: the node is
// found by name or address and checked before it is registered; a refusal
// is 400 with the reason.
func (s *Server) handleServerRegister(c echo.Context) error {
	var in serverRegisterRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	sv, err := s.svc.AddMember(c.Request().Context(), in.Node)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/cluster/servers/"+url.PathEscape(sv.Name))
	return c.JSON(http.StatusCreated, newServerResponse(sv))
}

// handleServerRemove answers DELETE /api/v1/cluster/servers/{name}: the
// node is unregistered and goes back to pending.
func (s *Server) handleServerRemove(c echo.Context) error {
	if err := s.svc.RemoveMember(c.Request().Context(), pathParam(c, "name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
