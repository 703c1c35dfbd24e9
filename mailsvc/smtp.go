package mailsvc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailcluster/internal/maillisten"
	"mailcluster/mailstore"
	"mailcluster/service"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
)

// Settings of [SMTP] in the main ini file, with their defaults.
const (
	SectionSMTP          = mailstore.SectionSMTP
	KeyMaxMessageSize    = mailstore.KeyMaxMessageSize // bytes; default 26214400 (25 MiB); IMAP APPEND's limit too
	KeyMaxRecipients     = "MaxRecipients"             // per message; default 100
	KeyMaxLineLength     = "MaxLineLength"             // default 2000
	KeyReadTimeout       = "ReadTimeout"               // seconds for one command line, or a whole DATA transfer; default 300
	KeyWriteTimeout      = "WriteTimeout"              // seconds for one reply; default 300
	KeyAllowInsecureAuth = "AllowInsecureAuth"         // Yes: AUTH without TLS on submission; default No
	// The connection caps count the open connections of both listeners
	// together, read at every accept; a connection over a cap is answered
	// "421 4.7.0" and closed.
	KeyMaxConnections      = "MaxConnections"      // per node, both listeners; default 1000
	KeyMaxConnectionsPerIP = "MaxConnectionsPerIP" // per client address, both listeners; default 20
	KeyIdleTimeout         = "IdleTimeout"         // seconds without a byte received or sent before the server closes; default 60

	DefaultMaxMessageSize      = mailstore.DefaultMaxMessageSize
	DefaultMaxRecipients       = 100
	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 20
	DefaultIdleTimeout         = 60
)

// reply is an SMTP reply for a refusal; cause, when set, is logged only.
type reply struct {
	code  int
	enh   [3]int
	msg   string
	cause error
}

func (r *reply) Error() string {
	if r.cause != nil {
		return fmt.Sprintf("%d %d.%d.%d %s: %v", r.code, r.enh[0], r.enh[1], r.enh[2], r.msg, r.cause)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.code, r.enh[0], r.enh[1], r.enh[2], r.msg)
}

// The refusals of the mail service.
var (
	errTooLarge       = &reply{code: 552, enh: [3]int{5, 3, 4}, msg: "Message too big"}
	errMailboxBusy    = &reply{code: 451, enh: [3]int{4, 2, 0}, msg: "Mailbox busy; try again later"}
	errRelayDenied    = &reply{code: 554, enh: [3]int{5, 7, 1}, msg: "Relaying denied"}
	errAuthRequired   = &reply{code: 530, enh: [3]int{5, 7, 0}, msg: "Authentication required"}
	errAuthFailed     = &reply{code: 535, enh: [3]int{5, 7, 8}, msg: "Authentication credentials invalid"}
	errTooManyRcpts   = &reply{code: 452, enh: [3]int{4, 5, 3}, msg: "Too many recipients"}
	errUnknownUser    = &reply{code: 550, enh: [3]int{5, 1, 1}, msg: "No such user here"}
	errDisabled       = &reply{code: 550, enh: [3]int{5, 2, 1}, msg: "Mailbox disabled"}
	errBadAddress     = &reply{code: 501, enh: [3]int{5, 1, 3}, msg: "Bad address syntax"}
	errMailboxFull    = &reply{code: 552, enh: [3]int{5, 2, 2}, msg: "Mailbox full"}
	errSenderRequired = &reply{code: 503, enh: [3]int{5, 5, 1}, msg: "MAIL FROM first"}
	errLineTooLong    = &reply{code: 500, enh: [3]int{5, 5, 2}, msg: "Line too long"}
	errBlocked        = &reply{code: 554, enh: [3]int{5, 7, 1}, msg: "Your address is blocked by dynamic screening"}
	errSenderDenied   = &reply{code: 553, enh: [3]int{5, 7, 1}, msg: "Sender address not allowed for this account"}
	errHeaderDenied   = &reply{code: 550, enh: [3]int{5, 7, 1}, msg: "From or Sender header address not allowed for this account"}
	errHeaderTooLarge = &reply{code: 552, enh: [3]int{5, 3, 4}, msg: "Message header too big"}
	errTempLocal      = &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later"}
	errListRefused    = &reply{code: 550, enh: [3]int{5, 7, 1}, msg: "Only members may post to this mailing list"}
	errListLoop       = &reply{code: 554, enh: [3]int{5, 4, 6}, msg: "Mail loop detected: the message has already been through this mailing list"}
)

