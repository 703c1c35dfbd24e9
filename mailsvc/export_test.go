package mailsvc

// SplitAny exports splitAny, the split of SMTP envelope addresses, to the
// tests.
var SplitAny = splitAny

// ConnLimiter exports the counter of open SMTP connections to the tests.
type ConnLimiter = connLimiter

// Acquire exports connLimiter.acquire to the tests.
func (l *ConnLimiter) Acquire(ip string, maxTotal, maxPerIP int64) (release func(), ok bool) {
	return l.acquire(ip, maxTotal, maxPerIP)
}

// Rcpt runs MAIL FROM:<from> and RCPT TO:<to> on a new inbound session of
// s, without a connection (go-smtp may refuse a path before a session
// sees it), and returns the addresses of the mailboxes and lists the
// session then holds.
func (s *Server) Rcpt(from, to string) ([]string, error) {
	sess := &session{srv: s, log: s.cfg.Log}
	if err := sess.Mail(from, nil); err != nil {
		return nil, err
	}
	if err := sess.Rcpt(to, nil); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range sess.rcpts {
		out = append(out, a.Address())
	}
	for _, l := range sess.lists {
		out = append(out, l.List.Address())
	}
	return out, nil
}

// List header fields and header section edits, exported to the tests.
var (
	ListHeader        = listHeader
	ReviewHeader      = reviewHeader
	DescriptionPhrase = descriptionPhrase
	RemoveFields      = removeFields
	HasListID         = hasListID
)
