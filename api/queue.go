package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// The outbound queue lives on the shared path, so every node lists and
// shows the whole cluster's queue; retry and delete are changes, made on
// the primary only (a secondary answers 403 read-only). Only global
// administrators reach these routes: queued mail is every domain's.

// defaultQueueLimit is the page size of GET /api/v1/queue without limit.
const defaultQueueLimit = 100

// QueuedRecipient is the JSON form of one recipient of a queued message.
type QueuedRecipient struct {
	Address  string     `json:"address"`
	State    string     `json:"state"`
	Attempts int        `json:"attempts"`
	Reply    string     `json:"reply,omitempty"`
	Host     string     `json:"host,omitempty"`
	Updated  *time.Time `json:"updated,omitempty"`
}

// QueuedMessage is the JSON form of a message of the outbound queue.
type QueuedMessage struct {
	ID          string            `json:"id"`
	Node        string            `json:"node"`
	From        string            `json:"from"`
	Recipients  []QueuedRecipient `json:"recipients"`
	Size        int64             `json:"size"`
	Created     time.Time         `json:"created"`
	NextAttempt time.Time         `json:"nextAttempt"`
	Attempts    int               `json:"attempts"`
	DelayWarned bool              `json:"delayWarned"`
	Subject     string            `json:"subject,omitempty"`
}

// QueuePage is one page of the outbound queue, oldest first; NextCursor
// asks for the next one ("" on the last).
type QueuePage struct {
	Messages   []QueuedMessage `json:"messages"`
	NextCursor string          `json:"nextCursor"`
}

// QueueNodeStats are the counts of one node's queue.
type QueueNodeStats struct {
	Messages   int        `json:"messages"`
	Deferred   int        `json:"deferred"`
	Recipients int        `json:"recipients"`
	Oldest     *time.Time `json:"oldest,omitempty"`
}

// QueueStats are the counts of every node's queue, by node name.
type QueueStats struct {
	Nodes map[string]QueueNodeStats `json:"nodes"`
}

func newQueuedMessage(m mailcluster.QueuedMessage) QueuedMessage {
	out := QueuedMessage{ID: m.ID, Node: m.Node, From: m.From, Size: m.Size, Created: m.Created.UTC(),
		NextAttempt: m.NextAttempt.UTC(), Attempts: m.Attempts, DelayWarned: m.Warned, Subject: m.Subject,
		Recipients: make([]QueuedRecipient, 0, len(m.Recipients))}
	for _, r := range m.Recipients {
		out.Recipients = append(out.Recipients, QueuedRecipient{Address: r.Address, State: r.State, Attempts: r.Attempts,
			Reply: r.Reply, Host: r.Host, Updated: optTime(r.Updated)})
	}
	return out
}

// optTime returns t in UTC, nil for the zero time.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func registerQueueRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/queue", s.handleQueueList)
	g.add(http.MethodGet, "/queue/stats", s.handleQueueStats)
	g.add(http.MethodGet, "/queue/:id", s.handleQueueGet)
	g.add(http.MethodPost, "/queue/:id/retry", s.handleQueueRetry)
	g.add(http.MethodDelete, "/queue/:id", s.handleQueueDelete)
}

// handleQueueList answers GET /api/v1/queue: query parameters node (one
// node's queue; absent: every node's), limit (1-1000, default 100) and
// cursor.
func (s *Server) handleQueueList(c echo.Context) error {
	ms, next, err := findPage(c, maxCursorLen, func(ctx context.Context, cursor string, limit int) ([]mailcluster.QueuedMessage, string, error) {
		if limit == 0 {
			limit = defaultQueueLimit
		}
		return s.svc.QueuedMessages(ctx, c.QueryParam("node"), limit, cursor)
	}, newQueuedMessage)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, QueuePage{Messages: ms, NextCursor: next})
}

// handleQueueStats answers GET /api/v1/queue/stats.
func (s *Server) handleQueueStats(c echo.Context) error {
	st, err := s.svc.QueueStats(c.Request().Context())
	if err != nil {
		return err
	}
	out := QueueStats{Nodes: make(map[string]QueueNodeStats, len(st))}
	for node, n := range st {
		out.Nodes[node] = QueueNodeStats{Messages: n.Messages, Deferred: n.Deferred, Recipients: n.Recipient, Oldest: optTime(n.Oldest)}
	}
	return c.JSON(http.StatusOK, out)
}

// handleQueueGet answers GET /api/v1/queue/{id}.
func (s *Server) handleQueueGet(c echo.Context) error {
	m, err := s.svc.QueuedMessage(c.Request().Context(), pathParam(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newQueuedMessage(*m))
}

// handleQueueRetry answers POST /api/v1/queue/{id}/retry with 202: the
// owning node attempts the message as soon as it can.
func (s *Server) handleQueueRetry(c echo.Context) error {
	if err := s.svc.RetryQueuedMessage(c.Request().Context(), pathParam(c, "id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}

// handleQueueDelete answers DELETE /api/v1/queue/{id}: the message is
// removed without a notice to its sender.
func (s *Server) handleQueueDelete(c echo.Context) error {
	if err := s.svc.DeleteQueuedMessage(c.Request().Context(), pathParam(c, "id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
