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

// Handler serves the XML-API. Mount it at every path IsPath accepts
// (/MdMgmtWS, /MdMgmtWS/, in any case); mounted for every
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

	svc      *service.Service
	log      *slog.Logger
	requests requestCache // decoded read requests by their bytes
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler over svc that logs to log (nil: discard).
func NewHandler(svc *service.Service, log *slog.Logger) *Handler {
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

// writeOperations classifies every operation dispatch knows: true for
// those that change the cluster's state (the service refuses them on a
// secondary), false for reads. The handler logs each answered write at
// Info level, an audit trail of changes; reads at Debug. The tests fail
// when a dispatched operation is missing here, and the read-only tests of
// secondaries take their list of writes from this table.
var writeOperations = map[string]bool{
	"GetVersionInfo":      false,
	"GetDomainList":       false,
	"GetDomainInfo":       false,
	"CreateDomain":        true,
	"UpdateDomain":        true,
	"DeleteDomain":        true,
	"GetUserInfo":         false,
	"CreateUser":          true,
	"UpdateUser":          true,
	"DeleteUser":          true,
	"GetIniSettings":      false,
	"UpdateIniSettings":   true,
	"GetDynamicScreening": false,
	"BlockIP":             true,
	"UnblockIP":           true,
	"FreezeAccount":       true,
	"ThawAccount":         true,
	"ImportCertificate":   true,
	"GetCertificates":     false,
	"DeleteCertificate":   true,
	"GetClusterInfo":      false,
	"AddClusterNode":      true,
	"RemoveClusterNode":   true,
	"GetClusterLog":       false,
	"CreateAlias":         true,
	"UpdateAlias":         true,
	"DeleteAlias":         true,
	"GetAliasList":        false,
	"CreateList":          true,
	"UpdateList":          true,
	"DeleteList":          true,
	"GetListInfo":         false,
	"GetListList":         false,
	"CreateGroup":         true,
	"UpdateGroup":         true,
	"DeleteGroup":         true,
	"GetGroupInfo":        false,
	"GetGroupList":        false,
	"CreateDKIMKey":       true,
	"GetDKIMKey":          false,
	"DeleteDKIMKey":       true,
	"GetQueueList":        false,
	"GetQueueMessage":     false,
	"GetQueueStats":       false,
	"RetryQueueMessage":   true,
	"DeleteQueueMessage":  true,
}

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
	caller, err := h.svc.Authenticate(service.Anonymous(ctx), user, password)
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

	body := getBuffer()
	defer putBuffer(body)
	if err := h.readBody(w, r, body); err != nil {
		h.respond(w, start, nil, err, nil)
		return
	}
	// The decoded request holds copies of the body's text, not the
	// pooled bytes.
	req := h.requests.get(body.Bytes())
	if req == nil {
		if req, err = decodeRequest(body.Bytes()); err != nil {
			h.log.Debug("xmlapi: malformed request", "user", user, "err", err)
			h.respond(w, start, nil, err, nil)
			return
		}
		h.requests.put(body.Bytes(), req)
	}

	var res result
	err = h.dispatch(ctx, req, &res)
	out := translate(err)
	switch {
	case out.ID == StatusInternal:
		h.log.Error("xmlapi: operation failed", "op", req.op, "user", user, "err", err)
	case writeOperations[req.op]:
		h.log.Info("xmlapi: write", "op", req.op, "user", user, "status", out.ID,
			"et", time.Since(start).String())
	case h.log.Enabled(ctx, slog.LevelDebug):
		h.log.Debug("xmlapi: request", "op", req.op, "user", user, "status", out.ID,
			"et", time.Since(start).String())
	}
	h.respond(w, start, req, err, &res)
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

// readBody reads the body, up to the limit, into buf.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	tooLarge := func() error { return errorf(StatusTooLarge, "The request is larger than %d bytes.", limit) }
	if r.ContentLength > limit {
		return tooLarge()
	}
	if r.ContentLength > 0 {
		// Room for the announced body (+1: the read that finds its end),
		// but no more than a pooled buffer keeps: a client that announces
		// much and sends little costs only what it sends.
		buf.Grow(int(min(r.ContentLength+1, maxPooledBuffer)))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		return errorf(StatusMalformed, "The request body could not be read.")
	}
	return nil
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

// result is an operation's answer, written inside <Result>: the element
// most operations build with etree (see tree), or the User of the
// account operations, written straight into the answer (see writeUser).
// The zero value is an empty answer.
type result struct {
	el           *etree.Element // <Result> as built with etree, nil unless tree was called
	user         user           // written when user.Account is set
	userID       string
	userSections sections
}

// tree returns the <Result> element an operation builds its answer in.
func (r *result) tree() *etree.Element {
	if r.el == nil {
		r.el = etree.NewElement("Result")
	}
	return r.el
}

// write writes <Result> with the answer.
func (r *result) write(w *xmlWriter) {
	switch {
	case r.el != nil:
		w.element(r.el)
	case r.user.Account != nil:
		w.start("Result")
		writeUser(w, r.user, r.userID, r.userSections)
		w.end("Result")
	default:
		w.text("Result", "")
	}
}

// respond writes the response envelope. req is nil when the request was
// refused before its operation ran (method, authentication, size, XML):
// only then is the HTTP status the table's; an operation's answer is
// always HTTP 200. res is written only on success.
func (h *Handler) respond(w http.ResponseWriter, start time.Time, req *request, err error, res *result) {
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
	buf := getBuffer()
	defer putBuffer(buf)
	writeResponse(buf, req, out, res, time.Since(start))
	// The three values share one array (one allocation, not three); each
	// is a slice of its own capacity, so that appending to one leaves the
	// others alone. The keys are in canonical form.
	values := make([]string, 3)
	values[0], values[1], values[2] = ContentType, "no-store", strconv.Itoa(buf.Len())
	hdr := w.Header()
	hdr["Content-Type"] = values[0:1:1]
	hdr["Cache-Control"] = values[1:2:2]
	hdr["Content-Length"] = values[2:3:3]
	if out.ID == StatusUnauthorized {
		hdr.Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	}
	code := out.HTTP
	if req != nil {
		// The operation ran: its outcome, good or bad, is in <Status>.
		code = http.StatusOK
	}
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// writeResponse writes the answer document: <MDaemon><API> with the
// server's version, the echoed request (redacted) when req asks for it,
// and <Response> with et (the time the request took, in seconds), out's
// <Status>, <ServiceVersion> and, on success, res.
func writeResponse(buf *bytes.Buffer, req *request, out outcome, res *result, et time.Duration) {
	w := xmlWriter{buf: buf}
	w.declaration()
	w.start("MDaemon")
	w.start("API")
	// productversion and serviceversion are where classic clients read
	// the server's version; version is kept for mailcluster's own scripts.
	w.attr("productversion", mailcluster.Version)
	w.attr("serviceversion", mailcluster.Version)
	w.attr("version", mailcluster.Version)
	version := APIVersion
	if req != nil {
		if req.echo {
			w.element(redact(req.el.Copy()))
		}
		if req.version != "" {
			version = req.version
		}
	}
	w.start("Response")
	w.attr("version", version)
	var seconds [24]byte
	w.attrUnescaped("et", strconv.AppendFloat(seconds[:0], et.Seconds(), 'f', 6, 64))
	w.start("Status")
	w.attr("id", strconv.Itoa(out.ID))
	w.attr("value", out.value())
	w.attr("message", out.message)
	if out.primary != "" {
		w.attr("primary", out.primary)
	}
	w.end("Status")
	w.text("ServiceVersion", mailcluster.Version)
	if out.ID == StatusOK && res != nil {
		res.write(&w)
	}
	w.end("Response")
	w.end("API")
	w.end("MDaemon")
	w.finish()
}

// secretElements are the names (compared in any case) of the elements
// that carry secrets: redact empties them in an echoed request. The match
// is exact, so DontExpirePassword or MustChangePassword are echoed as
// sent.
var secretElements = []string{"Password", "PasswordHash", "NewPassword", "OldPassword", "PrivateKey"}

// redact empties every secret element (secretElements) of an echoed
// request, so that no password, password hash and no private key ever
// appears in a response.
func redact(e *etree.Element) *etree.Element {
	for _, name := range secretElements {
		if strings.EqualFold(e.Tag, name) {
			for len(e.Child) > 0 {
				e.RemoveChildAt(0)
			}
			return e
		}
	}
	for _, c := range e.ChildElements() {
		redact(c)
	}
	return e
}

// Path is the documented path of the XML-API endpoint.
const Path = "/MdMgmtWS"

// IsPath tells whether an HTTP request path names the XML-API endpoint
// the way classic clients write it: /MdMgmtWS, with or without a
// trailing slash, in any case (/MdMgmtWS/, /mdmgmtws, /MDMGMTWS/). The
// server that mounts the Handler routes every such path to it.
func IsPath(p string) bool {
	return strings.EqualFold(strings.TrimSuffix(p, "/"), Path)
}
