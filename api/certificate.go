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

// certificateResponse is the JSON form of mailcluster.Certificate. It has
// no member for the private key, sealed or not: no answer can carry it.
type certificateResponse struct {
	Name        string    `json:"name"`
	Default     bool      `json:"default"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"fingerprint"`
	ChainPEM    string    `json:"chainPem"`
}

type certificateListResponse struct {
	Certificates []certificateResponse `json:"certificates"`
}

// certificateImportRequest is the body of PUT /api/v1/certificates/{name}.
// KeyPEM is passed to the Service and never logged or answered.
type certificateImportRequest struct {
	ChainPEM string `json:"chainPem"`
	KeyPEM   string `json:"keyPem"`
	Default  bool   `json:"default"`
}

func newCertificateResponse(c *mailcluster.Certificate) certificateResponse {
	sans := c.SANs
	if sans == nil {
		sans = []string{}
	}
	return certificateResponse{Name: c.Name, Default: c.Default, Subject: c.Subject, Issuer: c.Issuer, SANs: sans,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Fingerprint: c.Fingerprint, ChainPEM: c.ChainPEM}
}

func registerCertificateRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/certificates", s.handleCertificateList)
	g.add(http.MethodGet, "/certificates/:name", s.handleCertificateGet)
	g.add(http.MethodPut, "/certificates/:name", s.handleCertificateImport)
	g.add(http.MethodDelete, "/certificates/:name", s.handleCertificateDelete)
}

// handleCertificateList answers GET /api/v1/certificates, sorted by name.
func (s *Server) handleCertificateList(c echo.Context) error {
	cs, err := s.svc.Certificates(c.Request().Context())
	if err != nil {
		return err
	}
	out := certificateListResponse{Certificates: make([]certificateResponse, 0, len(cs))}
	for _, cert := range cs {
		out.Certificates = append(out.Certificates, newCertificateResponse(cert))
	}
	slices.SortFunc(out.Certificates, func(a, b certificateResponse) int { return cmp.Compare(a.Name, b.Name) })
	return c.JSON(http.StatusOK, out)
}

// handleCertificateGet answers GET /api/v1/certificates/{name}.
func (s *Server) handleCertificateGet(c echo.Context) error {
	cert, err := s.svc.Certificate(c.Request().Context(), pathParam(c, "name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newCertificateResponse(cert))
}

// handleCertificateImport answers PUT /api/v1/certificates/{name}: 201
// for a new certificate, 200 for a replacement. Whether the name existed
// is read just before the import, so two concurrent first imports of a
// name may both answer 201; the stored result is the same either way.
func (s *Server) handleCertificateImport(c echo.Context) error {
	var in certificateImportRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ctx, name := c.Request().Context(), pathParam(c, "name")
	// Errors of this lookup (a bad name, a caller without rights) come
	// back, with the import's own wording, from ImportCertificate.
	_, lookupErr := s.svc.Certificate(ctx, name)
	cert, err := s.svc.ImportCertificate(ctx, name, in.ChainPEM, in.KeyPEM, in.Default)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if mailcluster.ErrorCode(lookupErr) == mailcluster.ENOTFOUND {
		status = http.StatusCreated
		c.Response().Header().Set(echo.HeaderLocation, "/api/v1/certificates/"+url.PathEscape(cert.Name))
	}
	return c.JSON(status, newCertificateResponse(cert))
}

// handleCertificateDelete answers DELETE /api/v1/certificates/{name}.
func (s *Server) handleCertificateDelete(c echo.Context) error {
	if err := s.svc.DeleteCertificate(c.Request().Context(), pathParam(c, "name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
