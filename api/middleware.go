package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Keys of values kept in the Echo context.
const (
	ctxRequestID = "mailcluster.request_id"
	ctxCaller    = "mailcluster.caller"
	ctxChallenge = "mailcluster.challenge" // the WWW-Authenticate of a 401; default basicChallenge
	ctxClientIP  = "mailcluster.client_ip" // the client's address (see clientIP)
)

// basicChallenge is the WWW-Authenticate challenge of the management API.
const basicChallenge = `Basic realm="mailcluster"`

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID keeps a sane X-Request-Id of the client or makes a new one,
// and echoes it in the response.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !reRequestID.MatchString(rid) {
			var b [16]byte
			_, _ = rand.Read(b[:])
			rid = hex.EncodeToString(b[:])
		}
		c.Set(ctxRequestID, rid)
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

// clientIP puts the client's address, as Echo's IPExtractor finds it (see
// Config.TrustedProxies), into the request context, where the Service
// reads it to refuse blocked addresses and to count failed logins. It
// runs before authentication and before the XML-API handler.
func (s *Server) clientIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ip, err := mailcluster.NormalizeIP(c.RealIP()); err == nil {
			c.Set(ctxClientIP, ip)
			req := c.Request()
			c.SetRequest(req.WithContext(mailcluster.NewContextWithClientIP(req.Context(), ip)))
		}
		return next(c)
	}
}

// accessLog writes one line per request after the error handler has
// answered. It logs neither headers (Authorization) nor bodies.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		attrs := []any{
			"method", req.Method,
			"path", req.URL.Path,
			"status", res.Status,
			"duration", time.Since(start),
			"bytes", res.Size,
			"request_id", c.Get(ctxRequestID),
			"remote", req.RemoteAddr,
		}
		if ip, ok := c.Get(ctxClientIP).(string); ok {
			attrs = append(attrs, "client", ip)
		}
		if a, ok := c.Get(ctxCaller).(string); ok {
			attrs = append(attrs, "caller", a)
		}
		s.log.Info("http request", attrs...)
		return nil
	}
}

// recover turns a panic into an internal error (logged with its stack).
func (s *Server) recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic in handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()),
				"request_id", c.Get(ctxRequestID))
			err = &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "panic", Err: fmt.Errorf("api: panic: %v", r)}
		}()
		return next(c)
	}
}

// limitBody refuses a declared Content-Length over the limit at once and
// cuts any other body at the limit (reads then fail with
// *http.MaxBytesError, which becomes 413).
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.bodyLimit {
			return mailcluster.Errorf(mailcluster.ETOOLARGE, "%s", tooLargeDetail(s.bodyLimit))
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, s.bodyLimit)
		}
		return next(c)
	}
}

// authenticate checks HTTP Basic credentials with the Service and puts the
// caller into the request context for the Service's authorization. The
// Service refuses a client address blocked by dynamic screening (403,
// whatever the credentials) and counts failed logins.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		address, password, ok := req.BasicAuth()
		if !ok {
			return mailcluster.Errorf(mailcluster.EUNAUTHORIZED,
				"Authentication is required: use HTTP Basic with an administrator's full address and password.")
		}
		caller, err := s.svc.Authenticate(req.Context(), address, password)
		if err != nil {
			return err
		}
		c.Set(ctxCaller, caller.Address())
		c.SetRequest(req.WithContext(mailcluster.NewContextWithCaller(req.Context(), caller)))
		return next(c)
	}
}
