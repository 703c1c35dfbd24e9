package mailqueue

import (
	"bytes"
	"io"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"mailcluster/internal/dkimsign"

	"mailcluster"
)

// Queue is the cluster's outbound queue as one node sees it: it queues
// into the node's own spool, and lists and manages every node's.
type Queue struct {
	Spool  Spool
	Node   string
	Runner *Runner // nil: messages wait for a runner (tests)
	// Signer returns the DKIM options of a domain, false when it has no
	// key. nil signs nothing.
	Signer func(domain string) (*dkim.SignOptions, bool)
}

// Enqueue writes a message for rcpts (addresses outside the cluster's
// domains) into this node's queue and tells the runner; the message is
// durable when it returns nil. It is signed with the DKIM key of the
// domain of its From header (else of the envelope sender) when that
// domain has one.
//
// hold keeps the runner from attempting it until Release, so that the
// caller can still take it back with Discard.
func (q *Queue) Enqueue(from string, rcpts []string, header []byte, body io.Reader, maxBody int64, hold bool) (string, error) {
	env := &Envelope{ID: newID(time.Now()), From: from, Origin: q.Node}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, mailcluster.QueuedRecipient{Address: r, State: mailcluster.RcptPending})
	}
	var sign func(io.Reader) ([]byte, error)
	if q.Signer != nil {
		if opts, ok := q.signingDomain(from, header); ok {
			sign = func(msg io.Reader) ([]byte, error) { return dkimsign.SignMessage(opts, msg) }
		}
	}
	if q.Runner != nil {
		// Known to the runner before it can appear in a listing, so that
		// a scan never takes it for a new message of its own.
		q.Runner.reserve(env.ID)
	}
	if err := q.Spool.Write(q.Node, env, header, body, maxBody, sign); err != nil {
		if q.Runner != nil {
			q.Runner.forget(env.ID)
		}
		return "", err
	}
	if q.Runner != nil {
		q.Runner.queued(env, hold)
	}
	return env.ID, nil
}

// Release lets the runner attempt a message queued with hold.
func (q *Queue) Release(id string) {
	if q.Runner != nil {
		q.Runner.release(id)
	}
}

// Discard takes a message of this node back out of the queue.
func (q *Queue) Discard(id string) error {
	if q.Runner != nil {
		q.Runner.forget(id)
	}
	return q.Spool.Remove(q.Node, id)
}

// Open reads a message of this node's queue.
func (q *Queue) Open(id string) (io.ReadSeekCloser, error) {
	return q.Spool.Open(q.Node, id)
}

func (q *Queue) signingDomain(from string, header []byte) (*dkim.SignOptions, bool) {
	var domains []string
	if m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n"))); err == nil {
		if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
			domains = append(domains, domainOf(a.Address))
		}
	}
	domains = append(domains, domainOf(from))
	for _, d := range domains {
		if d == "" {
			continue
		}
		if opts, ok := q.Signer(d); ok {
			return opts, true
		}
	}
	return nil, false
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// owner finds the node whose queue holds id.
func (q *Queue) owner(id string) (string, *Envelope, error) {
	if !mailcluster.ValidQueueID(id) {
		return "", nil, ErrNotFound
	}
	nodes, err := q.Spool.Nodes()
	if err != nil {
		return "", nil, err
	}
	for _, n := range nodes {
		env, err := q.Spool.Envelope(n, id)
		if err == nil {
			return n, env, nil
		}
		if err != ErrNotFound {
			return "", nil, err
		}
	}
	return "", nil, ErrNotFound
}

func view(node string, env *Envelope) mailcluster.QueuedMessage {
	return mailcluster.QueuedMessage{ID: env.ID, Node: node, From: env.From, Recipients: env.Rcpts, Size: env.Size,
		Created: env.Created, NextAttempt: env.NextAttempt, Attempts: env.Attempts, Warned: env.Warned, Subject: env.Subject}
}

// Message returns one queued message, whichever node owns it.
func (q *Queue) Message(id string) (*mailcluster.QueuedMessage, error) {
	n, env, err := q.owner(id)
	if err != nil {
		return nil, err
	}
	m := view(n, env)
	return &m, nil
}

// List returns up to limit queued messages, oldest first, after the id
// cursor ("" from the start); node "" lists every node's queue. next is
// the cursor of the following page, "" at the end.
func (q *Queue) List(node string, limit int, cursor string) ([]mailcluster.QueuedMessage, string, error) {
	nodes := []string{node}
	if node == "" {
		var err error
		if nodes, err = q.Spool.Nodes(); err != nil {
			return nil, "", err
		}
	}
	type ref struct{ id, node string }
	var all []ref
	for _, n := range nodes {
		ids, err := q.Spool.IDs(n)
		if err != nil {
			return nil, "", err
		}
		for _, id := range ids {
			if id > cursor {
				all = append(all, ref{id, n})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].id < all[j].id })
	var out []mailcluster.QueuedMessage
	next := ""
	for _, r := range all {
		if len(out) == limit {
			next = out[len(out)-1].ID
			break
		}
		env, err := q.Spool.Envelope(r.node, r.id)
		if err != nil {
			continue // gone since the listing
		}
		out = append(out, view(r.node, env))
	}
	return out, next, nil
}

// Retry asks the owner of a message to attempt it now.
func (q *Queue) Retry(id string) error {
	n, _, err := q.owner(id)
	if err != nil {
		return err
	}
	return q.Spool.AskRetry(n, id)
}

// Delete removes a message from the queue without a notice to its
// sender.
func (q *Queue) Delete(id string) error {
	n, _, err := q.owner(id)
	if err != nil {
		return err
	}
	return q.Spool.Remove(n, id)
}

// Stats counts every node's queue (reading the envelopes).
func (q *Queue) Stats() (map[string]mailcluster.QueueStats, error) {
	nodes, err := q.Spool.Nodes()
	if err != nil {
		return nil, err
	}
	out := map[string]mailcluster.QueueStats{}
	for _, n := range nodes {
		ids, err := q.Spool.IDs(n)
		if err != nil {
			return nil, err
		}
		var st mailcluster.QueueStats
		for _, id := range ids {
			env, err := q.Spool.Envelope(n, id)
			if err != nil {
				continue
			}
			st.Messages++
			st.Recipient += len(env.pending())
			if env.Attempts > 0 {
				st.Deferred++
			}
			if st.Oldest.IsZero() || env.Created.Before(st.Oldest) {
				st.Oldest = env.Created
			}
		}
		out[n] = st
	}
	return out, nil
}
