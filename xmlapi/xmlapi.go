// Package xmlapi implements the XML-API of a mailcluster node: the classic
// mail-server management envelope (an HTTP POST of
// <MDaemon><API><Request><Operation>..</Operation><Parameters>..</Parameters></Request></API></MDaemon>,
// answered by <MDaemon><API><Response><Status/><ServiceVersion/><Result/></Response></API></MDaemon>),
// authenticated with HTTP Basic (RFC 7617) and parsed with etree.
//
// The package is an encoder/decoder between that envelope and the methods
// of *service.Service: it holds no business rules. Validation,
// authorization and the read-only rule of secondaries come from the service;
// this package only translates their errors, in one table (see error.go and
// docs/xml-api.md).
package xmlapi

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/internal/csrf"
	"mailcluster/service"
)

// Service is what the XML-API needs of *service.Service. Every method
// that takes a context acts on behalf of the caller stored in it with
// service.NewContextWithCaller. Errors are *mailcluster.Error values
// whose code is one of EINVALID, ENOTFOUND, ECONFLICT, EREADONLY,
// EUNAVAILABLE, EFORBIDDEN, ETOOLARGE or EUNAUTHORIZED; anything else is
// treated as internal. Implementations are safe for concurrent use.
type Service interface {
	// Authenticate checks an admin account's address and password and
	// returns the account (without hash). Every credential failure is
	// EUNAUTHORIZED; a client address blocked by dynamic screening (read
	// from the context) is EFORBIDDEN. Failures are counted per address.
	Authenticate(ctx context.Context, address, password string) (*mailcluster.Account, error)
	// NodeInfo describes the local node.
	NodeInfo() mailcluster.NodeInfo

	// FindDomains returns the domains the caller may see, by name.
	FindDomains(ctx context.Context) ([]*mailcluster.Domain, error)
	// FindDomain returns one domain. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindDomain(ctx context.Context, name string) (*mailcluster.Domain, error)
	// CreateDomain adds a domain. Errors: EINVALID, ECONFLICT, EFORBIDDEN,
	// EREADONLY, EUNAVAILABLE.
	CreateDomain(ctx context.Context, d *mailcluster.Domain) (*mailcluster.Domain, error)
	// UpdateDomain changes the non-nil fields of a domain. Errors: as
	// CreateDomain plus ENOTFOUND.
	UpdateDomain(ctx context.Context, name string, upd mailcluster.DomainUpdate) (*mailcluster.Domain, error)
	// DeleteDomain removes a domain (and its accounts when force is set).
	// Errors: EINVALID, ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	DeleteDomain(ctx context.Context, name string, force bool) error

	// FindAccount returns one account without its password hash.
	// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error)
	// FindAccounts returns one page of a domain's accounts and the next
	// cursor ("" on the last page). Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindAccounts(ctx context.Context, f mailcluster.AccountFilter) ([]*mailcluster.Account, string, error)
	// CreateAccount adds an account. Errors: EINVALID, ENOTFOUND, ECONFLICT,
	// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	CreateAccount(ctx context.Context, in mailcluster.AccountCreate) (*mailcluster.Account, error)
	// UpdateAccount changes the non-nil fields of an account. Errors: as
	// CreateAccount.
	UpdateAccount(ctx context.Context, domain, mailbox string, upd mailcluster.AccountUpdate) (*mailcluster.Account, error)
	// DeleteAccount removes the account record (not its mail on disk).
	// Errors: EINVALID, ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	DeleteAccount(ctx context.Context, domain, mailbox string) error

	// SettingsFile returns one ini file. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	SettingsFile(ctx context.Context, file string) (*mailcluster.SettingsFile, error)
	// GetSetting returns one ini value. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	GetSetting(ctx context.Context, file, section, key string) (string, error)
	// UpdateSettings sets (or, for nil, deletes) keys in one transaction.
	// Errors: EINVALID, ETOOLARGE, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	UpdateSettings(ctx context.Context, changes map[string]map[string]map[string]*string) error

	// ListBlockedIPs returns every block record (expired ones included)
	// and the node's local decisions. Errors: EFORBIDDEN.
	ListBlockedIPs(ctx context.Context) ([]mailcluster.BlockedIP, error)
	// BlockIP blocks an address until the given time (zero: no expiry).
	// Errors: EINVALID, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	BlockIP(ctx context.Context, ip string, until time.Time, reason string) (*mailcluster.BlockedIP, error)
	// UnblockIP removes an address's block record. Errors: EINVALID,
	// ENOTFOUND, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	UnblockIP(ctx context.Context, ip string) error
	// ListFrozenAccounts returns the frozen accounts the caller may see,
	// without token hashes.
	ListFrozenAccounts(ctx context.Context) ([]mailcluster.FrozenAccount, error)
	// FreezeAccount freezes an account and mails it a thaw token.
	// Errors: EINVALID, ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	FreezeAccount(ctx context.Context, address, reason string) error
	// ThawAccount ends an account's freeze. Errors: EINVALID, ENOTFOUND,
	// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	ThawAccount(ctx context.Context, address string) error

	// Certificates lists the cluster's TLS certificates without their
	// keys (global administrators). Errors: EFORBIDDEN.
	Certificates(ctx context.Context) ([]*mailcluster.Certificate, error)
	// Certificate returns one certificate without its key.
	// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	Certificate(ctx context.Context, name string) (*mailcluster.Certificate, error)
	// ImportCertificate validates a PEM chain (leaf first) and its private
	// key and stores them under name, the key sealed; it returns the
	// certificate without its key. Errors: EINVALID, ETOOLARGE,
	// EFORBIDDEN, EREADONLY, ECONFLICT, EUNAVAILABLE.
	ImportCertificate(ctx context.Context, name, chainPEM, keyPEM string, makeDefault bool) (*mailcluster.Certificate, error)
	// DeleteCertificate removes a certificate. Errors: EINVALID,
	// ENOTFOUND, EFORBIDDEN, EREADONLY, ECONFLICT, EUNAVAILABLE.
	DeleteCertificate(ctx context.Context, name string) error

	// ClusterStatus lists the cluster's nodes (just this one when
	// standalone). Errors: EFORBIDDEN, EUNAVAILABLE.
	ClusterStatus(ctx context.Context) (*mailcluster.ClusterStatus, error)
	// Servers lists the registered servers. Errors: EFORBIDDEN.
	Servers(ctx context.Context) ([]mailcluster.Server, error)
	// RegisterServer admits a node found by name or address after the
	// admission checks (primary only). Errors: EINVALID (refused, with the
	// reason), ECONFLICT (registered already), EFORBIDDEN, EREADONLY,
	// EUNAVAILABLE.
	RegisterServer(ctx context.Context, nameOrAddress string) (*mailcluster.Server, error)
	// RemoveServer unregisters a node (primary only). Errors: EINVALID,
	// ENOTFOUND, ECONFLICT (the primary itself), EFORBIDDEN, EREADONLY,
	// EUNAVAILABLE.
	RemoveServer(ctx context.Context, name string) error
	// ClusterLog returns cluster-log entries of this node or of f.Node,
	// oldest first. Errors: EINVALID, EFORBIDDEN, ENOTFOUND (unknown
	// node), EUNAVAILABLE.
	ClusterLog(ctx context.Context, f mailcluster.ClusterLogFilter) ([]mailcluster.ClusterEvent, error)
}