// maxSubmittedHeader bounds the header section read into memory to check
// the senders of submitted mail, and of mail to a mailing list (to find a
// loop and to replace its Reply-To).
const maxSubmittedHeader = 1 << 20

// smtpError is the one place where any error becomes an SMTP reply; go-smtp
// matches *smtp.SMTPError by type assertion, so it is returned unwrapped.
// Internal error text is logged, never sent.
func smtpError(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var r *reply
	if errors.As(err, &r) {
		if r.cause != nil {
			log.Error("smtp: local failure", "err", r.cause)
		}
		return &smtp.SMTPError{Code: r.code, EnhancedCode: smtp.EnhancedCode(r.enh), Message: r.msg}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se // e.g. go-smtp's own "message too big" from the data reader
	}
	var qe *mailstore.QuotaError
	if errors.As(err, &qe) {
		return smtpError(log, &reply{code: 552, enh: [3]int{5, 2, 2}, msg: "Mailbox of " + qe.Address + " is full"})
	}
	var le *mailstore.LocalError
	if errors.As(err, &le) {
		return smtpError(log, &reply{code: 451, enh: [3]int{4, 3, 0}, msg: "Temporary local problem; try again later", cause: le})
	}
	switch {
	case errors.Is(err, mailstore.ErrTooLarge):
		return smtpError(log, errTooLarge)
	case errors.Is(err, mailstore.ErrBusy):
		return smtpError(log, errMailboxBusy)
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return smtpError(log, errLineTooLong)
	}
	switch mailcluster.ErrorCode(err) {
	case mailcluster.ENOTFOUND:
		return smtpError(log, errUnknownUser)
	case mailcluster.EINVALID:
		return smtpError(log, errBadAddress)
	case mailcluster.EUNAUTHORIZED:
		return smtpError(log, errAuthFailed)
	case mailcluster.EFORBIDDEN:
		// A mailbox path outside the mailbox roots: logged with the
		// account where it was refused (Store.maildir).
		return smtpError(log, errTempLocal)
	}
	log.Error("smtp: unexpected error", "err", err)
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem; try again later"}
}

// ServerConfig configures the listeners.
type ServerConfig struct {
	Hostname string       // announced in the greeting and Received fields
	TLS      *tls.Config  // enables STARTTLS when not nil
	Log      *slog.Logger //
	// Registerer, when non-nil, receives the SMTP metrics:
	// mailcluster_smtp_sessions_total{listener} (inbound, submission),
	// mailcluster_smtp_deliveries_total (messages accepted after DATA) and
	// mailcluster_smtp_rejections_total{code} (every refusal the server
	// decides, by reply code, the 421 of a refused connection included;
	// go-smtp's own replies to malformed commands are not counted). nil
	// records no metrics. NewServer panics when other collectors with
	// those names are registered there already.
	Registerer prometheus.Registerer
	// Queue, when not nil, takes mail for other domains from those who may
	// relay (authenticated submission users, [SMTP] RelayNetworks); nil
	// refuses every relay.
	Queue Queue
}

// Listener names of the SMTP metrics.
const (
	ListenerInbound    = "inbound"
	ListenerSubmission = "submission"
)

// Server runs the inbound (port 25 style) and submission (port 587 style)
// SMTP listeners of a node.
type Server struct {
	store   *mailstore.Store
	dir     Directory
	cfg     ServerConfig
	metrics *smtpMetrics // nil: none
	conns   *connLimiter // open connections of both listeners
	inbound *smtp.Server
	submit  *smtp.Server
}

// smtpMetrics are the collectors of ServerConfig.Registerer; a nil
// *smtpMetrics records nothing. The counters of the listeners are resolved
// once, those of reply codes at their first use.
type smtpMetrics struct {
	sessions   *prometheus.CounterVec
	deliveries prometheus.Counter
	rejections *prometheus.CounterVec

	byListener map[string]prometheus.Counter // ListenerInbound, ListenerSubmission
	byCode     sync.Map                      // int reply code -> prometheus.Counter
}

