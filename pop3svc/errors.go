package pop3svc

import (
	"errors"
	"log/slog"

	"mailcluster"
	"mailcluster/mailstore"
)

// replyText is the one place where an error of the store or the domain
// service becomes the text of a "-ERR" reply, with an RFC 2449 / RFC 3206
// response code. Internal error text is logged, never sent.
func replyText(log *slog.Logger, err error) string {
	var le *mailstore.LocalError
	switch {
	case errors.Is(err, mailstore.ErrBusy):
		return "[IN-USE] Mailbox busy; try again later"
	case errors.As(err, &le):
		log.Error("pop3: local failure", "err", le)
		return "[SYS/TEMP] Temporary local problem; try again later"
	}
	switch mailcluster.ErrorCode(err) {
	case mailcluster.EFORBIDDEN:
		// A mailbox path outside the mailbox roots: logged by the store.
		return "[SYS/PERM] Mailbox unavailable"
	case mailcluster.EUNAVAILABLE:
		return "[SYS/TEMP] Service unavailable; try again later"
	case mailcluster.ENOTFOUND:
		return "[SYS/TEMP] Mailbox unavailable; try again later"
	}
	log.Error("pop3: unexpected error", "err", err)
	return "[SYS/TEMP] Internal error"
}