var _ Service = (*service.Service)(nil)

const (
	// DefaultMaxBodyBytes is the request body limit when Handler.MaxBodyBytes is 0.
	DefaultMaxBodyBytes = 1 << 20
	// APIVersion is the version of the operations this package implements,
	// reported in <Response version> when the request gives none.
	APIVersion = "1"
	// ContentType is the Content-Type of every response.
	ContentType = "application/xml; charset=utf-8"
	// Realm is the HTTP Basic realm announced in WWW-Authenticate.
	Realm = "mailcluster"
)

// Handler serves the XML-API. Mount it at /MdMgmtWS; mounted for every
// method (not only POST) it answers other methods itself with the XML
// method-not-allowed status. It is safe for concurrent use; set the option
// fields before serving.
//
// Dynamic screening needs the client's address: the handler uses the one
// the request context carries (mailcluster.NewContextWithClientIP, set by
// the REST server it is mounted in, which knows the trusted proxies), and
// otherwise the direct peer of the connection.
type Handler struct {
	// MaxBodyBytes limits the request body; 0 (or less) means
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// OnOperation, when set, is called once per answered request with the
	// operation and the <Status> id, for metrics. operation is a supported
	// operation's name, OperationUnknown for any other name, or
	// OperationNone when the request was refused before its envelope was
	// decoded (method, authentication, size, malformed XML); the set of
	// values is bounded. It is called from the serving goroutines and must
	// be safe for concurrent use.
	OnOperation func(operation string, status int)

	svc Service
	log *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler over svc that logs to log (nil: discard).
func NewHandler(svc Service, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{svc: svc, log: log}
}

// Operation labels passed to Handler.OnOperation besides the names of the
// supported operations.
const (
	OperationNone    = "none"    // refused before the envelope was decoded
	OperationUnknown = "unknown" // <Operation> names no supported operation
)

// request is a decoded <Request>.
type request struct {
	el      *etree.Element // the <Request> element, copied into the answer when echo is set
	op      string
	params  *etree.Element // <Parameters>, an empty element when absent
	version string
	echo    bool
}

// ServeHTTP implements http.Handler: method check, content type (XML
// only) and Origin (absent or the server's own) checks, HTTP Basic
// authentication, body limit, envelope decoding, one service call, answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.respond(w, start, nil, errorf(StatusMethodNotAllowed, "Only the POST method is allowed."), nil)
		return
	}
	// A browser can be made to post a form (text/plain and the like) to
	// this URL with cached credentials; it cannot send XML or forge the
	// Origin. Both are refused before the credentials are looked at.
	if !csrf.IsXML(r.Header.Get("Content-Type")) {
		h.respond(w, start, nil, errorf(StatusUnsupportedType, "%s", statuses[StatusUnsupportedType].Message), nil)
		return
	}
	if !csrf.SameOrigin(r) {
		h.log.Info("xmlapi: request from another origin refused", "remote", r.RemoteAddr)
		h.respond(w, start, nil, errorf(StatusForeignOrigin, "%s", statuses[StatusForeignOrigin].Message), nil)
		return
	}
	ctx := withClientIP(r)
	user, password, ok := r.BasicAuth()
	if !ok {
		h.respond(w, start, nil, mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication failed."), nil)
		return
	}
	caller, err := h.svc.Authenticate(ctx, user, password)
	if err != nil {
		switch mailcluster.ErrorCode(err) {
		case mailcluster.EUNAUTHORIZED:
			h.log.Info("xmlapi: authentication failed", "user", user, "remote", r.RemoteAddr)
		case mailcluster.EFORBIDDEN:
			h.log.Info("xmlapi: client address blocked", "user", user, "client", mailcluster.ClientIPFromContext(ctx))
		default:
			h.log.Error("xmlapi: authenticate", "user", user, "err", err)
		}
		h.respond(w, start, nil, err, nil)
		return
	}
	ctx = service.NewContextWithCaller(ctx, caller)

	body, err := h.readBody(w, r)
	if err != nil {
		h.respond(w, start, nil, err, nil)
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		h.log.Debug("xmlapi: malformed request", "user", user, "err", err)
		h.respond(w, start, nil, err, nil)
		return
	}

	result := etree.NewElement("Result")
	err = h.dispatch(ctx, req, result)
	out := translate(err)
	if out.ID == StatusInternal {
		h.log.Error("xmlapi: operation failed", "op", req.op, "user", user, "err", err)
	} else {
		h.log.Debug("xmlapi: request", "op", req.op, "user", user, "status", out.ID,
			"et", time.Since(start).String())
	}
	h.respond(w, start, req, err, result)
}