func newSMTPMetrics(reg prometheus.Registerer) *smtpMetrics {
	m := &smtpMetrics{
		sessions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailcluster", Subsystem: "smtp", Name: "sessions_total",
			Help: "SMTP sessions opened (connections accepted past screening), by listener.",
		}, []string{"listener"})),
		deliveries: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mailcluster", Subsystem: "smtp", Name: "deliveries_total",
			Help: "Messages received over SMTP and delivered to every recipient's mailbox.",
		})),
		rejections: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailcluster", Subsystem: "smtp", Name: "rejections_total",
			Help: "SMTP commands and connections refused, by reply code.",
		}, []string{"code"})),
	}
	m.byListener = map[string]prometheus.Counter{}
	for _, l := range []string{ListenerInbound, ListenerSubmission} {
		m.byListener[l] = m.sessions.WithLabelValues(l) // exports zeros
	}
	return m
}

func (m *smtpMetrics) session(listener string) {
	if m == nil {
		return
	}
	if c, ok := m.byListener[listener]; ok {
		c.Inc()
		return
	}
	m.sessions.WithLabelValues(listener).Inc()
}

func (m *smtpMetrics) delivered() {
	if m != nil {
		m.deliveries.Inc()
	}
}

func (m *smtpMetrics) rejected(code int) {
	if m == nil {
		return
	}
	c, ok := m.byCode.Load(code)
	if !ok {
		c, _ = m.byCode.LoadOrStore(code, m.rejections.WithLabelValues(strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
}

// register registers c with reg, or returns the equal collector that is
// registered there already (several Servers may share a registry). It
// panics on any other conflict, as prometheus.MustRegister does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(fmt.Errorf("mailsvc: register metrics: %w", err))
	}
	return c
}

// NewServer returns a Server delivering through store. Limits and
// timeouts come from [SMTP] settings when the listeners start; the
// message size and recipient limits are also checked per message against
// the settings current at its MAIL command.
func NewServer(store *mailstore.Store, dir Directory, cfg ServerConfig) *Server {
	s := &Server{store: store, dir: dir, cfg: cfg, conns: &connLimiter{}}
	if cfg.Registerer != nil {
		s.metrics = newSMTPMetrics(cfg.Registerer)
	}
	s.inbound = s.newSMTP(false)
	s.submit = s.newSMTP(true)
	return s
}

func (s *Server) intSetting(key string, def int64) int64 {
	return intSetting(s.dir, key, def)
}

// intSetting reads a positive number of [SMTP]; anything else is def.
func intSetting(dir Directory, key string, def int64) int64 {
	if n, err := strconv.ParseInt(dir.Setting(SectionSMTP, key, ""), 10, 64); err == nil && n > 0 {
		return n
	}
	return def
}

func (s *Server) newSMTP(submission bool) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: s, conn: c, submission: submission, log: s.cfg.Log}, nil
	}))
	srv.Domain = s.cfg.Hostname
	srv.TLSConfig = s.cfg.TLS
	srv.MaxMessageBytes = s.intSetting(KeyMaxMessageSize, DefaultMaxMessageSize)
	srv.MaxRecipients = int(s.intSetting(KeyMaxRecipients, DefaultMaxRecipients))
	srv.MaxLineLength = int(s.intSetting(KeyMaxLineLength, 2000))
	srv.ReadTimeout = time.Duration(s.intSetting(KeyReadTimeout, 300)) * time.Second
	srv.WriteTimeout = time.Duration(s.intSetting(KeyWriteTimeout, 300)) * time.Second
	srv.EnableSMTPUTF8 = true
	srv.AllowInsecureAuth = submission && strings.EqualFold(s.dir.Setting(SectionSMTP, KeyAllowInsecureAuth, "No"), "yes")
	srv.ErrorLog = slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn)
	return srv
}

// ServeInbound serves inbound SMTP on ln until Close.
func (s *Server) ServeInbound(ln net.Listener) error {
	return s.inbound.Serve(s.screened(ln, ListenerInbound))
}

// ServeSubmission serves submission on ln until Close.
func (s *Server) ServeSubmission(ln net.Listener) error {
	return s.submit.Serve(s.screened(ln, ListenerSubmission))
}

// screened wraps ln: the PROXY header of a load balancer listed in
// [Network] ProxyProtocolFrom is read first (off the accept loop), so
// screening, the caps and the sessions see the real client.
func (s *Server) screened(ln net.Listener, name string) *screenedListener {
	pl := maillisten.NewProxyListener(ln, s.dir, s.cfg.Log)
	return &screenedListener{Listener: pl, dir: s.dir, log: s.cfg.Log, screen: smtpScreen(s.dir, s.cfg.Log), metrics: s.metrics, conns: s.conns, name: name}
}

