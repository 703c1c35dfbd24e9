package xmlapi

import (
	"errors"
	"fmt"
	"net/http"

	"mailcluster"
)

// Status ids carried by <Status id="...">. They are stable: scripts compare
// them, so an id is never reused for another meaning.
const (
	StatusOK               = 0  // the operation completed
	StatusUnknownOperation = 1  // <Operation> names no supported operation
	StatusMissingParameter = 2  // a required parameter is absent or empty
	StatusInvalidParameter = 3  // a parameter or value is not acceptable (mailcluster.EINVALID)
	StatusNotFound         = 4  // the named object does not exist (mailcluster.ENOTFOUND)
	StatusConflict         = 5  // already exists, still in use or changed concurrently (mailcluster.ECONFLICT)
	StatusReadOnly         = 6  // a write on a read-only secondary (mailcluster.EREADONLY)
	StatusUnavailable      = 7  // no primary, or the state cannot be reached (mailcluster.EUNAVAILABLE)
	StatusUnauthorized     = 8  // no or wrong credentials (mailcluster.EUNAUTHORIZED)
	StatusForbidden        = 9  // authenticated but not allowed (mailcluster.EFORBIDDEN)
	StatusMalformed        = 10 // the body is not a well-formed XML-API request
	StatusTooLarge         = 11 // the body or a value exceeds a limit (mailcluster.ETOOLARGE)
	StatusInternal         = 12 // anything else; the details are only logged (mailcluster.EINTERNAL)
	StatusMethodNotAllowed = 13 // the HTTP method is not POST
	StatusUnsupportedType  = 14 // the Content-Type is not XML
	StatusForeignOrigin    = 15 // the Origin header names another site
	StatusNotSupported     = 16 // a known element of the classic XML-API that mailcluster does not support (yet)
)

// status is one row of the status table.
type status struct {
	ID      int
	Code    string // the mailcluster error code mapped to this row; "" for envelope-level rows
	Value   uint32 // HRESULT-style value
	HTTP    int    // the HTTP status when the request is refused before its operation runs; an operation's answer is always 200
	Message string // the default message (the only one for StatusInternal)
}

// statuses is the one table that translates errors for the XML-API,
// indexed by status id. docs/xml-api.md documents it.
var statuses = []status{
	{StatusOK, "", 0x00000000, http.StatusOK, "The operation completed successfully."},
	{StatusUnknownOperation, "", 0x80070032, http.StatusOK, "The operation is not supported."},
	{StatusMissingParameter, "", 0x80070057, http.StatusOK, "A required parameter is missing."},
	{StatusInvalidParameter, mailcluster.EINVALID, 0x800700A0, http.StatusOK, "A parameter is not valid."},
	{StatusNotFound, mailcluster.ENOTFOUND, 0x80070002, http.StatusOK, "The object does not exist."},
	{StatusConflict, mailcluster.ECONFLICT, 0x800700B7, http.StatusOK, "The object already exists or was changed concurrently."},
	{StatusReadOnly, mailcluster.EREADONLY, 0x80070013, http.StatusOK, "This node is a read-only secondary."},
	{StatusUnavailable, mailcluster.EUNAVAILABLE, 0x800704CF, http.StatusOK, "No primary is available at the moment; try again shortly."},
	{StatusUnauthorized, mailcluster.EUNAUTHORIZED, 0x8007052E, http.StatusUnauthorized, "Authentication failed."},
	{StatusForbidden, mailcluster.EFORBIDDEN, 0x80070005, http.StatusOK, "Access is denied."},
	{StatusMalformed, "", 0x8007000D, http.StatusBadRequest, "The request is not a well-formed XML-API document."},
	{StatusTooLarge, mailcluster.ETOOLARGE, 0x800700DF, http.StatusRequestEntityTooLarge, "The request is too large."},
	{StatusInternal, mailcluster.EINTERNAL, 0x80004005, http.StatusOK, "An internal error occurred."},
	{StatusMethodNotAllowed, "", 0x80070001, http.StatusMethodNotAllowed, "Only the POST method is allowed."},
	{StatusUnsupportedType, "", 0x8007065E, http.StatusUnsupportedMediaType, "The request must be XML (Content-Type: text/xml or application/xml)."},
	{StatusForeignOrigin, "", 0x8007000C, http.StatusForbidden, "Requests from other sites (Origin) are not accepted."},
	{StatusNotSupported, "", 0x80004001, http.StatusOK, "A parameter of the request is not supported."},
}

// value renders the HRESULT the classic way: 0x8007000D.
func (s status) value() string {
	if s.ID >= 0 && s.ID < len(statusValues) && statuses[s.ID] == s {
		return statusValues[s.ID]
	}
	return formatHRESULT(s.Value)
}

// statusValues holds the value of each row of statuses, rendered once.
var statusValues = func() []string {
	v := make([]string, len(statuses))
	for i, s := range statuses {
		v[i] = formatHRESULT(s.Value)
	}
	return v
}()

// formatHRESULT renders v as 0x and eight upper-case hex digits.
func formatHRESULT(v uint32) string {
	const digits = "0123456789ABCDEF"
	b := [10]byte{'0', 'x'}
	for i := len(b) - 1; i >= 2; i, v = i-1, v>>4 {
		b[i] = digits[v&0xF]
	}
	return string(b[:])
}

// requestError is an envelope-level failure that has no mailcluster code
// (unknown operation, missing parameter, malformed body, wrong method).
// Its message is client-safe.
type requestError struct {
	id  int
	msg string
}

func (e *requestError) Error() string { return "xmlapi: " + e.msg }

func errorf(id int, format string, args ...any) error {
	return &requestError{id: id, msg: fmt.Sprintf(format, args...)}
}

// outcome is what a response's <Status> says.
type outcome struct {
	status
	message string
	primary string // the primary's API URL, for StatusReadOnly
}

// translate is the one place where an error becomes a <Status>. Messages
// come from *requestError or mailcluster.ErrorMessage (client-safe);
// internal errors get the table's generic message.
func translate(err error) outcome {
	if err == nil {
		return outcome{status: statuses[StatusOK], message: statuses[StatusOK].Message}
	}
	var re *requestError
	if errors.As(err, &re) {
		return outcome{status: statuses[re.id], message: re.msg}
	}
	code := mailcluster.ErrorCode(err)
	st := statuses[StatusInternal]
	for _, s := range statuses {
		if s.Code != "" && s.Code == code {
			st = s
			break
		}
	}
	out := outcome{status: st, message: st.Message}
	if st.ID != StatusInternal {
		if msg := mailcluster.ErrorMessage(err); msg != "" {
			out.message = msg
		}
	}
	if st.ID == StatusReadOnly {
		out.primary = mailcluster.ErrorPrimary(err)
	}
	return out
}