// withClientIP returns the request's context with the client's address:
// the one already recorded there, else the connection's peer.
func withClientIP(r *http.Request) context.Context {
	ctx := r.Context()
	if mailcluster.ClientIPFromContext(ctx) != "" {
		return ctx
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := mailcluster.NormalizeIP(host); err == nil {
		ctx = mailcluster.NewContextWithClientIP(ctx, ip)
	}
	return ctx
}

// readBody reads the body up to the limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	tooLarge := errorf(StatusTooLarge, "The request is larger than %d bytes.", limit)
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, errorf(StatusMalformed, "The request body could not be read.")
	}
	return body, nil
}

// decodeRequest parses the envelope. DOCTYPE and ENTITY declarations (and
// any other <!...> directive) are refused before and while parsing.
func decodeRequest(body []byte) (*request, error) {
	if bytes.Contains(body, []byte("<!DOCTYPE")) || bytes.Contains(body, []byte("<!ENTITY")) {
		return nil, errorf(StatusMalformed, "DOCTYPE and ENTITY declarations are not allowed.")
	}
	doc := etree.NewDocument()
	doc.ReadSettings.MaxDepth = 64
	doc.ReadSettings.CharsetReader = charsetReader
	if err := doc.ReadFromBytes(body); err != nil {
		return nil, errorf(StatusMalformed, "The request is not well-formed XML%s.", syntaxDetail(err))
	}
	if hasDirective(&doc.Element) {
		return nil, errorf(StatusMalformed, "DOCTYPE and ENTITY declarations are not allowed.")
	}
	roots := doc.ChildElements()
	if len(roots) != 1 || roots[0].Space != "" || roots[0].Tag != "MDaemon" {
		return nil, errorf(StatusMalformed, "The document must have one <MDaemon> element.")
	}
	apis := roots[0].SelectElements("API")
	if len(apis) != 1 {
		return nil, errorf(StatusMalformed, "<MDaemon> must contain one <API> element.")
	}
	reqs := apis[0].SelectElements("Request")
	if len(reqs) != 1 {
		return nil, errorf(StatusMalformed, "<API> must contain one <Request> element.")
	}
	el := reqs[0]
	opEl := el.SelectElement("Operation")
	if opEl == nil || strings.TrimSpace(textOf(opEl)) == "" {
		return nil, errorf(StatusMalformed, "<Request> must contain an <Operation>.")
	}
	params := el.SelectElement("Parameters")
	if params == nil {
		params = etree.NewElement("Parameters")
	}
	echo, _ := mailcluster.ParseFlag(el.SelectAttrValue("echo", "0"))
	return &request{
		el:      el,
		op:      strings.TrimSpace(textOf(opEl)),
		params:  params,
		version: el.SelectAttrValue("version", ""),
		echo:    echo,
	}, nil
}

