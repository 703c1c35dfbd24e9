// Package mailcluster is the vocabulary of a clustered mail server node:
// domains, accounts, members, certificates, screening records, ini server
// settings, node roles, the error type with its codes, and the contracts
// the other packages meet (Store, Leadership, ClusterLog, FailureSink,
// Notifier, Admission, ClusterControl). It holds no state and starts no
// goroutines; the rules live in package service, the key layout of the
// replicated state in package schema.
//
// The package imports nothing else of this module.
package mailcluster

import (
	"errors"
	"fmt"
)

// Error codes. Each protocol edge maps them in exactly one table.
const (
	EINVALID      = "invalid"      // bad input; nothing changed
	ENOTFOUND     = "not_found"    // the named object does not exist
	ECONFLICT     = "conflict"     // already exists, or changed concurrently
	EREADONLY     = "read_only"    // a write on a node that is not the primary
	EUNAUTHORIZED = "unauthorized" // no or wrong credentials
	EFORBIDDEN    = "forbidden"    // authenticated but not allowed
	EUNAVAILABLE  = "unavailable"  // no primary or the store cannot be reached
	ETOOLARGE     = "too_large"    // a request or value exceeds a limit
	EINTERNAL     = "internal"     // anything else; details are only logged
)

// Error is the application error. Message is safe to show to a client;
// Primary names the primary's advertised API URL for EREADONLY errors.
type Error struct {
	Code    string
	Message string
	Primary string
	Err     error // the cause, logged but never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("mailcluster: %s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("mailcluster: %s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for nil
// and EINTERNAL for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err. Errors that are not
// *Error get a generic text so that internal details never leak.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "An internal error occurred."
}

// ErrorPrimary returns the primary's API URL carried by an EREADONLY error.
func ErrorPrimary(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Primary
	}
	return ""
}
