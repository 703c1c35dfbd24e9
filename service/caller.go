package service

import (
	"context"

	"mailcluster"
)

// Every call of the Service acts for an explicit caller, carried in its
// context, and a call without one is refused (fail closed: a forgotten
// line in an edge cannot become a bypass). There are three kinds:
//   - an account, set by an edge after it authenticated the request
//     (NewContextWithCaller): its admin rights decide what it may do;
//   - the anonymous network (Anonymous): it may only log in and redeem a
//     thaw token;
//   - a named part of the node itself (SystemContext): bootstrap, the
//     node's own jobs and the internal API of other nodes; it may do
//     everything. Only node assembly code creates it: a test checks that
//     no other package of the module calls SystemContext.

type callerKey struct{}

// caller is who a call acts for; exactly one field is set.
type caller struct {
	account   *mailcluster.Account
	system    string
	anonymous bool
}

// NewContextWithCaller returns ctx acting for an authenticated account.
func NewContextWithCaller(ctx context.Context, a *mailcluster.Account) context.Context {
	if a == nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, caller{account: a})
}

// Anonymous returns ctx acting for a client that has not authenticated
// (yet): it may call Authenticate, AuthenticateUser and RedeemThawToken.
func Anonymous(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerKey{}, anonymousCaller)
}

// anonymousCaller is the anonymous caller, boxed once.
var anonymousCaller any = caller{anonymous: true}

// SystemContext returns ctx acting for the node itself, named for the
// logs (e.g. "bootstrap", "outbox", "internal-api"). It may do everything:
// only node assembly code may create it.
func SystemContext(ctx context.Context, name string) context.Context {
	if name == "" {
		name = "system"
	}
	return context.WithValue(ctx, callerKey{}, caller{system: name})
}

// CallerFromContext returns the account a call acts for; nil for the
// node itself, the anonymous network, or no caller.
func CallerFromContext(ctx context.Context) *mailcluster.Account {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c.account
}

func callerOf(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok
}

// errNoCaller refuses a call that names no caller: a programming error of
// an edge, answered as a refusal, never as permission.
var errNoCaller = mailcluster.Errorf(mailcluster.EFORBIDDEN, "This request carries no caller and is refused.")

// requireCaller refuses a context without an explicit caller.
func requireCaller(ctx context.Context) error {
	if _, ok := callerOf(ctx); !ok {
		return errNoCaller
	}
	return nil
}

// requireSignedIn refuses the anonymous network and calls without a
// caller: an account or the node itself must be named.
func requireSignedIn(ctx context.Context) error {
	c, ok := callerOf(ctx)
	switch {
	case !ok:
		return errNoCaller
	case c.anonymous:
		return mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication is required.")
	}
	return nil
}

// requireSystem admits only the node itself.
func requireSystem(ctx context.Context) error {
	c, ok := callerOf(ctx)
	switch {
	case !ok:
		return errNoCaller
	case c.system == "":
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only the cluster's own nodes may do this.")
	}
	return nil
}

// authorizeAccount admits the node itself and an account for which may
// holds; any other account gets deny, the anonymous network and calls
// without a caller are refused.
func authorizeAccount(ctx context.Context, may func(a *mailcluster.Account) bool, deny func() error) error {
	c, ok := callerOf(ctx)
	switch {
	case !ok:
		return errNoCaller
	case c.system != "":
		return nil
	case c.account == nil:
		return mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication is required.")
	case !may(c.account):
		return deny()
	}
	return nil
}

// requireGlobalAdmin admits the node itself and global administrators.
func requireGlobalAdmin(ctx context.Context) error {
	return authorizeAccount(ctx, func(a *mailcluster.Account) bool { return a.AdminRights == mailcluster.AdminGlobal },
		func() error {
			return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may do this.")
		})
}

// requireAdmin admits the node itself and any administrator (global or
// domain); what a domain administrator then sees is filtered by domain.
func requireAdmin(ctx context.Context) error {
	return authorizeAccount(ctx, func(a *mailcluster.Account) bool { return a.AdminRights != mailcluster.AdminNone },
		func() error { return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only administrators may do this.") })
}

// authorizeDomain admits the node itself, global administrators and the
// administrators of domain.
func authorizeDomain(ctx context.Context, domain string) error {
	return authorizeAccount(ctx, func(a *mailcluster.Account) bool {
		return a.AdminRights == mailcluster.AdminGlobal || a.AdminRights == mailcluster.AdminDomain && a.Domain == domain
	}, func() error {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "You may not manage the accounts of domain %s.", domain)
	})
}
