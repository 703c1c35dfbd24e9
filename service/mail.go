package service

import (
	"context"
	"encoding/json"

	"mailcluster/schema"

	"mailcluster"
)

// usage returns an account's published usage (zero when none yet).
func (s *Service) usage(domain, mailbox string) mailcluster.Usage {
	var u mailcluster.Usage
	if kv, ok := s.getShared(schema.Usage(domain, mailbox)); ok && !s.decodeCached(kv, &u) {
		if json.Unmarshal(kv.Value, &u) != nil {
			return mailcluster.Usage{}
		}
		s.storeDecoded(kv, u)
	}
	return u
}

// lookupAccount returns an account by address for the node's own
// components (delivery, SMTP AUTH): no caller authorization applies. The
// result includes the password hash. The accounts of a domain being
// deleted are not found: mail to them is refused for good (550), as it
// will be once the domain is gone. Errors: EINVALID, ENOTFOUND.
func (s *Service) lookupAccount(address string) (*mailcluster.Account, error) {
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return nil, err
	}
	d, _, err := s.decodeDomain(domain)
	if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s is not served here.", domain)
	}
	if err != nil {
		return nil, err
	}
	if d.Deleting != nil {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s is being deleted.", domain)
	}
	a, _, err := s.getAccount(domain, mailbox)
	return a, err
}

// FindMailAccount returns an account whose mail the caller may read and
// change through the management APIs: a global administrator any
// account's, a domain administrator those of its own domain except a
// global administrator's (whose mailbox holds, for one, its thaw tokens).
// Mail is not configuration: reading and deleting messages is allowed on
// every node, secondaries included (the change is reported to the
// primary like a delivery).
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EUNAVAILABLE.
func (s *Service) FindMailAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	a, err := s.FindAccount(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	if c := CallerFromContext(ctx); c != nil && c.AdminRights != mailcluster.AdminGlobal && a.AdminRights == mailcluster.AdminGlobal {
		return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may read a global administrator's mail.")
	}
	return a, nil
}

// isLocalDomain reports whether the cluster serves domain.
func (s *Service) isLocalDomain(domain string) bool {
	_, ok := s.store.Get(schema.Domain(mailcluster.NormalizeDomain(domain)))
	return ok
}

// AuthenticateUser checks a mail user's address and password (SMTP AUTH):
// any account that is neither disabled nor frozen. Every failure is the
// same EUNAUTHORIZED error.
func (s *Service) AuthenticateUser(ctx context.Context, address, password string) (*mailcluster.Account, error) {
	return s.AuthenticateMailUser(ctx, "smtp", address, password)
}

// ApplyUsageReport adds a node's changes to mail to the published usage
// (primary only). Deltas are applied exactly once: each carries the node's
// sequence number and the primary records the last one applied per node,
// in the same transaction. Deltas older than an account's last recount are
// skipped (the recount saw them on disk). The folder changes the deltas
// name are published in the same record (see mailcluster.ReportMark and
// FollowMailChanges), one per folder.
// Errors: EINVALID, EREADONLY, EUNAVAILABLE, ECONFLICT (after retries).
// It returns the store index at which the report is applied.
func (s *Service) ApplyUsageReport(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
	if err := requireSystem(ctx); err != nil {
		return 0, err
	}
	if !mailcluster.ValidNodeName(r.Node) {
		return 0, mailcluster.Errorf(mailcluster.EINVALID, "Report from an invalid node name.")
	}
	if len(r.Deltas) > mailcluster.MaxReportDeltas {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A report may carry at most %d changes.", mailcluster.MaxReportDeltas)
	}
	if err := s.checkWritable(); err != nil {
		return 0, err
	}
	if len(r.Deltas) == 0 {
		return s.store.Index(), nil
	}
	if r.Epoch == "" || len(r.Epoch) > 64 {
		return 0, mailcluster.Errorf(mailcluster.EINVALID, "A report needs an epoch.")
	}
	for _, d := range r.Deltas {
		if !validDelta(d) {
			return 0, mailcluster.Errorf(mailcluster.EINVALID, "A reported change is malformed.")
		}
	}
	var err error
	var index uint64
	for range 20 {
		index, err = s.applyUsageOnce(ctx, r)
		if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
			return index, err
		}
	}
	return 0, err
}

// SetUsage publishes a recounted usage (primary only).
// Errors: EINVALID, ENOTFOUND, EREADONLY, EUNAVAILABLE.
func (s *Service) SetUsage(ctx context.Context, domain, mailbox string, u mailcluster.Usage) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	if err := authorizeDomain(ctx, mailcluster.NormalizeDomain(domain)); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	domain, mailbox, err := normalizeAccountName(domain, mailbox)
	if err != nil {
		return err
	}
	if _, _, err := s.getAccount(domain, mailbox); err != nil {
		return err
	}
	if u.Bytes < 0 || u.Messages < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "Usage cannot be negative.")
	}
	u.UpdatedAt = s.now()
	b, _ := json.Marshal(u)
	_, err = s.store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.Usage(domain, mailbox), Value: b}})
	return err
}
