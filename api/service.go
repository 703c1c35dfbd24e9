package api

import (
	"context"
	"io"
	"time"

	"mailcluster/service"

	"mailcluster"
)

// Service is what the REST API needs from the domain: exactly the methods
// of *service.Service that the handlers call. Every business rule
// (validation, authorization by the caller in the context, the read-only
// rule of secondaries) lives behind it; the handlers only translate.
//
// Errors are *mailcluster.Error values whose code the API maps to an HTTP
// status in one table (see errorStatus). Implementations must be safe for
// concurrent use: the server calls them from many goroutines at once.
type Service interface {
	// Authenticate checks an administrator's address and password.
	// Errors: EUNAUTHORIZED for every credential failure; EFORBIDDEN when
	// the client address in the context is blocked by dynamic screening.
	Authenticate(ctx context.Context, address, password string) (*mailcluster.Account, error)
	// NodeInfo describes the local node; it never fails.
	NodeInfo() mailcluster.NodeInfo

	// FindDomains returns the domains the caller may see.
	FindDomains(ctx context.Context) ([]*mailcluster.Domain, error)
	// FindDomain returns one domain. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindDomain(ctx context.Context, name string) (*mailcluster.Domain, error)
	// CreateDomain adds a domain. Errors: EINVALID, ECONFLICT, EFORBIDDEN,
	// EREADONLY, EUNAVAILABLE.
	CreateDomain(ctx context.Context, d *mailcluster.Domain) (*mailcluster.Domain, error)
	// UpdateDomain changes a domain. Errors as CreateDomain plus ENOTFOUND.
	UpdateDomain(ctx context.Context, name string, upd mailcluster.DomainUpdate) (*mailcluster.Domain, error)
	// DeleteDomain removes a domain (with its accounts only when force is
	// set). Errors: ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY.
	DeleteDomain(ctx context.Context, name string, force bool) error

	// FindAccounts returns one page of a domain's accounts and the cursor
	// of the next page. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindAccounts(ctx context.Context, f mailcluster.AccountFilter) ([]*mailcluster.Account, string, error)
	// FindAccount returns one account. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error)
	// FindMailAccount returns an account whose mail the caller may read and
	// change. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	FindMailAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error)
	// CreateAccount adds an account. Errors: EINVALID, ENOTFOUND, ECONFLICT,
	// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	CreateAccount(ctx context.Context, in mailcluster.AccountCreate) (*mailcluster.Account, error)
	// UpdateAccount changes an account. Errors as CreateAccount.
	UpdateAccount(ctx context.Context, domain, mailbox string, upd mailcluster.AccountUpdate) (*mailcluster.Account, error)
	// DeleteAccount removes an account. Errors: EINVALID, ENOTFOUND,
	// ECONFLICT, EFORBIDDEN, EREADONLY.
	DeleteAccount(ctx context.Context, domain, mailbox string) error

	// SettingsFiles lists the ini file names. Errors: EFORBIDDEN.
	SettingsFiles(ctx context.Context) ([]string, error)
	// SettingsFile returns one ini file. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	SettingsFile(ctx context.Context, file string) (*mailcluster.SettingsFile, error)
	// ReplaceSettingsFile makes a file hold exactly secs. Errors: EINVALID,
	// ETOOLARGE, ECONFLICT, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	ReplaceSettingsFile(ctx context.Context, file string, secs mailcluster.Sections) (*mailcluster.SettingsFile, error)
	// GetSetting returns one value. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	GetSetting(ctx context.Context, file, section, key string) (string, error)
	// SetSetting writes one value. Errors: EINVALID, ETOOLARGE, EFORBIDDEN,
	// EREADONLY, EUNAVAILABLE.
	SetSetting(ctx context.Context, file, section, key, value string) error
	// DeleteSetting removes one key. Errors: EINVALID, ENOTFOUND,
	// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	DeleteSetting(ctx context.Context, file, section, key string) error

	// ClusterStatus lists the cluster's nodes. Errors: EFORBIDDEN, EUNAVAILABLE.
	ClusterStatus(ctx context.Context) (*mailcluster.ClusterStatus, error)
	// Switchover hands the primary role over. Errors: EFORBIDDEN, EINVALID,
	// EREADONLY, EUNAVAILABLE.
	Switchover(ctx context.Context, target string) error
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

	// Usage returns an account's mailbox usage as the primary published it
	// (the zero Usage when none is published yet). It does not authorize:
	// the handlers call FindAccount first. It never fails.
	Usage(domain, mailbox string) mailcluster.Usage
	// ApplyUsageReport applies a node's changes to mail exactly once
	// (primary only) and returns the store index at which they are
	// applied; a repeated report changes nothing. Errors: EINVALID,
	// ETOOLARGE, EREADONLY, EUNAVAILABLE, ECONFLICT.
	ApplyUsageReport(ctx context.Context, r mailcluster.UsageReport) (uint64, error)

	// ListBlockedIPs returns every block record, expired ones included,
	// and the node's local decisions. Errors: EFORBIDDEN.
	ListBlockedIPs(ctx context.Context) ([]mailcluster.BlockedIP, error)
	// BlockIP blocks an address until the given time (zero: no expiry).
	// Errors: EINVALID, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	BlockIP(ctx context.Context, ip string, until time.Time, reason string) (*mailcluster.BlockedIP, error)
	// UnblockIP removes an address's block record. Errors: EINVALID,
	// ENOTFOUND, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	UnblockIP(ctx context.Context, ip string) error
	// ListFrozenAccounts returns the frozen accounts the caller may see,
	// without token hashes. Errors: EFORBIDDEN.
	ListFrozenAccounts(ctx context.Context) ([]mailcluster.FrozenAccount, error)
	// FreezeAccount freezes an account and mails it a thaw token.
	// Errors: EINVALID, ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	FreezeAccount(ctx context.Context, address, reason string) error
	// ThawAccount ends an account's freeze. Errors: EINVALID, ENOTFOUND,
	// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
	ThawAccount(ctx context.Context, address string) error
	// RedeemThawToken thaws an account with its mailed token; it needs no
	// caller. Errors: EINVALID, EUNAUTHORIZED (wrong, used or expired
	// token), EFORBIDDEN (blocked client address), EREADONLY, EUNAVAILABLE.
	RedeemThawToken(ctx context.Context, address, token string) error
	// ReportFailures counts other nodes' failed logins (primary only).
	// Errors: EREADONLY, EUNAVAILABLE.
	ReportFailures(ctx context.Context, fs []mailcluster.LoginFailure) error

	// Certificates lists the cluster's TLS certificates without their
	// keys (global administrators). Errors: EFORBIDDEN.
	Certificates(ctx context.Context) ([]*mailcluster.Certificate, error)
	// Certificate returns one certificate without its key.
	// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
	Certificate(ctx context.Context, name string) (*mailcluster.Certificate, error)
	// ImportCertificate validates a PEM chain (leaf first) and its private
	// key and stores them under name, the key sealed; it returns the
	// certificate without its key. The key must never be logged.
	// Errors: EINVALID, ETOOLARGE, EFORBIDDEN, EREADONLY, ECONFLICT,
	// EUNAVAILABLE.
	ImportCertificate(ctx context.Context, name, chainPEM, keyPEM string, makeDefault bool) (*mailcluster.Certificate, error)
	// DeleteCertificate removes a certificate. Errors: EINVALID,
	// ENOTFOUND, EFORBIDDEN, EREADONLY, ECONFLICT, EUNAVAILABLE.
	DeleteCertificate(ctx context.Context, name string) error
}

var _ Service = (*service.Service)(nil)

// MailStore is what the REST API needs from the node's mailbox store on
// the shared path; *mailsvc.Store satisfies it. The handlers pass only
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
