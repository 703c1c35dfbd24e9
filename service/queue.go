package service

import (
	"context"
	"errors"

	"mailcluster"
)

// errNoQueue answers the queue operations of a service built without one.
var errNoQueue = mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node has no outbound queue.")

func (s *Service) queue() (mailcluster.OutboundQueue, error) {
	if s.opts.Queue == nil {
		return nil, errNoQueue
	}
	return s.opts.Queue, nil
}

func queueError(err error, id string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, mailcluster.ErrQueueNotFound) {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Message %s is not in the outbound queue.", id)
	}
	return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The outbound queue cannot be read: %v", err)
}

// QueuedMessages lists the outbound queue, oldest first: one node's
// ("" for every node's; the queue lives on the shared path, so any node
// shows the whole cluster's). Reading is allowed on every node; only a
// global administrator may (queued mail is every domain's).
// Errors: EFORBIDDEN, EINVALID, EUNAVAILABLE.
func (s *Service) QueuedMessages(ctx context.Context, node string, limit int, cursor string) ([]mailcluster.QueuedMessage, string, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > 1000 {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	if cursor != "" && !mailcluster.ValidQueueID(cursor) {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "cursor %q is not a queue id.", cursor)
	}
	if node != "" && !mailcluster.ValidNodeName(node) {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "node %q is not a node name.", node)
	}
	q, err := s.queue()
	if err != nil {
		return nil, "", err
	}
	msgs, next, err := q.List(node, limit, cursor)
	if err != nil {
		return nil, "", queueError(err, "")
	}
	return msgs, next, nil
}

// QueuedMessage returns one message of the outbound queue.
// Errors: EFORBIDDEN, EINVALID, ENOTFOUND, EUNAVAILABLE.
func (s *Service) QueuedMessage(ctx context.Context, id string) (*mailcluster.QueuedMessage, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if !mailcluster.ValidQueueID(id) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "%q is not a queue id.", id)
	}
	q, err := s.queue()
	if err != nil {
		return nil, err
	}
	m, err := q.Message(id)
	return m, queueError(err, id)
}

// QueueStats counts each node's outbound queue.
// Errors: EFORBIDDEN, EUNAVAILABLE.
func (s *Service) QueueStats(ctx context.Context) (map[string]mailcluster.QueueStats, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	q, err := s.queue()
	if err != nil {
		return nil, err
	}
	st, err := q.Stats()
	return st, queueError(err, "")
}

// RetryQueuedMessage asks the owning node to attempt a message now. Like
// every change it is made on the primary (secondaries answer read-only).
// Errors: EFORBIDDEN, EINVALID, ENOTFOUND, EREADONLY, EUNAVAILABLE.
func (s *Service) RetryQueuedMessage(ctx context.Context, id string) error {
	q, err := s.queueWrite(ctx, id)
	if err != nil {
		return err
	}
	if err := queueError(q.Retry(id), id); err != nil {
		return err
	}
	s.log.Info("queue: retry asked", "id", id, "by", callerName(ctx))
	return nil
}

// DeleteQueuedMessage removes a message from the outbound queue without
// a notice to its sender (primary only).
// Errors: EFORBIDDEN, EINVALID, ENOTFOUND, EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteQueuedMessage(ctx context.Context, id string) error {
	q, err := s.queueWrite(ctx, id)
	if err != nil {
		return err
	}
	if err := queueError(q.Delete(id), id); err != nil {
		return err
	}
	s.log.Info("queue: message deleted", "id", id, "by", callerName(ctx))
	return nil
}

func (s *Service) queueWrite(ctx context.Context, id string) (mailcluster.OutboundQueue, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if !mailcluster.ValidQueueID(id) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "%q is not a queue id.", id)
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	return s.queue()
}
