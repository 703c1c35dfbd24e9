package api

import (
	"context"

	"mailcluster"
)

// Service is what the REST API needs from the domain: exactly the methods
// of *mailcluster.Service that the handlers call. Every business rule
// (validation, authorization by the caller in the context, the read-only
// rule of secondaries) lives behind it; the handlers only translate.
//
// Errors are *mailcluster.Error values whose code the API maps to an HTTP
// status in one table (see errorStatus). Implementations must be safe for
// concurrent use: the server calls them from many goroutines at once.
type Service interface {
	// Authenticate checks an administrator's address and password.
	// Errors: EUNAUTHORIZED for every failure.
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
}

var _ Service = (*mailcluster.Service)(nil)
