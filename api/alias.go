package api

import (
	"net/http"
	"net/url"
	"strconv"
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

// maxMemberCursorLen bounds the cursor of member pages, whose entries are
// full addresses.
const maxMemberCursorLen = 320

// pageQuery reads the limit (1-1000; 0 when absent: the service's
// default) and cursor query parameters of a paged read.
func pageQuery(c echo.Context, maxCursor int) (cursor string, limit int, err error) {
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter limit must be a number from 1 to 1000.")
		}
		limit = n
	}
	cursor = c.QueryParam("cursor")
	if len(cursor) > maxCursor {
		return "", 0, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter cursor is longer than %d characters.", maxCursor)
	}
	return cursor, limit, nil
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
	cursor, limit, err := pageQuery(c, maxCursorLen)
	if err != nil {
		return err
	}
	as, next, err := s.svc.FindAliases(c.Request().Context(), pathParam(c, "domain"), cursor, limit)
	if err != nil {
		return err
	}
	out := AliasPage{Aliases: make([]Alias, 0, len(as)), NextCursor: next}
	for _, a := range as {
		out.Aliases = append(out.Aliases, newAliasResponse(a))
	}
	return c.JSON(http.StatusOK, out)
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