// charsetReader accepts UTF-8 (and its subset US-ASCII) only.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	}
	return nil, errors.New("only UTF-8 is supported")
}

// syntaxDetail returns a client-safe ": line N: reason" for XML syntax
// errors; they describe the client's own input.
func syntaxDetail(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return ": line " + strconv.Itoa(se.Line) + ": " + se.Msg
	}
	if errors.Is(err, etree.ErrMaxDepth) {
		return ": elements are nested too deeply"
	}
	if strings.Contains(err.Error(), "UTF-8") {
		return ": only UTF-8 is supported"
	}
	return ""
}

func hasDirective(e *etree.Element) bool {
	for _, t := range e.Child {
		switch t := t.(type) {
		case *etree.Directive:
			return true
		case *etree.Element:
			if hasDirective(t) {
				return true
			}
		}
	}
	return false
}

// respond writes the response envelope. req is nil when the request was
// refused before its operation ran (method, authentication, size, XML):
// only then is the HTTP status the table's; an operation's answer is
// always HTTP 200. result is attached only on success.
func (h *Handler) respond(w http.ResponseWriter, start time.Time, req *request, err error, result *etree.Element) {
	out := translate(err)
	if h.OnOperation != nil {
		op := OperationNone
		switch {
		case req == nil:
		case out.ID == StatusUnknownOperation:
			op = OperationUnknown // never the client's text: it is unbounded
		default:
			op = req.op
		}
		h.OnOperation(op, out.ID)
	}
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
	api := doc.CreateElement("MDaemon").CreateElement("API")
	api.CreateAttr("version", mailcluster.Version)
	version := APIVersion
	if req != nil {
		if req.echo {
			api.AddChild(redact(req.el.Copy()))
		}
		if req.version != "" {
			version = req.version
		}
	}
	resp := api.CreateElement("Response")
	resp.CreateAttr("version", version)
	st := etree.NewElement("Status")
	st.CreateAttr("id", strconv.Itoa(out.ID))
	st.CreateAttr("value", out.value())
	st.CreateAttr("message", out.message)
	if out.primary != "" {
		st.CreateAttr("primary", out.primary)
	}
	resp.AddChild(st)
	resp.CreateElement("ServiceVersion").SetText(mailcluster.Version)
	if out.ID == StatusOK && result != nil {
		resp.AddChild(result)
	}
	resp.CreateAttr("et", strconv.FormatFloat(time.Since(start).Seconds(), 'f', 6, 64))
	doc.Indent(2)
	b, werr := doc.WriteToBytes()
	if werr != nil {
		h.log.Error("xmlapi: encode response", "err", werr)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", ContentType)
	hdr.Set("Cache-Control", "no-store")
	if out.ID == StatusUnauthorized {
		hdr.Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	}
	code := out.HTTP
	if req != nil {
		// The operation ran: its outcome, good or bad, is in <Status>.
		code = http.StatusOK
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// redact empties every element whose name contains "password" or
// "privatekey" (any case) in an echoed request, so that no password and no
// private key ever appears in a response.
func redact(e *etree.Element) *etree.Element {
	if tag := strings.ToLower(e.Tag); strings.Contains(tag, "password") || strings.Contains(tag, "privatekey") {
		for len(e.Child) > 0 {
			e.RemoveChildAt(0)
		}
		return e
	}
	for _, c := range e.ChildElements() {
		redact(c)
	}
	return e
}