// screenedListener refuses connections right at connect, with a 421
// reply (RFC 5321 4.2.3) before any session is created: from addresses
// blocked by dynamic screening, and over the connection caps
// ([SMTP] MaxConnections, MaxConnectionsPerIP, read at every accept). The
// connections it lets through are counted until they close, and carry
// the [SMTP] IdleTimeout. It counts the sessions it lets through.
type screenedListener struct {
	net.Listener
	dir     Directory
	log     *slog.Logger
	screen  maillisten.Screen
	metrics *smtpMetrics
	conns   *connLimiter // shared by the listeners of a Server
	name    string       // ListenerInbound or ListenerSubmission
}

func (l *screenedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.screen.Admit(c, true) {
			l.metrics.rejected(421)
			continue
		}
		ip := remoteIP(c)
		release, ok := l.conns.acquire(ip, intSetting(l.dir, KeyMaxConnections, DefaultMaxConnections),
			intSetting(l.dir, KeyMaxConnectionsPerIP, DefaultMaxConnectionsPerIP))
		if !ok {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = fmt.Fprintf(c, "421 4.7.0 Too many connections, try again later\r\n")
			_ = c.Close()
			l.metrics.rejected(421)
			l.log.Debug("smtp: refused a connection over the caps", "ip", ip)
			continue
		}
		l.metrics.session(l.name)
		idle := time.Duration(intSetting(l.dir, KeyIdleTimeout, DefaultIdleTimeout)) * time.Second
		return &limitedConn{Conn: c, idle: idle, release: release}, nil
	}
}

// smtpScreen refuses, with a 421 reply, connections while the node is
// not in service and from addresses that dynamic screening blocks.
func smtpScreen(dir Directory, log *slog.Logger) maillisten.Screen {
	return maillisten.Screen{Dir: dir, Log: log, Protocol: "smtp",
		NotServing: "421 4.3.2 This node is not in service yet (not registered in its cluster); try another\r\n",
		Blocked: func(ip string) string {
			return fmt.Sprintf("421 4.7.0 Your address %s is blocked by dynamic screening; closing connection\r\n", ip)
		}}
}

func remoteIP(c net.Conn) string { return maillisten.RemoteIP(c) }

// Close stops both listeners and ends open sessions.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err1 := s.inbound.Shutdown(ctx)
	err2 := s.submit.Shutdown(ctx)
	if err1 != nil && !errors.Is(err1, smtp.ErrServerClosed) {
		return err1
	}
	if err2 != nil && !errors.Is(err2, smtp.ErrServerClosed) {
		return err2
	}
	return nil
}

// session is one SMTP connection.
type session struct {
	srv        *Server
	conn       *smtp.Conn
	submission bool
	log        *slog.Logger

	user   *mailcluster.Account // authenticated user (submission)
	sender *mailcluster.Account // user as read again at MAIL (submission)
	from   string
	mail   bool
	rcpts  []*mailcluster.Account   // receive the message as sent: accounts, alias targets, postmasters
	lists  []*mailcluster.Recipient // mailing lists (and posts held for review): one copy each
	remote []string                 // recipients in other domains, for the outbound queue

	// The [SMTP] limits of the transaction, read at its MAIL.
	maxSize, maxRcpts int64

	// confined holds the mailbox paths found inside the mailbox roots at
	// an RCPT of this connection, so that the next messages to the same
	// mailbox skip that early check; the store checks every path again
	// whenever it writes a message (Store.DeliverCopies), so a path
	// refused since is still refused, at the end of DATA.
	confined map[string]bool
}

var _ smtp.AuthSession = (*session)(nil)

// refuse turns err into the SMTP reply (see smtpError) and counts it.
func (s *session) refuse(err error) error {
	reply := smtpError(s.log, err)
	var se *smtp.SMTPError
	if errors.As(reply, &se) {
		s.srv.metrics.rejected(se.Code)
	}
	return reply
}

func (s *session) Reset() {
	s.from, s.mail, s.rcpts, s.lists, s.remote, s.sender = "", false, nil, nil, nil, nil
}

func (s *session) Logout() error { return nil }

