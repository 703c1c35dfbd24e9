package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// maxLogLimit is the largest limit of GET /api/v1/cluster/log.
const maxLogLimit = 1000

// clusterEventResponse is the JSON form of mailcluster.ClusterEvent;
// fields is an object, never null.
type clusterEventResponse struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Event   string            `json:"event"`
	Node    string            `json:"node"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

type clusterLogResponse struct {
	Entries []clusterEventResponse `json:"entries"`
}

// handleClusterLog answers GET /api/v1/cluster/log with the entries of
// this node's cluster log (or of the node named by node) in the order
// they were recorded, oldest first.
// Query: since (RFC 3339), level (info, warn, error: that level and
// above), node, limit (1-1000, default 100: the newest entries).
func (s *Server) handleClusterLog(c echo.Context) error {
	f, err := clusterLogFilter(c)
	if err != nil {
		return err
	}
	evs, err := s.svc.ClusterLog(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := clusterLogResponse{Entries: make([]clusterEventResponse, 0, len(evs))}
	for _, e := range evs {
		fields := make(map[string]string, len(e.Fields))
		for k, v := range e.Fields {
			fields[k] = v
		}
		out.Entries = append(out.Entries, clusterEventResponse{Time: e.Time.UTC(), Level: e.Level, Event: string(e.Event), Node: e.Node,
			Message: e.Message, Fields: fields})
	}
	return c.JSON(http.StatusOK, out)
}

// clusterLogFilter decodes the query of GET /api/v1/cluster/log. The
// level is checked by the service.
func clusterLogFilter(c echo.Context) (mailcluster.ClusterLogFilter, error) {
	f := mailcluster.ClusterLogFilter{Level: c.QueryParam("level"), Node: c.QueryParam("node")}
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, mailcluster.Errorf(mailcluster.EINVALID,
				"Query parameter since must be an RFC 3339 time such as 2030-01-02T03:04:05Z.")
		}
		f.Since = t
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogLimit {
			return f, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter limit must be a whole number from 1 to %d.", maxLogLimit)
		}
		f.Limit = n
	}
	return f, nil
}
