package api

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// messageResponse is the JSON form of mailcluster.Message.
type messageResponse struct {
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
	From     string    `json:"from"`
	Subject  string    `json:"subject"`
}

type messageListResponse struct {
	Messages   []messageResponse `json:"messages"`
	NextCursor string            `json:"nextCursor"`
}

// Usage is the JSON form of an account's usage with its quotas.
// The times are absent while the primary has published no usage yet
// (updatedAt) or never recounted the mailbox (recountedAt).
type Usage struct {
	Bytes         int64     `json:"bytes"`
	Messages      int64     `json:"messages"`
	UpdatedAt     time.Time `json:"updatedAt,omitzero"`
	RecountedAt   time.Time `json:"recountedAt,omitzero"`
	QuotaBytes    int64     `json:"quotaBytes"`
	QuotaMessages int64     `json:"quotaMessages"`
}

// maxMessageIDLen bounds message ids and the message cursor (the mail
// store's ids are shorter).
const maxMessageIDLen = 255

// errMailNotRunning answers the mailbox routes of a node without a mail
// service (Config.Mail nil).
var errMailNotRunning = mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The mail service is not running on this node.")

func registerMailRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/accounts/:mailbox/messages", s.handleMessageList)
	g.add(http.MethodGet, "/domains/:domain/accounts/:mailbox/messages/:id", s.handleMessageGet)
	g.add(http.MethodDelete, "/domains/:domain/accounts/:mailbox/messages/:id", s.handleMessageDelete)
	g.add(http.MethodGet, "/domains/:domain/accounts/:mailbox/usage", s.handleUsageGet)
	g.add(http.MethodPost, "/domains/:domain/accounts/:mailbox/usage/recount", s.handleUsageRecount)
}

// findAccount resolves the account of the path through the Service, which
// authorizes the caller and checks that domain and account exist.
func (s *Server) findAccount(c echo.Context) (*mailcluster.Account, error) {
	return s.svc.FindAccount(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "mailbox"))
}

// mailAccount is findAccount for the routes that need the mail store.
func (s *Server) mailAccount(c echo.Context) (*mailcluster.Account, error) {
	if s.mail == nil {
		return nil, errMailNotRunning
	}
	return s.svc.FindMailAccount(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "mailbox"))
}

// messageID returns the id path parameter; the mail store validates it.
func messageID(c echo.Context) (string, error) {
	id := pathParam(c, "id")
	if len(id) > maxMessageIDLen {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Message id is longer than %d characters.", maxMessageIDLen)
	}
	return id, nil
}

// handleMessageList answers GET /api/v1/domains/{domain}/accounts/{mailbox}/messages.
func (s *Server) handleMessageList(c echo.Context) error {
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return mailcluster.Errorf(mailcluster.EINVALID, "Query parameter limit must be a number from 1 to 1000.")
		}
		limit = n
	}
	cursor := c.QueryParam("cursor")
	if len(cursor) > maxMessageIDLen {
		return mailcluster.Errorf(mailcluster.EINVALID, "Query parameter cursor is longer than %d characters.", maxMessageIDLen)
	}
	a, err := s.mailAccount(c)
	if err != nil {
		return err
	}
	msgs, next, err := s.mail.List(a, limit, cursor)
	if err != nil {
		return err
	}
	out := messageListResponse{Messages: make([]messageResponse, 0, len(msgs)), NextCursor: next}
	for _, m := range msgs {
		out.Messages = append(out.Messages, messageResponse{ID: m.ID, Size: m.Size, Received: m.Received.UTC(), From: m.From, Subject: m.Subject})
	}
	return c.JSON(http.StatusOK, out)
}

// handleMessageGet answers GET /api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}
// with the raw message (RFC 5322) as message/rfc822.
func (s *Server) handleMessageGet(c echo.Context) error {
	a, err := s.mailAccount(c)
	if err != nil {
		return err
	}
	id, err := messageID(c)
	if err != nil {
		return err
	}
	rc, size, err := s.mail.Open(a, id)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentLength, strconv.FormatInt(size, 10))
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	// The answer is committed once streaming starts: a read error then
	// cuts the body short (the client sees fewer bytes than announced)
	// and is only logged.
	return c.Stream(http.StatusOK, "message/rfc822", io.LimitReader(rc, size))
}

// handleMessageDelete answers DELETE /api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}.
// Which nodes may delete mail is the Service's rule (FindMailAccount).
func (s *Server) handleMessageDelete(c echo.Context) error {
	a, err := s.mailAccount(c)
	if err != nil {
		return err
	}
	id, err := messageID(c)
	if err != nil {
		return err
	}
	if err := s.mail.Delete(c.Request().Context(), a, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleUsageGet answers GET /api/v1/domains/{domain}/accounts/{mailbox}/usage.
func (s *Server) handleUsageGet(c echo.Context) error {
	a, err := s.findAccount(c)
	if err != nil {
		return err
	}
	u, err := s.svc.AccountUsage(c.Request().Context(), a.Domain, a.Mailbox)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newUsageResponse(a, u))
}

// handleUsageRecount answers POST /api/v1/domains/{domain}/accounts/{mailbox}/usage/recount.
func (s *Server) handleUsageRecount(c echo.Context) error {
	a, err := s.mailAccount(c)
	if err != nil {
		return err
	}
	u, err := s.mail.Recount(c.Request().Context(), a)
	if err != nil {
		return err
	}
	// The published record carries the time of publication; prefer it
	// when it is this recount's.
	if pub, _ := s.svc.AccountUsage(c.Request().Context(), a.Domain, a.Mailbox); pub.RecountedAt.Equal(u.RecountedAt) && !pub.UpdatedAt.IsZero() {
		u.UpdatedAt = pub.UpdatedAt
	} else if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.RecountedAt
	}
	return c.JSON(http.StatusOK, newUsageResponse(a, u))
}

func newUsageResponse(a *mailcluster.Account, u mailcluster.Usage) Usage {
	return Usage{Bytes: u.Bytes, Messages: u.Messages, UpdatedAt: u.UpdatedAt.UTC(), RecountedAt: u.RecountedAt.UTC(),
		QuotaBytes: a.QuotaBytes, QuotaMessages: a.QuotaMessages}
}