// AuthMechanisms offers PLAIN and LOGIN on submission only.
func (s *session) AuthMechanisms() []string {
	if !s.submission {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements AUTH PLAIN (RFC 4616) and LOGIN.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.submission {
		return nil, s.refuse(smtp.ErrAuthUnsupported)
	}
	check := func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return s.refuse(errAuthFailed)
		}
		ctx := mailcluster.NewContextWithClientIP(context.Background(), remoteIP(s.conn.Conn()))
		a, err := s.srv.dir.AuthenticateUser(service.Anonymous(ctx), username, password)
		if err != nil {
			if mailcluster.ErrorCode(err) == mailcluster.EFORBIDDEN {
				return s.refuse(errBlocked)
			}
			return s.refuse(errAuthFailed)
		}
		s.user = a
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: func(u, p string) error { return check("", u, p) }}, nil
	}
	return nil, s.refuse(smtp.ErrAuthUnknownMechanism)
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.submission && s.user == nil {
		return s.refuse(errAuthRequired)
	}
	max := s.srv.intSetting(KeyMaxMessageSize, DefaultMaxMessageSize)
	if opts != nil && opts.Size > max {
		return s.refuse(errTooLarge)
	}
	s.maxSize, s.maxRcpts = max, s.srv.intSetting(KeyMaxRecipients, DefaultMaxRecipients)
	if from != "" {
		if _, _, err := splitAny(from); err != nil {
			return s.refuse(errBadAddress)
		}
	}
	if s.submission {
		a, err := s.sendingAccount(from)
		if err != nil {
			return s.refuse(err)
		}
		s.sender = a
	}
	s.from, s.mail = from, true
	return nil
}

// sendingAccount reads the authenticated account again (so that a change
// of its SendAs applies at once) and checks that it may use the envelope
// sender from; the null sender is not allowed on submission.
func (s *session) sendingAccount(from string) (*mailcluster.Account, error) {
	a, err := s.srv.dir.LookupAccount(s.user.Address())
	if err != nil {
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return nil, errSenderDenied // deleted since AUTH
		}
		return nil, err
	}
	if from == "" || !a.MaySendAs(from) {
		s.log.Info("smtp: submission sender refused", "account", a.Address(), "from", from)
		return nil, errSenderDenied
	}
	return a, nil
}

func splitAny(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || strings.ContainsAny(addr, " <>\r\n") {
		return "", "", errBadAddress
	}
	return addr[:i], addr[i+1:], nil
}

// Rcpt accepts a recipient in a local domain, or the bare "postmaster"
// (RFC 5321 4.5.1), as the Directory resolves it: an account, an alias
// (its target), the domain's postmaster, or a mailing list (one recipient
// toward [SMTP] MaxRecipients, whatever its size). A mailbox named twice,
// directly or through an alias, gets one copy.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.mail {
		return s.refuse(errSenderRequired)
	}
	if int64(len(s.rcpts)+len(s.lists)+len(s.remote)) >= s.maxRcpts {
		return s.refuse(errTooManyRcpts)
	}
	if !strings.EqualFold(to, mailcluster.Postmaster) {
		_, domain, err := splitAny(to)
		if err != nil {
			return s.refuse(errBadAddress)
		}
		if !s.srv.dir.IsLocalDomain(domain) {
			if err := s.relayRcpt(to); err != nil {
				if err == errRelayDenied {
					s.log.Info("smtp: relay refused", "to", to, "from", s.from, "ip", remoteIP(s.conn.Conn()))
				}
				return s.refuse(err)
			}
			return nil
		}
	}
	r, err := s.srv.dir.ResolveRecipient(to, s.from)
	if err != nil {
		switch mailcluster.ErrorCode(err) {
		case mailcluster.EINVALID:
			return s.refuse(errUnknownUser) // an address we could never have
		case mailcluster.EFORBIDDEN:
			s.log.Info("smtp: mailing list refused the sender", "list", to, "from", s.from)
			return s.refuse(errListRefused)
		}
		return s.refuse(err)
	}
	if r.List != nil && !r.Review {
		for _, l := range s.lists {
			if l.List.Address() == r.List.Address() && !l.Review {
				return nil // the same list twice: one copy for its members
			}
		}
		s.lists = append(s.lists, r)
		return nil
	}
	// One mailbox: an account, an alias's target, a postmaster, or the
	// owner of a moderated list holding a post for review.
	if len(r.Accounts) == 0 {
		return s.refuse(errDisabled) // the account was left out as disabled
	}
	for _, a := range r.Accounts {
		if a.Disabled {
			return s.refuse(errDisabled)
		}
		if s.srv.store.OverQuota(a, 0, 0) {
			return s.refuse(errMailboxFull)
		}
		if err := s.checkMailboxPath(a); err != nil {
			return s.refuse(err)
		}
	}
	if r.Review {
		for _, l := range s.lists {
			if l.List.Address() == r.List.Address() && l.Review {
				return nil
			}
		}
		s.lists = append(s.lists, r)
		return nil
	}
	for _, a := range r.Accounts {
		if !containsAccount(s.rcpts, a) {
			s.rcpts = append(s.rcpts, a)
		}
	}
	return nil
}

