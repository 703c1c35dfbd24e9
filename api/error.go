package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Codes of errors that only exist at the HTTP edge (no domain meaning).
const (
	codeMethodNotAllowed     = "method_not_allowed"
	codeUnsupportedMediaType = "unsupported_media_type"
)

// ProblemTypePrefix starts the stable type URI of every problem document:
// "urn:mailcluster:problem:" followed by the error code with '_' written
// as '-' (for example urn:mailcluster:problem:read-only).
const ProblemTypePrefix = "urn:mailcluster:problem:"

// problemKinds is the one table from error code to HTTP status and title.
var problemKinds = map[string]struct {
	status int
	title  string
}{
	mailcluster.EINVALID:      {http.StatusBadRequest, "Invalid request"},
	mailcluster.EUNAUTHORIZED: {http.StatusUnauthorized, "Authentication required"},
	mailcluster.EFORBIDDEN:    {http.StatusForbidden, "Forbidden"},
	mailcluster.EREADONLY:     {http.StatusForbidden, "Read-only node"},
	mailcluster.ENOTFOUND:     {http.StatusNotFound, "Not found"},
	mailcluster.ECONFLICT:     {http.StatusConflict, "Conflict"},
	mailcluster.ETOOLARGE:     {http.StatusRequestEntityTooLarge, "Too large"},
	mailcluster.EUNAVAILABLE:  {http.StatusServiceUnavailable, "Service unavailable"},
	mailcluster.EINTERNAL:     {http.StatusInternalServerError, "Internal error"},
	codeMethodNotAllowed:      {http.StatusMethodNotAllowed, "Method not allowed"},
	codeUnsupportedMediaType:  {http.StatusUnsupportedMediaType, "Unsupported media type"},
}

// errorStatus returns the HTTP status of an error code; unknown codes are
// internal errors.
func errorStatus(code string) int {
	if k, ok := problemKinds[code]; ok {
		return k.status
	}
	return http.StatusInternalServerError
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Primary  string `json:"primary,omitempty"`
}

// internalDetail is all a client learns about an internal error.
const internalDetail = "An internal error occurred; the details are in the node's log."

// Client-safe details of errors raised by Echo or net/http.
var echoDetails = map[string]string{
	mailcluster.EINVALID:      "The request could not be read.",
	mailcluster.EUNAUTHORIZED: "Authentication is required.",
	mailcluster.EFORBIDDEN:    "You may not do this.",
	mailcluster.ENOTFOUND:     "No resource exists at this path.",
	mailcluster.ETOOLARGE:     "The request body is too large.",
	mailcluster.EUNAVAILABLE:  "The service is unavailable; try again shortly.",
	codeMethodNotAllowed:      "This method is not allowed on this resource.",
	codeUnsupportedMediaType:  "The request body has a content type this operation does not accept.",
}

// codeOfStatus maps a status chosen by Echo back to an error code.
func codeOfStatus(status int) string {
	for code, k := range problemKinds {
		if k.status == status && code != mailcluster.EREADONLY {
			return code
		}
	}
	return mailcluster.EINTERNAL
}

// toProblem turns any error into a problem document. The detail is the
// domain error's client-safe message; internal errors get a generic one.
func (s *Server) toProblem(err error, c echo.Context) problem {
	var (
		code, detail, primary string
		he                    *echo.HTTPError
		mbe                   *http.MaxBytesError
		me                    *mailcluster.Error
	)
	switch {
	case errors.As(err, &me):
		code, detail, primary = me.Code, me.Message, me.Primary
	case errors.As(err, &mbe):
		code, detail = mailcluster.ETOOLARGE, tooLargeDetail(s.bodyLimit)
	case errors.As(err, &he):
		code = codeOfStatus(he.Code)
		detail = echoDetails[code]
		if code == mailcluster.ETOOLARGE {
			detail = tooLargeDetail(s.bodyLimit)
		}
	default:
		code = mailcluster.EINTERNAL
	}
	if _, ok := problemKinds[code]; !ok {
		code = mailcluster.EINTERNAL
	}
	if code == mailcluster.EINTERNAL || detail == "" {
		detail = internalDetail
	}
	p := problem{
		Type:     ProblemTypePrefix + strings.ReplaceAll(code, "_", "-"),
		Title:    problemKinds[code].title,
		Status:   errorStatus(code),
		Detail:   detail,
		Instance: c.Request().URL.Path,
	}
	if code == mailcluster.EREADONLY {
		p.Primary = primary
	}
	return p
}

// handleError is Echo's HTTPErrorHandler: every error, from a handler,
// a middleware or Echo's router, becomes an application/problem+json
// answer. Internal errors are logged with their cause; the client only
// sees a generic detail.
func (s *Server) handleError(err error, c echo.Context) {
	p := s.toProblem(err, c)
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	if p.Status >= 500 {
		s.log.Error("request failed", "error", err, "status", p.Status, "method", c.Request().Method,
			"path", c.Request().URL.Path, "request_id", rid)
	} else {
		s.log.Debug("request refused", "error", err, "status", p.Status, "request_id", rid)
	}
	if c.Response().Committed {
		return
	}
	h := c.Response().Header()
	if p.Status == http.StatusUnauthorized {
		challenge, ok := c.Get(ctxChallenge).(string)
		if !ok {
			challenge = basicChallenge
		}
		h.Set(echo.HeaderWWWAuthenticate, challenge)
	}
	if p.Status == http.StatusServiceUnavailable {
		h.Set(echo.HeaderRetryAfter, "1")
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	b, _ := json.Marshal(p)
	if err := c.Blob(p.Status, "application/problem+json", b); err != nil {
		s.log.Debug("write problem", "error", err, "request_id", rid)
	}
}

func tooLargeDetail(limit int64) string {
	return "The request body is larger than the limit of " + formatBytes(limit) + "."
}
