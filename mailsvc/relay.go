package mailsvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"mailcluster/mailstore"

	"github.com/emersion/go-smtp"

	"mailcluster"
)

// Queue is the outbound queue relayed mail goes to (the node gives its
// *mailqueue.Queue).
type Queue interface {
	// Enqueue queues a message durably; hold delays its first attempt
	// until Release (so that a message whose local copies then fail can
	// be taken back with Discard before anything is sent).
	Enqueue(from string, rcpts []string, header []byte, body io.Reader, maxBody int64, hold bool) (string, error)
	Release(id string)
	// Discard takes a message back out of the queue.
	Discard(id string) error
	// Open reads a queued message back (its local copies are made from it).
	Open(id string) (io.ReadSeekCloser, error)
}

var errRelayAddress = &reply{code: 553, enh: [3]int{5, 1, 3}, msg: "Relayed recipient must be a plain address (no %, !, quotes, source routes or address literals)"}

// reRelayDomain is a DNS domain name of at least two labels.
var reRelayDomain = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// relayAllowed reports whether the session may send mail to other
// domains: an authenticated submission user, or an inbound client in
// [SMTP] RelayNetworks; never without a queue.
func (s *session) relayAllowed() bool {
	if s.srv.cfg.Queue == nil {
		return false
	}
	if s.submission {
		return s.user != nil && s.sender != nil
	}
	nets, err := mailcluster.ParseNetworks(s.srv.dir.Setting(SectionSMTP, mailcluster.KeyRelayNetworks, ""))
	if err != nil || len(nets) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(remoteIP(s.conn.Conn()))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// relayRcpt accepts a recipient outside the cluster's domains for the
// queue. The classic open-relay tricks are refused even to those who may
// relay: a '%' or '!' in the local part (another hop would read it as a
// route), a quoted local part, a source route (go-smtp drops the route
// before Rcpt, and a route left in the address has '@' or ':' in the
// local part) and address literals.
func (s *session) relayRcpt(to string) error {
	if !s.relayAllowed() {
		return errRelayDenied
	}
	local, domain, err := splitAny(to)
	if err != nil {
		return errBadAddress
	}
	if local == "" || len(local) > 64 || strings.ContainsAny(local, "%!\"@:,;\\[]() ") || !reRelayDomain.MatchString(domain) || len(to) > 254 {
		return errRelayAddress
	}
	addr := local + "@" + strings.ToLower(domain)
	for _, r := range s.remote {
		if strings.EqualFold(r, addr) {
			return nil
		}
	}
	s.remote = append(s.remote, addr)
	return nil
}

// relayData queues the message for the session's remote recipients and
// the lists' copies for their outside members (out, see listOutbound),
// and makes its local copies (if any); completed is raw with the fields
// completeHeader adds. The body is read once, by the
// first queued message; the other queued messages and the local copies
// are made from its file. Everything is queued held when there is more
// than one message or a local copy, and released only when all of it has
// succeeded: when anything fails, every queued message is taken back
// before its first attempt, so the client's retry sends it once.
func (s *session) relayData(raw, completed []byte, body io.Reader, max int64, out []outMessage) error {
	q := s.srv.cfg.Queue
	if len(s.remote) > 0 {
		trace := s.traceHeader("")
		out = append([]outMessage{{from: s.from, rcpts: s.remote, header: append(trace, completed...)}}, out...)
	}
	copies := s.localCopies(raw)
	hold := len(copies) > 0 || len(out) > 1
	maxBody := max - int64(len(raw))
	var ids []string
	fail := func(err error) error {
		for _, id := range ids {
			if derr := q.Discard(id); derr != nil {
				s.log.Error("smtp: a queued message whose other copies failed could not be taken back", "id", id, "err", derr)
			}
		}
		return err
	}
	for i, m := range out {
		var err error
		var id string
		if i == 0 {
			id, err = q.Enqueue(m.from, m.rcpts, m.header, body, maxBody, hold)
		} else {
			err = s.queuedBody(ids[0], len(out[0].header), func(r io.Reader) error {
				id, err = q.Enqueue(m.from, m.rcpts, m.header, r, maxBody, hold)
				return err
			})
		}
		if err != nil {
			return fail(queueError(err))
		}
		ids = append(ids, id)
	}
	if len(copies) > 0 {
		if err := s.queuedBody(ids[0], len(out[0].header), func(r io.Reader) error {
			_, err := s.srv.store.DeliverCopies(context.Background(), copies, r, maxBody, true)
			return err
		}); err != nil {
			return fail(err)
		}
	}
	for i, id := range ids {
		if hold {
			q.Release(id)
		}
		if out[i].list != "" {
			s.log.Info("smtp: mailing list copy queued for its outside members", "id", id, "list", out[i].list, "from", out[i].from, "members", len(out[i].rcpts))
		} else {
			s.log.Info("smtp: queued for relay", "id", id, "from", s.from, "to", strings.Join(s.remote, ","))
		}
	}
	return nil
}

// queueError turns a failure to queue into the session's reply.
func queueError(err error) error {
	if errors.Is(err, mailstore.ErrTooLarge) {
		return errTooLarge
	}
	if errors.Is(err, smtp.ErrDataTooLarge) {
		return smtp.ErrDataTooLarge
	}
	return &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later", cause: err}
}

// queuedBody calls read with the body of queued message id (whose header
// is headerLen bytes long), read from its file.
func (s *session) queuedBody(id string, headerLen int, read func(io.Reader) error) error {
	f, err := s.srv.cfg.Queue.Open(id)
	if err != nil {
		return &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later", cause: err}
	}
	defer f.Close()
	if _, err := f.Seek(int64(headerLen), io.SeekStart); err != nil {
		return &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later", cause: err}
	}
	return read(f)
}

// completeHeader adds the Date and Message-ID fields a submitted message
// lacks (RFC 6409 8.2, 8.3), so that every relayed message has both.
func (s *session) completeHeader(raw []byte) []byte {
	if !s.submission {
		return raw
	}
	var add []byte
	if !hasField(raw, "Date") {
		add = fmt.Appendf(add, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	}
	if !hasField(raw, "Message-ID") {
		add = fmt.Appendf(add, "Message-ID: <%d.%s@%s>\r\n", time.Now().UnixNano(), strings.ToLower(rand.Text()[:16]), s.srv.cfg.Hostname)
	}
	if len(add) == 0 {
		return raw
	}
	return append(add, raw...)
}

// hasField reports whether a header section has a field of that name.
func hasField(raw []byte, name string) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if i := bytes.IndexByte(line, ':'); i > 0 && len(line) > 0 && line[0] != ' ' && line[0] != '\t' &&
			strings.EqualFold(strings.TrimSpace(string(line[:i])), name) {
			return true
		}
	}
	return false
}

// localCopies returns the local copies of the message: one for the
// direct recipients, then the mailing lists' (listCopies).
func (s *session) localCopies(raw []byte) []mailstore.Copy {
	var copies []mailstore.Copy
	if len(s.rcpts) > 0 {
		forAddr := ""
		if len(s.rcpts) == 1 {
			forAddr = s.rcpts[0].Address()
		}
		header := s.appendTraceHeader(make([]byte, 0, 256+len(forAddr)+len(s.from)+len(raw)), forAddr)
		copies = append(copies, mailstore.Copy{Header: append(header, raw...), Accounts: s.rcpts})
	}
	return append(copies, s.listCopies(raw)...)
}

// deliverLocal delivers the local copies of the message (direct
// recipients and mailing lists) with body read from r.
func (s *session) deliverLocal(raw []byte, body io.Reader, max int64) error {
	_, err := s.srv.store.DeliverCopies(context.Background(), s.localCopies(raw), body, max-int64(len(raw)), true)
	return err
}
