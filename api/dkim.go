package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// DKIMKey is the JSON form of a domain's DKIM key: the DNS TXT
// record to publish, never the private key (it has no member for it).
type DKIMKey struct {
	Domain    string    `json:"domain"`
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
	DNSName   string    `json:"dnsName"`
	DNSValue  string    `json:"dnsValue"`
}

// dkimKeyRequest is the body of PUT and POST /api/v1/domains/{domain}/dkim:
// a selector with an algorithm to generate a key, or with a PEM private
// key to import (never logged or answered).
type dkimKeyRequest struct {
	Selector   string `json:"selector"`
	Algorithm  string `json:"algorithm"`
	PrivateKey string `json:"privateKey"`
}

func newDKIMKeyResponse(k *mailcluster.DKIMKey) DKIMKey {
	name, value := k.TXTRecord()
	return DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: k.Algorithm, Created: k.Created.UTC(),
		DNSName: name, DNSValue: value}
}

func registerDKIMRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/dkim", s.handleDKIMGet)
	g.add(http.MethodPut, "/domains/:domain/dkim", s.handleDKIMSet)
	g.add(http.MethodPost, "/domains/:domain/dkim", s.handleDKIMSet)
	g.add(http.MethodDelete, "/domains/:domain/dkim", s.handleDKIMDelete)
}

// handleDKIMGet answers GET /api/v1/domains/{domain}/dkim.
func (s *Server) handleDKIMGet(c echo.Context) error {
	k, err := s.svc.DKIMKey(c.Request().Context(), pathParam(c, "domain"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newDKIMKeyResponse(k))
}

// handleDKIMSet answers PUT and POST /api/v1/domains/{domain}/dkim: a key
// generated (no privateKey) or imported, replacing the domain's key; 201
// when the domain had none, 200 for a replacement (read just before, as
// for certificates).
func (s *Server) handleDKIMSet(c echo.Context) error {
	var in dkimKeyRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.PrivateKey != "" && in.Algorithm != "" {
		return mailcluster.Errorf(mailcluster.EINVALID, "Give either algorithm (to generate a key) or privateKey (to import one), not both.")
	}
	ctx, domain := c.Request().Context(), pathParam(c, "domain")
	_, lookupErr := s.svc.DKIMKey(ctx, domain)
	var k *mailcluster.DKIMKey
	var err error
	if in.PrivateKey != "" {
		k, err = s.svc.ImportDKIMKey(ctx, domain, in.Selector, in.PrivateKey)
	} else {
		k, err = s.svc.CreateDKIMKey(ctx, domain, in.Selector, in.Algorithm)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if mailcluster.ErrorCode(lookupErr) == mailcluster.ENOTFOUND {
		status = http.StatusCreated
		c.Response().Header().Set(echo.HeaderLocation, domainLocation(k.Domain)+"/dkim")
	}
	return c.JSON(status, newDKIMKeyResponse(k))
}

// handleDKIMDelete answers DELETE /api/v1/domains/{domain}/dkim.
func (s *Server) handleDKIMDelete(c echo.Context) error {
	if err := s.svc.DeleteDKIMKey(c.Request().Context(), pathParam(c, "domain")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