// checkMailboxPath refuses an account whose mailbox path is outside the
// mailbox roots, once per path and connection (see session.confined).
func (s *session) checkMailboxPath(a *mailcluster.Account) error {
	if s.confined[a.MailboxPath] {
		return nil
	}
	if _, err := s.srv.store.MailboxDir(a); err != nil {
		return err
	}
	if s.confined == nil {
		s.confined = map[string]bool{}
	}
	if len(s.confined) < maxConfinedPaths {
		s.confined[a.MailboxPath] = true
	}
	return nil
}

// maxConfinedPaths bounds session.confined.
const maxConfinedPaths = 256

func containsAccount(as []*mailcluster.Account, a *mailcluster.Account) bool {
	for _, b := range as {
		if b.Address() == a.Address() {
			return true
		}
	}
	return false
}

// Data delivers the message: one copy for the direct recipients, and one
// per mailing list with its list header fields (see listCopies), all in
// one transaction. A message that has already passed through one of its
// lists is refused as a loop, delivered to no one.
func (s *session) Data(r io.Reader) error {
	if len(s.rcpts)+len(s.lists)+len(s.remote) == 0 {
		return s.refuse(errSenderRequired)
	}
	max := s.maxSize
	if s.submission && s.sender == nil {
		return s.refuse(errSenderRequired)
	}
	var raw []byte // the message's header section, when it is read first
	body := r
	if s.submission || len(s.lists) > 0 {
		br := bufio.NewReader(r)
		h, err := readHeader(br, min(max, maxSubmittedHeader))
		if err != nil {
			return s.refuse(err)
		}
		if s.submission {
			if err := s.checkHeaderSenders(h); err != nil {
				return s.refuse(err)
			}
		}
		raw, body = h, br
	}
	for _, l := range s.lists {
		if hasListID(raw, listID(l.List)) {
			s.log.Info("smtp: mail loop through a mailing list refused", "list", l.List.Address(), "from", s.from)
			return s.refuse(errListLoop)
		}
	}
	var err error
	completed := s.completeHeader(raw)
	if out := s.listOutbound(completed); len(s.remote)+len(out) > 0 {
		err = s.relayData(raw, completed, body, max, out)
	} else {
		err = s.deliverLocal(raw, body, max)
	}
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return s.refuse(smtp.ErrDataTooLarge)
		}
		return s.refuse(err)
	}
	s.srv.metrics.delivered()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("delivered", "from", s.from, "to", s.recipientList())
	}
	return nil
}

// recipientList returns the addresses of the transaction's mailboxes,
// lists and remote recipients, separated by commas.
func (s *session) recipientList() string {
	var sb strings.Builder
	add := func(a string) {
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(a)
	}
	for _, a := range s.rcpts {
		add(a.Address())
	}
	for _, l := range s.lists {
		add(l.List.Address())
	}
	for _, a := range s.remote {
		add(a)
	}
	return sb.String()
}

// listCopies returns the copies of the session's mailing lists, after
// the direct copy: a list's members get the message with the list's
// header fields (listHeader) and, in reply-to mode "list", its Reply-To
// replaced; a post held for review goes to the list's owner with only
// reviewHeader added. A mailbox already receiving a copy (directly, or
// through a list named before) gets no second one. The lists' outside
// members get theirs through the queue (listOutbound).
func (s *session) listCopies(raw []byte) []mailstore.Copy {
	var copies []mailstore.Copy
	seen := map[string]bool{}
	for _, a := range s.rcpts {
		seen[a.Address()] = true
	}
	for _, l := range s.lists {
		var accs []*mailcluster.Account
		for _, a := range l.Accounts {
			if !seen[a.Address()] {
				seen[a.Address()] = true
				accs = append(accs, a)
			}
		}
		if len(accs) == 0 {
			if len(l.External) == 0 || l.Review {
				s.log.Info("smtp: mailing list copy has no mailbox to go to", "list", l.List.Address(), "review", l.Review)
			}
			continue
		}
		var header []byte
		if l.Review {
			header = append(s.traceHeader(l.List.Address()), reviewHeader(l.List)...)
			header = append(header, raw...)
		} else {
			header = s.listCopyHeader(l.List, raw, true)
		}
		copies = append(copies, mailstore.Copy{Header: header, Accounts: accs, Optional: !l.Review, List: l.List.Address()})
	}
	return copies
}

