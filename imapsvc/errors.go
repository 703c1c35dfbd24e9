package imapsvc

import (
	"errors"
	"log/slog"

	"github.com/emersion/go-imap/v2"

	"mailcluster"
	"mailcluster/mailstore"
)

// imapError is the one place where an error becomes an IMAP answer
// (RFC 5530 response codes). Internal error text is logged, never sent.
func imapError(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	var qe *mailstore.QuotaError
	var le *mailstore.LocalError
	switch {
	case errors.As(err, &qe):
		return no(imap.ResponseCodeOverQuota, "Mailbox is full (quota exceeded)")
	case errors.Is(err, mailstore.ErrTooLarge):
		return no(imap.ResponseCodeTooBig, "Message too big")
	case errors.Is(err, mailstore.ErrBusy):
		return no(imap.ResponseCodeInUse, "Mailbox busy; try again later")
	case errors.As(err, &le):
		log.Error("imap: local failure", "err", le)
		return no(imap.ResponseCodeUnavailable, "Temporary local problem; try again later")
	}
	msg := mailcluster.ErrorMessage(err)
	switch mailcluster.ErrorCode(err) {
	case mailcluster.ENOTFOUND:
		return no(imap.ResponseCodeNonExistent, msg)
	case mailcluster.ECONFLICT:
		return no(imap.ResponseCodeAlreadyExists, msg)
	case mailcluster.EINVALID:
		return no(imap.ResponseCodeCannot, msg)
	case mailcluster.ETOOLARGE:
		return no(imap.ResponseCodeLimit, msg)
	case mailcluster.EFORBIDDEN:
		// A mailbox path outside the mailbox roots: logged by the store.
		return no(imap.ResponseCodeUnavailable, "Mailbox unavailable")
	case mailcluster.EUNAVAILABLE:
		return no(imap.ResponseCodeUnavailable, "Service unavailable; try again later")
	}
	log.Error("imap: unexpected error", "err", err)
	return no(imap.ResponseCodeServerBug, "Internal error")
}
