package xmlapi

import (
	"context"
	"slices"
	"strconv"

	"github.com/beevik/etree"

	"mailcluster"
)

// The outbound queue's operations. The queue lives on the shared path, so
// every node answers the reads with the whole cluster's queue; retry and
// delete are writes, refused on a secondary (status 6). Only global
// administrators may use them.

// Limits of GetQueueList's <Limit>.
const (
	defaultQueueLimit = 100
	maxQueueLimit     = 1000
)

// handleQueueList answers GetQueueList with one page of the queue, oldest
// first:
//
//	<Queue count="N" next="CURSOR"><Message .../>...</Queue>
//
// Parameters, all optional: <Node> (one node's messages), <Limit> (1-1000,
// default 100), <Cursor> (the next attribute of the previous page; the
// last page has an empty one).
func (h *Handler) handleQueueList(ctx context.Context, p params, result *etree.Element) error {
	limit := defaultQueueLimit
	n, err := p.int("Limit")
	if err != nil {
		return err
	}
	if n != nil {
		if *n < 1 || *n > maxQueueLimit {
			return mailcluster.Errorf(mailcluster.EINVALID, "Parameter Limit must be from 1 to %d.", maxQueueLimit)
		}
		limit = int(*n)
	}
	msgs, next, err := h.svc.QueuedMessages(ctx, p.strOr("Node", ""), limit, p.strOr("Cursor", ""))
	if err != nil {
		return err
	}
	list := result.CreateElement("Queue")
	list.CreateAttr("count", strconv.Itoa(len(msgs)))
	list.CreateAttr("next", next)
	for i := range msgs {
		addQueuedMessage(list, &msgs[i])
	}
	return nil
}

// handleQueueMessage answers GetQueueMessage with the <Message> of <ID>.
func (h *Handler) handleQueueMessage(ctx context.Context, p params, result *etree.Element) error {
	id, err := p.required("ID")
	if err != nil {
		return err
	}
	m, err := h.svc.QueuedMessage(ctx, id)
	if err != nil {
		return err
	}
	addQueuedMessage(result, m)
	return nil
}

// handleQueueRetry answers RetryQueueMessage with <Result/>: the node that
// owns message <ID> attempts it as soon as it can.
func (h *Handler) handleQueueRetry(ctx context.Context, p params, _ *etree.Element) error {
	id, err := p.required("ID")
	if err != nil {
		return err
	}
	return h.svc.RetryQueuedMessage(ctx, id)
}

// handleQueueDelete answers DeleteQueueMessage with <Result/>: message
// <ID> is removed from the queue without a notice to its sender.
func (h *Handler) handleQueueDelete(ctx context.Context, p params, _ *etree.Element) error {
	id, err := p.required("ID")
	if err != nil {
		return err
	}
	return h.svc.DeleteQueuedMessage(ctx, id)
}

// handleQueueStats answers GetQueueStats with the counts of each node's
// queue, by node name:
//
//	<QueueStats><Node name=".." messages="N" deferred="N" recipients="N" oldest="RFC3339"/>...</QueueStats>
func (h *Handler) handleQueueStats(ctx context.Context, _ params, result *etree.Element) error {
	st, err := h.svc.QueueStats(ctx)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	slices.Sort(names)
	list := result.CreateElement("QueueStats")
	for _, n := range names {
		s := st[n]
		e := list.CreateElement("Node")
		e.CreateAttr("name", n)
		e.CreateAttr("messages", strconv.Itoa(s.Messages))
		e.CreateAttr("deferred", strconv.Itoa(s.Deferred))
		e.CreateAttr("recipients", strconv.Itoa(s.Recipient))
		e.CreateAttr("oldest", formatTime(s.Oldest))
	}
	return nil
}

// addQueuedMessage appends
//
//	<Message id node from size created nextAttempt attempts delayWarned>
//	  <Subject>..</Subject>
//	  <Recipient address state attempts host updated><Reply>..</Reply></Recipient>...
//	</Message>
//
// (from is empty for the null sender of a DSN; times are RFC 3339, empty
// when unknown; <Reply> only once a destination answered).
func addQueuedMessage(parent *etree.Element, m *mailcluster.QueuedMessage) {
	e := parent.CreateElement("Message")
	e.CreateAttr("id", m.ID)
	e.CreateAttr("node", m.Node)
	e.CreateAttr("from", m.From)
	e.CreateAttr("size", strconv.FormatInt(m.Size, 10))
	e.CreateAttr("created", formatTime(m.Created))
	e.CreateAttr("nextAttempt", formatTime(m.NextAttempt))
	e.CreateAttr("attempts", strconv.Itoa(m.Attempts))
	e.CreateAttr("delayWarned", mailcluster.FormatFlag(m.Warned))
	addText(e, "Subject", m.Subject)
	for _, r := range m.Recipients {
		re := e.CreateElement("Recipient")
		re.CreateAttr("address", r.Address)
		re.CreateAttr("state", r.State)
		re.CreateAttr("attempts", strconv.Itoa(r.Attempts))
		re.CreateAttr("host", r.Host)
		re.CreateAttr("updated", formatTime(r.Updated))
		if r.Reply != "" {
			addText(re, "Reply", r.Reply)
		}
	}
}
