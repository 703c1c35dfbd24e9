// Package queuetest is an outbound queue in memory for the tests of the
// management edges (REST and XML-API), which record what they are asked.
package queuetest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"mailcluster"
)

// Queue ids for tests (the form mailcluster.ValidQueueID accepts).
const (
	ID1      = "0000000000000001-aaaaaaaaaaaa"
	ID2      = "0000000000000002-bbbbbbbbbbbb"
	ID3      = "0000000000000003-cccccccccccc"
	IDAbsent = "00000000000000ff-ffffffffffff"
)

// Fake is an outbound queue in memory; it records the retries and
// deletions it was asked for.
type Fake struct {
	mu      sync.Mutex
	msgs    map[string]mailcluster.QueuedMessage
	retried []string
	deleted []string
}

var _ mailcluster.OutboundQueue = (*Fake)(nil)

// New returns a queue holding messages with ids, the first owned
// by node1 and the others by node2, queued a minute apart.
func New(ids ...string) *Fake {
	q := &Fake{msgs: map[string]mailcluster.QueuedMessage{}}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, id := range ids {
		node := "node2"
		if i == 0 {
			node = "node1"
		}
		q.msgs[id] = mailcluster.QueuedMessage{ID: id, Node: node, From: "alice@example.com", Size: int64(100 * (i + 1)),
			Created: t0.Add(time.Duration(i) * time.Minute), NextAttempt: t0.Add(time.Hour), Attempts: i, Subject: "subject " + id,
			Recipients: []mailcluster.QueuedRecipient{
				{Address: "bob@remote.test", State: mailcluster.RcptPending, Attempts: i},
				{Address: "carol@remote.test", State: mailcluster.RcptDelivered, Attempts: 1, Reply: "250 2.0.0 ok",
					Host: "mx.remote.test", Updated: t0.Add(time.Second)},
			}}
	}
	return q
}

func (q *Fake) List(node string, limit int, cursor string) ([]mailcluster.QueuedMessage, string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, 0, len(q.msgs))
	for id, m := range q.msgs {
		if (node == "" || m.Node == node) && id > cursor {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	next := ""
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	out := make([]mailcluster.QueuedMessage, 0, len(ids))
	for _, id := range ids {
		out = append(out, q.msgs[id])
	}
	return out, next, nil
}

func (q *Fake) Message(id string) (*mailcluster.QueuedMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.msgs[id]
	if !ok {
		return nil, fmt.Errorf("fake queue: %s: %w", id, mailcluster.ErrQueueNotFound)
	}
	return &m, nil
}

func (q *Fake) Retry(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.msgs[id]; !ok {
		return fmt.Errorf("fake queue: %s: %w", id, mailcluster.ErrQueueNotFound)
	}
	q.retried = append(q.retried, id)
	return nil
}

func (q *Fake) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.msgs[id]; !ok {
		return fmt.Errorf("fake queue: %s: %w", id, mailcluster.ErrQueueNotFound)
	}
	delete(q.msgs, id)
	q.deleted = append(q.deleted, id)
	return nil
}

func (q *Fake) Stats() (map[string]mailcluster.QueueStats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]mailcluster.QueueStats{}
	for _, m := range q.msgs {
		st := out[m.Node]
		st.Messages++
		st.Recipient += len(m.Recipients)
		if m.Attempts > 0 {
			st.Deferred++
		}
		if st.Oldest.IsZero() || m.Created.Before(st.Oldest) {
			st.Oldest = m.Created
		}
		out[m.Node] = st
	}
	return out, nil
}

// Calls returns the retries and deletions asked for so far.
func (q *Fake) Calls() (retried, deleted []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.retried), slices.Clone(q.deleted)
}
