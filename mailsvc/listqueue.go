package mailsvc

// A mailing list's outside members in domains the cluster does not serve
// (mailcluster.Recipient.External) get the list's copy through the
// outbound queue: the same copy the local members get (trace fields, the
// list's header fields, its Reply-To), as one queued message per list
// whose envelope sender is the list's bounce address (listBounce), so that
// delivery failures go to whoever runs the list, never to the poster
// (who could be anyone a list admits, or a forged address) and never
// reveal the members' addresses.
//
// This is no open relay: whoever posts, only the list's configured
// outside members receive it, and only lists that admit the poster pass
// Rcpt. A bounce (the null sender) is never passed on to outside members,
// so that two lists, or a list and a remote autoresponder, cannot bounce
// mail back and forth; a loop through the list itself is refused by its
// List-Id (hasListID) before anything is queued.

import (
	"bytes"
	"strings"

	"mailcluster"
)

// outMessage is one message for the outbound queue.
type outMessage struct {
	from   string   // the envelope sender
	rcpts  []string // recipients outside the cluster's domains
	header []byte   // written before the body
	list   string   // the list's address; "" for the session's relayed recipients
}

// listBounce returns the envelope sender of the queued copies of list l:
// its owner (an account of its domain), else postmaster@ of its domain;
// "" when the stored list is not valid.
func listBounce(l *mailcluster.MailingList) string {
	if owner := safeAddress(l.Owner); owner != "" {
		return owner
	}
	addr := listAddress(l)
	if addr == "" {
		return ""
	}
	return mailcluster.Postmaster + "@" + addr[strings.IndexByte(addr, '@')+1:]
}

// listOutbound returns the queued copies of the session's mailing lists
// for their outside members, made from raw (the message's header
// section, completed for submission): members already receiving the
// message as direct relayed recipients, or through a list named before,
// get no second copy. Lists are skipped, with a log line, when there is
// no queue (their local members still get the message) and for a bounce.
func (s *session) listOutbound(raw []byte) []outMessage {
	var out []outMessage
	seen := map[string]bool{}
	for _, r := range s.remote {
		seen[strings.ToLower(r)] = true
	}
	for _, l := range s.lists {
		if l.Review || len(l.External) == 0 {
			continue
		}
		addr := l.List.Address()
		switch {
		case s.srv.cfg.Queue == nil:
			s.log.Warn("smtp: no outbound queue: a mailing list's outside members do not get the message", "list", addr, "members", len(l.External))
			continue
		case s.from == "":
			s.log.Info("smtp: a bounce to a mailing list is not passed on to its outside members", "list", addr)
			continue
		}
		from := listBounce(l.List)
		if from == "" {
			continue // never stored: names and domains are validated
		}
		var rcpts []string
		for _, a := range l.External {
			if a = safeAddress(a); a != "" && !seen[a] {
				seen[a] = true
				rcpts = append(rcpts, a)
			}
		}
		if len(rcpts) == 0 {
			continue
		}
		out = append(out, outMessage{from: from, rcpts: rcpts, header: s.listCopyHeader(l.List, raw, false), list: addr})
	}
	return out
}

// listCopyHeader returns the header of the members' copy of a list post:
// the trace fields (without Return-Path for a queued copy, which the
// final delivery adds), the list's fields and raw (without its Reply-To
// fields in reply-to mode "list").
func (s *session) listCopyHeader(l *mailcluster.MailingList, raw []byte, local bool) []byte {
	header := s.traceHeader(l.Address())
	if !local {
		if i := bytes.Index(header, []byte("\r\n")); i >= 0 {
			header = header[i+2:] // the Return-Path field comes first
		}
	}
	header = append(header, listHeader(l)...)
	if l.ReplyTo == mailcluster.ListReplyToList {
		return append(header, removeFields(raw, "Reply-To")...)
	}
	return append(header, raw...)
}
