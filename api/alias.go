package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Alias is the JSON form of an alias.
type Alias struct {
	Address   string    `json:"address"`
	Domain    string    `json:"domain"`
	Name      string    `json:"name"`
	Target    string    `json:"target"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// AliasPage is one page of a domain's aliases; NextCursor asks for the
// next one ("" on the last).
type AliasPage struct {
	Aliases    []Alias `json:"aliases"`
	NextCursor string  `json:"nextCursor"`
}

type aliasCreateRequest struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

type aliasUpdateRequest struct {
	Target *string `json:"target"`
}

func newAliasResponse(a *mailcluster.Alias) Alias {
	return Alias{Address: a.Address(), Domain: a.Domain, Name: a.Name, Target: a.Target,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

func aliasLocation(domain, name string) string {
	return domainLocation(domain) + "/aliases/" + url.PathEscape(name)
}

func registerAliasRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/aliases", s.handleAliasList)
	g.add(http.MethodPost, "/domains/:domain/aliases", s.handleAliasCreate)
	g.add(http.MethodGet, "/domains/:domain/aliases/:name", s.handleAliasGet)
	g.add(http.MethodPatch, "/domains/:domain/aliases/:name", s.handleAliasUpdate)
	g.add(http.MethodDelete, "/domains/:domain/aliases/:name", s.handleAliasDelete)
}

// handleAliasList answers GET /api/v1/domains/{domain}/aliases.
func (s *Server) handleAliasList(c echo.Context) error {
	as, next, err := domainPage(c, s.svc.FindAliases, newAliasResponse)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, AliasPage{Aliases: as, NextCursor: next})
}

// handleAliasCreate answers POST /api/v1/domains/{domain}/aliases.
func (s *Server) handleAliasCreate(c echo.Context) error {
	var in aliasCreateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	a, err := s.svc.CreateAlias(c.Request().Context(), pathParam(c, "domain"), in.Name, in.Target)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, aliasLocation(a.Domain, a.Name))
	return c.JSON(http.StatusCreated, newAliasResponse(a))
}

// handleAliasGet answers GET /api/v1/domains/{domain}/aliases/{name}.
func (s *Server) handleAliasGet(c echo.Context) error {
	a, err := s.svc.FindAlias(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newAliasResponse(a))
}

// handleAliasUpdate answers PATCH /api/v1/domains/{domain}/aliases/{name}.
func (s *Server) handleAliasUpdate(c echo.Context) error {
	var in aliasUpdateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Target == nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "Member target is required: the address of the account the alias delivers to.")
	}
	a, err := s.svc.UpdateAlias(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"), *in.Target)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newAliasResponse(a))
}

// handleAliasDelete answers DELETE /api/v1/domains/{domain}/aliases/{name}.
func (s *Server) handleAliasDelete(c echo.Context) error {
	if err := s.svc.DeleteAlias(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
