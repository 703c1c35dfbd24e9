package client

import (
	"context"
	"net/http"
	"net/url"

	"mailcluster/api"
)

// The answers of the outbound queue are the REST API's own JSON types.
type (
	// QueuedMessage is a message of the outbound queue as the API shows it.
	QueuedMessage = api.QueuedMessage
	// QueuePage is one page of the outbound queue.
	QueuePage = api.QueuePage
	// QueueStats are the counts of every node's queue.
	QueueStats = api.QueueStats
)

// queuePath returns /api/v1/queue/{id}, the id escaped.
func queuePath(id string) string { return "/api/v1/queue/" + url.PathEscape(id) }

// Queue returns one page of the outbound queue, oldest first (GET
// /api/v1/queue): node's messages ("" for every node's), at most limit (0:
// the server's default of 100), starting at cursor ("" for the first
// page). Any node answers with the whole cluster's queue.
func (c *Client) Queue(ctx context.Context, node, cursor string, limit int) (*QueuePage, error) {
	path := pageQuery("/api/v1/queue", cursor, limit)
	if node != "" {
		path += "&node=" + url.QueryEscape(node)
	}
	var p QueuePage
	if err := c.do(ctx, http.MethodGet, path, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// QueuedMessage returns one message of the outbound queue (GET
// /api/v1/queue/{id}).
func (c *Client) QueuedMessage(ctx context.Context, id string) (*QueuedMessage, error) {
	var m QueuedMessage
	if err := c.do(ctx, http.MethodGet, queuePath(id), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// QueueStats returns the counts of every node's queue (GET
// /api/v1/queue/stats).
func (c *Client) QueueStats(ctx context.Context) (*QueueStats, error) {
	var st QueueStats
	if err := c.do(ctx, http.MethodGet, "/api/v1/queue/stats", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// RetryQueuedMessage asks the owning node to attempt a message now (POST
// /api/v1/queue/{id}/retry). Only the primary accepts it: a secondary
// answers with EREADONLY.
func (c *Client) RetryQueuedMessage(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, queuePath(id)+"/retry", nil, nil)
}

// DeleteQueuedMessage removes a message from the outbound queue without a
// notice to its sender (DELETE /api/v1/queue/{id}). Only the primary
// accepts it.
func (c *Client) DeleteQueuedMessage(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, queuePath(id), nil, nil)
}
