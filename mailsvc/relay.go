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
// makes its local copies (if any) from the queued file, so that the body
// is read once; when the local copies fail, the queued message is taken
// back before its first attempt, so the client's retry sends it once.
func (s *session) relayData(raw []byte, body io.Reader, max int64) error {
	q := s.srv.cfg.Queue
	trace := s.traceHeader("")
	header := append(trace, s.completeHeader(raw)...)
	local := len(s.rcpts)+len(s.lists) > 0
	id, err := q.Enqueue(s.from, s.remote, header, body, max-int64(len(raw)), local)
	if err != nil {
		if errors.Is(err, mailstore.ErrTooLarge) {
			return errTooLarge
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		return &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later", cause: err}
	}
	if !local {
		s.log.Info("smtp: queued for relay", "id", id, "from", s.from, "to", strings.Join(s.remote, ","))
		return nil
	}
	f, err := q.Open(id)
	if err == nil {
		_, err = f.Seek(int64(len(header)), io.SeekStart)
		if err == nil {
			err = s.deliverLocal(raw, f, max)
		}
		f.Close()
	}
	if err != nil {
		if derr := q.Discard(id); derr != nil {
			s.log.Error("smtp: a queued message whose local copies failed could not be taken back", "id", id, "err", derr)
		}
		return err
	}
	q.Release(id)
	s.log.Info("smtp: queued for relay", "id", id, "from", s.from, "to", strings.Join(s.remote, ","))
	return nil
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

// deliverLocal delivers the local copies of the message (direct
// recipients and mailing lists) with body read from r.
func (s *session) deliverLocal(raw []byte, body io.Reader, max int64) error {
	var copies []mailstore.Copy
	if len(s.rcpts) > 0 {
		forAddr := ""
		if len(s.rcpts) == 1 {
			forAddr = s.rcpts[0].Address()
		}
		copies = append(copies, mailstore.Copy{Header: append(s.traceHeader(forAddr), raw...), Accounts: s.rcpts})
	}
	copies = append(copies, s.listCopies(raw)...)
	_, err := s.srv.store.DeliverCopies(context.Background(), copies, body, max-int64(len(raw)), true)
	return err
}
