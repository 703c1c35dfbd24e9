package mailsvc

import (
	"context"

	"mailcluster/mailstore"
	"mailcluster/service"

	"mailcluster"
)

// Directory is what the mail service needs of the domain service. It is
// satisfied by *service.Local.
type Directory interface {
	// LookupAccount returns an account (with its mailbox path) by address.
	// Errors: EINVALID, ENOTFOUND.
	LookupAccount(address string) (*mailcluster.Account, error)
	// IsLocalDomain reports whether the cluster serves a domain.
	IsLocalDomain(domain string) bool
	// AuthenticateUser checks a mail user's password. Errors: EUNAUTHORIZED.
	AuthenticateUser(ctx context.Context, address, password string) (*mailcluster.Account, error)
	// Usage returns the cluster-wide usage the primary published.
	Usage(domain, mailbox string) mailcluster.Usage
	// SetUsage publishes a recounted usage (primary only).
	SetUsage(ctx context.Context, domain, mailbox string, u mailcluster.Usage) error
	// Setting reads the main ini file.
	Setting(section, key, def string) string
	// BlockedIP tells whether dynamic screening blocks a client address.
	BlockedIP(ip string) (*mailcluster.BlockedIP, bool)
	// Serving is false on a node that is not registered in the cluster.
	Serving() bool
	// ResolveRecipient resolves an address served here for delivery: an
	// account, an alias (its target), a mailing list (its members, or its
	// owner when a moderated list holds a post for review), postmaster@
	// and abuse@ of a local domain and the bare "postmaster" (the
	// domain's postmaster account). sender is the envelope sender ("" for
	// the null sender), checked against a list's posting policy.
	// Errors: EINVALID, ENOTFOUND, EFORBIDDEN (the list refuses sender).
	ResolveRecipient(address, sender string) (*mailcluster.Recipient, error)
}

var (
	_ Directory           = (*service.Local)(nil)
	_ mailstore.Directory = (*service.Local)(nil)
	_ mailstore.Directory = Directory(nil)
)
