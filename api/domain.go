package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Domain is the JSON form of a domain.
type Domain struct {
	Name         string          `json:"name"`
	Deleting     *DomainDeletion `json:"deleting,omitempty"` // set while the domain is being deleted
	Description  string          `json:"description"`
	MaxAccounts  int             `json:"maxAccounts"`
	AccountCount int             `json:"accountCount"`
	// Postmaster is the account that receives mail to postmaster@ and
	// abuse@ of the domain when no account, alias or list of that name
	// exists; "" means the first global administrator.
	Postmaster string    `json:"postmaster"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// DomainDeletion is the JSON form of a deletion under way.
type DomainDeletion struct {
	Since    time.Time `json:"since"`
	By       string    `json:"by"`
	Accounts int       `json:"accounts"`
}

type domainListResponse struct {
	Domains []Domain `json:"domains"`
}

type domainCreateRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	MaxAccounts int    `json:"maxAccounts"`
}

type domainUpdateRequest struct {
	Description *string `json:"description"`
	MaxAccounts *int    `json:"maxAccounts"`
	Postmaster  *string `json:"postmaster"` // "" resets to the first global administrator
}

func newDomainResponse(d *mailcluster.Domain) Domain {
	out := Domain{Name: d.Name, Description: d.Description, MaxAccounts: d.MaxAccounts,
		AccountCount: d.AccountCount, Postmaster: d.Postmaster, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.Deleting != nil {
		out.Deleting = &DomainDeletion{Since: d.Deleting.Since, By: d.Deleting.By, Accounts: d.Deleting.Accounts}
	}
	return out
}

func domainLocation(name string) string { return "/api/v1/domains/" + url.PathEscape(name) }

func registerDomainRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains", s.handleDomainList)
	g.add(http.MethodPost, "/domains", s.handleDomainCreate)
	g.add(http.MethodGet, "/domains/:domain", s.handleDomainGet)
	g.add(http.MethodPatch, "/domains/:domain", s.handleDomainUpdate)
	g.add(http.MethodDelete, "/domains/:domain", s.handleDomainDelete)
}

// handleDomainList answers GET /api/v1/domains.
func (s *Server) handleDomainList(c echo.Context) error {
	ds, err := s.svc.FindDomains(c.Request().Context())
	if err != nil {
		return err
	}
	out := domainListResponse{Domains: make([]Domain, 0, len(ds))}
	for _, d := range ds {
		out.Domains = append(out.Domains, newDomainResponse(d))
	}
	return c.JSON(http.StatusOK, out)
}

// handleDomainCreate answers POST /api/v1/domains.
func (s *Server) handleDomainCreate(c echo.Context) error {
	var in domainCreateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	d, err := s.svc.CreateDomain(c.Request().Context(), &mailcluster.Domain{
		Name: in.Name, Description: in.Description, MaxAccounts: in.MaxAccounts})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, domainLocation(d.Name))
	return c.JSON(http.StatusCreated, newDomainResponse(d))
}

// handleDomainGet answers GET /api/v1/domains/{domain}.
func (s *Server) handleDomainGet(c echo.Context) error {
	d, err := s.svc.FindDomain(c.Request().Context(), pathParam(c, "domain"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newDomainResponse(d))
}

// handleDomainUpdate answers PATCH /api/v1/domains/{domain}.
func (s *Server) handleDomainUpdate(c echo.Context) error {
	var in domainUpdateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	d, err := s.svc.UpdateDomain(c.Request().Context(), pathParam(c, "domain"),
		mailcluster.DomainUpdate{Description: in.Description, MaxAccounts: in.MaxAccounts, Postmaster: in.Postmaster})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newDomainResponse(d))
}

// handleDomainDelete answers DELETE /api/v1/domains/{domain}?force=:
// 204 once the domain is gone, however many accounts it had (a call for a
// domain being deleted joins that deletion).
func (s *Server) handleDomainDelete(c echo.Context) error {
	force, err := queryBool(c, "force")
	if err != nil {
		return err
	}
	if err := s.svc.DeleteDomain(c.Request().Context(), pathParam(c, "domain"), force); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