// readHeader reads the header section of a message: up to and including
// the empty line that ends it, or all of a message that has no body. A
// header longer than max bytes is refused.
func readHeader(br *bufio.Reader, max int64) ([]byte, error) {
	var raw []byte
	lineStart := 0
	for {
		chunk, err := br.ReadSlice('\n')
		raw = append(raw, chunk...)
		if int64(len(raw)) > max {
			return nil, errHeaderTooLarge
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue // the same line goes on
		case errors.Is(err, io.EOF):
			return raw, nil
		case err != nil:
			return nil, err
		}
		if line := string(raw[lineStart:]); line == "\r\n" || line == "\n" {
			return raw, nil
		}
		lineStart = len(raw)
	}
}

// checkHeaderSenders checks that every address of the From fields and the
// Sender fields of a submitted message's header is one the account may
// send as (RFC 5322 3.6.2). A header that cannot be parsed, or a From or
// Sender field without a parsable address, is refused; a message without
// From (which RFC 6409 8.6 lets an MSA complete) names no one and passes.
func (s *session) checkHeaderSenders(raw []byte) error {
	// A header without a body lacks the empty line that ends it.
	m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n")))
	if err != nil {
		s.log.Info("smtp: submitted header cannot be parsed", "account", s.sender.Address(), "err", err)
		return errHeaderDenied
	}
	for _, field := range []string{"From", "Sender"} {
		for _, v := range m.Header[field] {
			list, err := mail.ParseAddressList(v)
			if err != nil || len(list) == 0 {
				s.log.Info("smtp: submitted sender field cannot be parsed", "account", s.sender.Address(), "field", field)
				return errHeaderDenied
			}
			for _, addr := range list {
				if !s.sender.MaySendAs(addr.Address) {
					s.log.Info("smtp: submitted sender field refused", "account", s.sender.Address(), "field", field, "address", addr.Address)
					return errHeaderDenied
				}
			}
		}
	}
	return nil
}

// traceHeader returns the Return-Path and Received fields (RFC 5321 4.4);
// the Received field names forAddr ("" for none), the one recipient of the
// copy.
func (s *session) traceHeader(forAddr string) []byte {
	return s.appendTraceHeader(nil, forAddr)
}

// appendTraceHeader appends traceHeader(forAddr) to b.
func (s *session) appendTraceHeader(b []byte, forAddr string) []byte {
	b = append(b, "Return-Path: <"...)
	b = append(b, s.from...)
	b = append(b, ">\r\nReceived: from "...)
	for _, c := range []byte(s.conn.Hostname()) {
		if c >= 0x21 && c <= 0x7e && c != '(' && c != ')' {
			b = append(b, c)
		}
	}
	b = append(b, " (["...)
	if a, ok := s.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		if t, err := a.IP.AppendText(b); err == nil {
			b = t
		} else {
			b = append(b, a.IP.String()...)
		}
	} else {
		b = append(b, "unknown"...)
	}
	b = append(b, "])\r\n\tby "...)
	b = append(b, s.srv.cfg.Hostname...)
	b = append(b, " (mailcluster) with ESMTP"...)
	if _, ok := s.conn.TLSConnectionState(); ok {
		b = append(b, 'S')
	}
	if s.user != nil {
		b = append(b, 'A')
	}
	if forAddr != "" {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, forAddr...)
		b = append(b, '>')
	}
	b = append(b, ";\r\n\t"...)
	b = time.Now().AppendFormat(b, time.RFC1123Z)
	return append(b, "\r\n"...)
}

// loginServer is the server side of the (obsolete but common) LOGIN SASL
// mechanism: it asks for the user name, then the password.
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) > 0 { // initial response carries the user name
			l.username = string(response)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, errors.New("mailsvc: unexpected LOGIN step")
}
