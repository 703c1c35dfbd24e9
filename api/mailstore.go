package api

import (
	"context"
	"io"

	"mailcluster"
)

// MailStore is what the REST API needs from the node's mailbox store on
// the shared path; *mailstore.Store satisfies it. The handlers pass only
// accounts returned by Service.FindAccount, so the caller is authorized
// and the account exists when a method runs. Message ids come from the
// client unchecked: implementations validate them (EINVALID for a
// malformed id) and must never open a path outside the mailbox.
// Implementations must be safe for concurrent use.
type MailStore interface {
	// List returns one page of an account's messages in id (arrival)
	// order, starting after cursor, and the cursor of the next page (""
	// on the last). limit 0 means 100. Errors: EINVALID, EUNAVAILABLE.
	List(a *mailcluster.Account, limit int, cursor string) ([]mailcluster.Message, string, error)
	// Open returns a message's raw content and its size in bytes; the
	// caller closes it. Errors: EINVALID, ENOTFOUND, EUNAVAILABLE.
	Open(a *mailcluster.Account, id string) (io.ReadCloser, int64, error)
	// Delete removes a message. It is a change to mail, not to the
	// configuration, so it is allowed on every node, secondaries included;
	// the store reports the usage change to the primary.
	// Errors: EINVALID, ENOTFOUND, EUNAVAILABLE.
	Delete(ctx context.Context, a *mailcluster.Account, id string) error
	// Recount counts an account's mail on disk and publishes the result as
	// its usage (primary only, through the Service).
	// Errors: EFORBIDDEN, ENOTFOUND, EREADONLY, EUNAVAILABLE.
	Recount(ctx context.Context, a *mailcluster.Account) (mailcluster.Usage, error)
}
