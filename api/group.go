package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Group is the JSON form of a group.
type Group struct {
	Domain        string    `json:"domain"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	QuotaBytes    int64     `json:"quotaBytes"`
	QuotaMessages int64     `json:"quotaMessages"`
	MemberCount   int       `json:"memberCount"`
	Deleting      bool      `json:"deleting,omitempty"` // set while its members are being removed
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// GroupPage is one page of a domain's groups.
type GroupPage struct {
	Groups     []Group `json:"groups"`
	NextCursor string  `json:"nextCursor"`
}

// GroupMemberPage is one page of a group's members (full addresses).
type GroupMemberPage struct {
	Members    []string `json:"members"`
	NextCursor string   `json:"nextCursor"`
}

type groupCreateRequest struct {
	Name          string   `json:"name"`
	Description   string   `json:"description"`
	QuotaBytes    int64    `json:"quotaBytes"`
	QuotaMessages int64    `json:"quotaMessages"`
	Members       []string `json:"members"`
}

type groupUpdateRequest struct {
	Description   *string  `json:"description"`
	QuotaBytes    *int64   `json:"quotaBytes"`
	QuotaMessages *int64   `json:"quotaMessages"`
	AddMembers    []string `json:"addMembers"`
	RemoveMembers []string `json:"removeMembers"`
}

func newGroupResponse(g *mailcluster.Group) Group {
	return Group{Domain: g.Domain, Name: g.Name, Description: g.Description, QuotaBytes: g.QuotaBytes,
		QuotaMessages: g.QuotaMessages, MemberCount: g.MemberCount, Deleting: g.Deleting,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

func groupLocation(domain, name string) string {
	return domainLocation(domain) + "/groups/" + url.PathEscape(name)
}

func registerGroupRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/groups", s.handleGroupList)
	g.add(http.MethodPost, "/domains/:domain/groups", s.handleGroupCreate)
	g.add(http.MethodGet, "/domains/:domain/groups/:name", s.handleGroupGet)
	g.add(http.MethodPatch, "/domains/:domain/groups/:name", s.handleGroupUpdate)
	g.add(http.MethodDelete, "/domains/:domain/groups/:name", s.handleGroupDelete)
	g.add(http.MethodGet, "/domains/:domain/groups/:name/members", s.handleGroupMembers)
}

// handleGroupList answers GET /api/v1/domains/{domain}/groups.
func (s *Server) handleGroupList(c echo.Context) error {
	gs, next, err := domainPage(c, s.svc.FindGroups, newGroupResponse)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, GroupPage{Groups: gs, NextCursor: next})
}

// handleGroupCreate answers POST /api/v1/domains/{domain}/groups.
func (s *Server) handleGroupCreate(c echo.Context) error {
	var in groupCreateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	g, err := s.svc.CreateGroup(c.Request().Context(), mailcluster.GroupCreate{Domain: pathParam(c, "domain"),
		Name: in.Name, Description: in.Description, QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages,
		Members: in.Members})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, groupLocation(g.Domain, g.Name))
	return c.JSON(http.StatusCreated, newGroupResponse(g))
}

// handleGroupGet answers GET /api/v1/domains/{domain}/groups/{name}.
func (s *Server) handleGroupGet(c echo.Context) error {
	g, err := s.svc.FindGroup(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newGroupResponse(g))
}

// handleGroupUpdate answers PATCH /api/v1/domains/{domain}/groups/{name}.
func (s *Server) handleGroupUpdate(c echo.Context) error {
	var in groupUpdateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	g, err := s.svc.UpdateGroup(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"),
		mailcluster.GroupUpdate{Description: in.Description, QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages,
			AddMembers: in.AddMembers, RemoveMembers: in.RemoveMembers})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newGroupResponse(g))
}

// handleGroupDelete answers DELETE /api/v1/domains/{domain}/groups/{name}.
func (s *Server) handleGroupDelete(c echo.Context) error {
	if err := s.svc.DeleteGroup(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleGroupMembers answers GET /api/v1/domains/{domain}/groups/{name}/members.
func (s *Server) handleGroupMembers(c echo.Context) error {
	ms, next, err := memberPage(c, s.svc.FindGroupMembers, func(address string) string { return address })
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, GroupMemberPage{Members: ms, NextCursor: next})
}
