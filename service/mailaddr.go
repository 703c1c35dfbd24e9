package service

// This file declares the service calls of aliases, mailing lists and
// groups; their bodies are being written (see alias.go, list.go and
// group.go once they land).

import (
	"context"

	"mailcluster"
)

func errNotYet() error {
	return mailcluster.Errorf(mailcluster.EINTERNAL, "not implemented yet")
}

// CreateAlias creates name@domain delivering to target (an address).
// Errors: EINVALID, ENOTFOUND (domain, target), ECONFLICT (an account,
// alias or list of that name exists; the target has MaxAliasesPerAccount),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateAlias(ctx context.Context, domain, name, target string) (*mailcluster.Alias, error) {
	return nil, errNotYet()
}

// FindAlias returns one alias. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAlias(ctx context.Context, domain, name string) (*mailcluster.Alias, error) {
	return nil, errNotYet()
}

// FindAliases returns a page of a domain's aliases in name order, starting
// after cursor (a name), at most limit (1..1000, 0: 100), and the cursor
// of the next page ("" at the end). Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAliases(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.Alias, string, error) {
	return nil, "", errNotYet()
}

// UpdateAlias points an alias at another target. Errors as CreateAlias.
func (s *Service) UpdateAlias(ctx context.Context, domain, name, target string) (*mailcluster.Alias, error) {
	return nil, errNotYet()
}

// DeleteAlias removes an alias. Errors: EINVALID, ENOTFOUND, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteAlias(ctx context.Context, domain, name string) error {
	return errNotYet()
}

// AccountAliases returns the aliases that point at an account.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountAliases(ctx context.Context, domain, mailbox string) ([]*mailcluster.Alias, error) {
	return nil, errNotYet()
}

// CreateList creates a mailing list with its first members.
// Errors: EINVALID (also outside members), ENOTFOUND, ECONFLICT,
// ETOOLARGE (MaxListMembers), EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateList(ctx context.Context, in mailcluster.ListCreate) (*mailcluster.MailingList, error) {
	return nil, errNotYet()
}

// FindList returns one list (with MemberCount). Errors: EINVALID,
// ENOTFOUND, EFORBIDDEN.
func (s *Service) FindList(ctx context.Context, domain, name string) (*mailcluster.MailingList, error) {
	return nil, errNotYet()
}

// FindLists returns a page of a domain's lists (see FindAliases).
func (s *Service) FindLists(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.MailingList, string, error) {
	return nil, "", errNotYet()
}

// UpdateList changes a list and its membership in one transaction.
// Errors as CreateList.
func (s *Service) UpdateList(ctx context.Context, domain, name string, upd mailcluster.ListUpdate) (*mailcluster.MailingList, error) {
	return nil, errNotYet()
}

// DeleteList removes a list and its memberships.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteList(ctx context.Context, domain, name string) error {
	return errNotYet()
}

// FindListMembers returns a page of a list's members (accounts as full
// addresses, groups by name), in key order; cursor as FindAliases.
func (s *Service) FindListMembers(ctx context.Context, domain, name, cursor string, limit int) ([]mailcluster.ListMember, string, error) {
	return nil, "", errNotYet()
}

// AccountLists returns the lists of the account's domain that have the
// account as a direct member. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountLists(ctx context.Context, domain, mailbox string) ([]*mailcluster.MailingList, error) {
	return nil, errNotYet()
}

// CreateGroup creates a group with its first members.
// Errors: EINVALID, ENOTFOUND, ECONFLICT, ETOOLARGE, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) CreateGroup(ctx context.Context, in mailcluster.GroupCreate) (*mailcluster.Group, error) {
	return nil, errNotYet()
}

// FindGroup returns one group (with MemberCount).
func (s *Service) FindGroup(ctx context.Context, domain, name string) (*mailcluster.Group, error) {
	return nil, errNotYet()
}

// FindGroups returns a page of a domain's groups (see FindAliases).
func (s *Service) FindGroups(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.Group, string, error) {
	return nil, "", errNotYet()
}

// UpdateGroup changes a group and its membership in one transaction.
func (s *Service) UpdateGroup(ctx context.Context, domain, name string, upd mailcluster.GroupUpdate) (*mailcluster.Group, error) {
	return nil, errNotYet()
}

// DeleteGroup removes a group, its memberships and its list memberships.
func (s *Service) DeleteGroup(ctx context.Context, domain, name string) error {
	return errNotYet()
}

// FindGroupMembers returns a page of a group's members as full addresses.
func (s *Service) FindGroupMembers(ctx context.Context, domain, name, cursor string, limit int) ([]string, string, error) {
	return nil, "", errNotYet()
}

// AccountGroups returns the groups an account belongs to.
func (s *Service) AccountGroups(ctx context.Context, domain, mailbox string) ([]*mailcluster.Group, error) {
	return nil, errNotYet()
}

// ResolveRecipient resolves an address served here for delivery (see
// mailcluster.Recipient): an account, an alias, a list (whose posting
// policy is checked against sender, the envelope sender, "" for the null
// sender), postmaster@ or abuse@ of any domain, and the bare "postmaster"
// (RFC 5321 4.5.1). Errors: EINVALID, ENOTFOUND (no such address, or a
// domain being deleted), EFORBIDDEN (the list refuses the sender).
func (l *Local) ResolveRecipient(address, sender string) (*mailcluster.Recipient, error) {
	return nil, errNotYet()
}
