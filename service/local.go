package service

import (
	"context"

	"mailcluster"
)

// Local is the node's own view of the Service: the reads and the local
// screening decisions that its components need (delivery and SMTP, the
// certificate manager, the election rules, the failure reporter), which
// act for no user. Only a system caller obtains it (Service.Local), so
// only node code holds one; an edge that is given a Local acts for the
// node. Safe for concurrent use.
type Local struct{ s *Service }

// Local returns the node's own view. Errors: EFORBIDDEN unless ctx carries
// a system caller.
func (s *Service) Local(ctx context.Context) (*Local, error) {
	if err := requireSystem(ctx); err != nil {
		return nil, err
	}
	return &Local{s: s}, nil
}

// LookupAccount returns an account by address, password hash included,
// for delivery and SMTP AUTH; a quota of 0 is filled with the smallest
// non-zero default of the account's groups (the stored account keeps its
// own). Errors: EINVALID, ENOTFOUND.
func (l *Local) LookupAccount(address string) (*mailcluster.Account, error) {
	a, err := l.s.lookupAccount(address)
	if err != nil {
		return nil, err
	}
	l.s.quotaGroups(a.Domain)(a)
	return a, nil
}

// IsLocalDomain reports whether the cluster serves domain.
func (l *Local) IsLocalDomain(domain string) bool { return l.s.isLocalDomain(domain) }

// AuthenticateUser checks a mail user's password (see
// Service.AuthenticateUser; ctx carries the client, anonymous).
func (l *Local) AuthenticateUser(ctx context.Context, address, password string) (*mailcluster.Account, error) {
	return l.s.AuthenticateUser(ctx, address, password)
}

// AuthenticateMailUser checks a mail user's password for a login over
// protocol (see Service.AuthenticateMailUser; ctx carries the client,
// anonymous).
func (l *Local) AuthenticateMailUser(ctx context.Context, protocol, address, password string) (*mailcluster.Account, error) {
	return l.s.AuthenticateMailUser(ctx, protocol, address, password)
}

// Usage returns an account's published usage (zero when none yet).
func (l *Local) Usage(domain, mailbox string) mailcluster.Usage { return l.s.usage(domain, mailbox) }

// SetUsage publishes a recounted usage (see Service.SetUsage).
func (l *Local) SetUsage(ctx context.Context, domain, mailbox string, u mailcluster.Usage) error {
	return l.s.SetUsage(ctx, domain, mailbox, u)
}

// Setting reads the main ini file, def when unset.
func (l *Local) Setting(section, key, def string) string { return l.s.setting(section, key, def) }

// BlockedIP returns the active block of ip (replicated or decided here).
func (l *Local) BlockedIP(ip string) (*mailcluster.BlockedIP, bool) { return l.s.blockedIP(ip) }

// Serving is false on a node that is not registered in its cluster.
func (l *Local) Serving() bool { return l.s.serving() }

// NodeInfo describes the local node.
func (l *Local) NodeInfo() mailcluster.NodeInfo { return l.s.nodeInfo() }

// IsRegistered reports whether a node name is a registered member.
func (l *Local) IsRegistered(name string) bool { return l.s.isRegistered(name) }

// RegisteredMember returns one registered member.
func (l *Local) RegisteredMember(name string) (mailcluster.Member, bool) {
	return l.s.registeredMember(name)
}

// RegisteredMembers returns every registered member.
func (l *Local) RegisteredMembers() []mailcluster.Member { return l.s.registeredMembers() }

// StoredCertificates returns the replicated certificates, with their
// sealed keys when withKeys (for the TLS machinery).
func (l *Local) StoredCertificates(withKeys bool) []*mailcluster.Certificate {
	return l.s.storedCertificates(withKeys)
}

// DecideLocally counts failures on a node that cannot reach a primary and
// blocks or freezes on this node only.
func (l *Local) DecideLocally(fs []mailcluster.LoginFailure) { l.s.decideLocally(fs) }

// ClearLocalDecisions drops this node's own decisions (a primary is back)
// and returns how many there were.
func (l *Local) ClearLocalDecisions() int { return l.s.clearLocalDecisions() }

// NodeInfo describes the local node: its name, mode, role, the primary and
// any health problems. Anyone may ask (the health endpoints answer it
// without credentials), but the call must name its caller. Errors:
// EFORBIDDEN without a caller.
func (s *Service) NodeInfo(ctx context.Context) (mailcluster.NodeInfo, error) {
	if err := requireCaller(ctx); err != nil {
		return mailcluster.NodeInfo{}, err
	}
	return s.nodeInfo(), nil
}

// AccountUsage returns an account's published usage (zero when none is
// published) to its domain's administrators. Errors: EINVALID, EFORBIDDEN.
func (s *Service) AccountUsage(ctx context.Context, domain, mailbox string) (mailcluster.Usage, error) {
	if err := requireSignedIn(ctx); err != nil {
		return mailcluster.Usage{}, err
	}
	domain, mailbox, err := normalizeAccountName(domain, mailbox)
	if err != nil {
		return mailcluster.Usage{}, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return mailcluster.Usage{}, err
	}
	return s.usage(domain, mailbox), nil
}
