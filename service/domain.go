package service

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"mailcluster/schema"

	"mailcluster"
)

// getDomain returns a domain in service for the account rules: a domain
// being deleted answers ECONFLICT, so that it takes no new accounts and
// its accounts are neither listed nor changed through it.
// Errors: ENOTFOUND, ECONFLICT (being deleted), EINTERNAL.
func (s *Service) getDomain(name string) (*mailcluster.Domain, uint64, error) {
	d, idx, err := s.readDomain(name)
	if err != nil {
		return nil, 0, err
	}
	if d.Deleting != nil {
		return nil, 0, errDomainDeleting(name)
	}
	return d, idx, nil
}

// checkDomain is getDomain for a caller that needs only to know the
// domain is served: it neither counts the domain's accounts nor copies
// the record. Errors: ENOTFOUND, ECONFLICT (being deleted).
func (s *Service) checkDomain(name string) error {
	d, _, err := s.domainRecord(name)
	if err != nil {
		return err
	}
	if d.Deleting != nil {
		return errDomainDeleting(name)
	}
	return nil
}

// errDomainDeleting refuses a change to a domain being deleted.
func errDomainDeleting(name string) error {
	return mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s is being deleted.", name)
}

// readDomain returns a domain record as stored, a deletion under way
// included, with its account count.
func (s *Service) readDomain(name string) (*mailcluster.Domain, uint64, error) {
	d, idx, err := s.decodeDomain(name)
	if err != nil {
		return nil, 0, err
	}
	d.AccountCount = s.store.Count(schema.AccountPrefix(name))
	return d, idx, nil
}

// decodeDomain returns a domain record as stored, without its count.
func (s *Service) decodeDomain(name string) (*mailcluster.Domain, uint64, error) {
	d, idx, err := s.domainRecord(name)
	if err != nil {
		return nil, 0, err
	}
	if d.Deleting != nil {
		del := *d.Deleting // the cached value is shared
		d.Deleting = &del
	}
	return &d, idx, nil
}

// domainRecord is decodeDomain by value, for readers that only look: its
// Deleting points into the decoded cache and must not be modified.
func (s *Service) domainRecord(name string) (mailcluster.Domain, uint64, error) {
	kv, ok := s.getShared(schema.Domain(name))
	if !ok {
		return mailcluster.Domain{}, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s does not exist.", name)
	}
	var d mailcluster.Domain
	if !s.decodeCached(kv, &d) {
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return mailcluster.Domain{}, 0, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored domain record is damaged.", Err: err}
		}
		s.storeDecoded(kv, d)
	}
	return d, kv.ModifyIndex, nil
}

// domainDeleting reports whether a domain is marked as being deleted.
func (s *Service) domainDeleting(name string) bool {
	d, _, err := s.domainRecord(name)
	return err == nil && d.Deleting != nil
}

// decoded is a record decoded from the store at one modify index.
type decoded struct {
	index uint64
	value any // Domain or Account, by value
}

// maxDecoded bounds the cache of decoded records.
const maxDecoded = 20000

// decodedCache is a bounded cache of decoded records: when full, the least
// recently used record leaves (never all at once).
type decodedCache struct {
	once    sync.Once
	entries *lru.Cache[string, decoded]
}

func (c *decodedCache) cache() *lru.Cache[string, decoded] {
	c.once.Do(func() { c.entries, _ = lru.New[string, decoded](maxDecoded) })
	return c.entries
}

// decodeCached fills dst from the cache when it holds kv's record at kv's
// modify index.
func (s *Service) decodeCached(kv mailcluster.KV, dst any) bool {
	v, ok := s.decoded.cache().Get(kv.Key)
	if !ok || v.index != kv.ModifyIndex {
		return false
	}
	switch d := dst.(type) {
	case *mailcluster.Domain:
		rec, ok := v.value.(mailcluster.Domain)
		*d = rec
		return ok
	case *mailcluster.Account:
		rec, ok := v.value.(mailcluster.Account)
		*d = rec
		return ok
	case *mailcluster.Usage:
		rec, ok := v.value.(mailcluster.Usage)
		*d = rec
		return ok
	}
	return false
}

func (s *Service) storeDecoded(kv mailcluster.KV, value any) {
	s.decoded.cache().Add(kv.Key, decoded{index: kv.ModifyIndex, value: value})
}

// FindDomains returns every domain the caller may see, by name; a domain
// being deleted is listed with its Deleting field set.
func (s *Service) FindDomains(ctx context.Context) ([]*mailcluster.Domain, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	var out []*mailcluster.Domain
	for _, kv := range s.store.List(schema.PrefixDomains, "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.PrefixDomains)
		if authorizeDomain(ctx, name) != nil {
			continue
		}
		d, _, err := s.readDomain(name)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// FindDomain returns one domain (Deleting set while it is being deleted).
// Errors: ENOTFOUND, EINVALID, EFORBIDDEN.
func (s *Service) FindDomain(ctx context.Context, name string) (*mailcluster.Domain, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	name = mailcluster.NormalizeDomain(name)
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, name); err != nil {
		return nil, err
	}
	d, _, err := s.readDomain(name)
	return d, err
}

// CreateDomain adds a domain. Errors: EINVALID, ECONFLICT (exists),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateDomain(ctx context.Context, d *mailcluster.Domain) (*mailcluster.Domain, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	d.Name = mailcluster.NormalizeDomain(d.Name)
	if err := mailcluster.ValidateDomainName(d.Name); err != nil {
		return nil, err
	}
	if err := validateDomainFields(d.Description, d.MaxAccounts); err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	pm, err := s.postmasterAccount(ctx, d.Name, d.Postmaster)
	if err != nil {
		return nil, err
	}
	d.Postmaster = pm
	if _, ok := s.store.Get(schema.Domain(d.Name)); ok {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s already exists.", d.Name)
	}
	d.CreatedAt, d.UpdatedAt, d.AccountCount = s.now(), s.now(), 0
	b, _ := json.Marshal(d)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Domain(d.Name), Value: b, Index: 0}}); err != nil {
		return nil, conflictAs(err, "Domain %s already exists.", d.Name)
	}
	s.log.Info("domain created", "domain", d.Name)
	if out, _, err := s.getDomain(d.Name); err == nil {
		return out, nil
	}
	return d, nil // committed; this node's snapshot has not shown it yet
}

// postmasterAccount checks the Postmaster setting of domain: "" (the
// first global administrator), or the address of an account of a domain
// in service (a local part is of domain); a domain administrator may name
// only an account of its own domain. It returns the normalized address.
// Errors: EINVALID, EFORBIDDEN.
func (s *Service) postmasterAccount(ctx context.Context, domain, address string) (string, error) {
	if strings.TrimSpace(address) == "" {
		return "", nil
	}
	mailbox, adomain, err := splitLocal(strings.TrimSpace(address), domain)
	if err != nil {
		return "", err
	}
	if c := CallerFromContext(ctx); c != nil && c.AdminRights != mailcluster.AdminGlobal && adomain != c.Domain {
		return "", mailcluster.Errorf(mailcluster.EFORBIDDEN, "The postmaster must be an account of your own domain %s.", c.Domain)
	}
	if _, err := s.lookupAccount(mailbox + "@" + adomain); err != nil {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "The postmaster %s@%s is not an account served here.", mailbox, adomain)
	}
	return mailbox + "@" + adomain, nil
}

func validateDomainFields(description string, maxAccounts int) error {
	if len(description) > 1024 || strings.ContainsAny(description, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Description must be one line of at most 1024 bytes.")
	}
	if maxAccounts < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "MaxAccounts must be 0 (unlimited) or more.")
	}
	return nil
}

// UpdateDomain changes a domain's fields. A domain administrator may
// change only the Postmaster of its own domain (to an account of that
// domain). Errors as CreateDomain plus ENOTFOUND; ECONFLICT also for a
// domain being deleted.
func (s *Service) UpdateDomain(ctx context.Context, name string, upd mailcluster.DomainUpdate) (*mailcluster.Domain, error) {
	name = mailcluster.NormalizeDomain(name)
	if upd.Description == nil && upd.MaxAccounts == nil && upd.Postmaster != nil {
		if err := requireSignedIn(ctx); err != nil {
			return nil, err
		}
		if err := authorizeDomain(ctx, name); err != nil {
			return nil, err
		}
	} else if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	d, idx, err := s.getDomain(name)
	if err != nil {
		return nil, err
	}
	if upd.Postmaster != nil {
		if d.Postmaster, err = s.postmasterAccount(ctx, name, *upd.Postmaster); err != nil {
			return nil, err
		}
	}
	if upd.Description != nil {
		d.Description = *upd.Description
	}
	if upd.MaxAccounts != nil {
		d.MaxAccounts = *upd.MaxAccounts
	}
	if err := validateDomainFields(d.Description, d.MaxAccounts); err != nil {
		return nil, err
	}
	d.UpdatedAt = s.now()
	d.AccountCount = 0
	b, _ := json.Marshal(d)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Domain(name), Value: b, Index: idx}}); err != nil {
		return nil, conflictAs(err, "Domain %s was changed concurrently; try again.", name)
	}
	if out, _, err := s.getDomain(name); err == nil {
		return out, nil
	}
	return d, nil // committed; this node's snapshot has not shown it yet
}

// DeleteDomain removes a domain. A domain with accounts is removed, with
// all its accounts, only when force is set. The deletion has three steps:
// one transaction marks the domain as being deleted (from then on it takes
// no new accounts, no account or domain changes and no mail), bounded
// transactions delete its accounts with their usage, freeze and
// global-administrator records, and a last one deletes what is left and
// the domain record. The call returns when the domain is gone; the work
// goes on to the end when the caller goes away (until this node stops
// being the primary or closes its store; the next primary resumes it, see
// ResumeDomainDeletions). A call for a domain already being deleted joins
// the deletion under way (or resumes it) and answers when it ends.
// The domain holding the last usable global administrator, and the
// caller's own domain, cannot be deleted.
// Errors: ENOTFOUND, ECONFLICT (has accounts, last administrator, own
// domain), EFORBIDDEN, EREADONLY, EUNAVAILABLE; a deletion that stops
// before its end answers the store's error (EREADONLY, EUNAVAILABLE,
// ECONFLICT or EINTERNAL) and stays marked.
func (s *Service) DeleteDomain(ctx context.Context, name string, force bool) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	name = mailcluster.NormalizeDomain(name)
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	d, idx, err := s.readDomain(name)
	if err != nil {
		return err
	}
	if d.Deleting != nil {
		return s.awaitDeletion(ctx, context.WithoutCancel(ctx), name, true)
	}
	if d.AccountCount > 0 && !force {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s has %d accounts; delete them first or use force.", name, d.AccountCount)
	}
	if c := CallerFromContext(ctx); c != nil && c.Domain == name {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot delete the domain of your own account.")
	}
	if err := s.checkAdminsLeft(name); err != nil {
		return err
	}
	d.Deleting = &mailcluster.DomainDeletion{Since: s.now(), By: callerName(ctx), Accounts: d.AccountCount}
	d.AccountCount = 0
	b, _ := json.Marshal(d)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Domain(name), Value: b, Index: idx}}); err != nil {
		return conflictAs(err, "Domain %s was changed concurrently; try again.", name)
	}
	s.log.Info("domain deletion started", "domain", name, "accounts", d.Deleting.Accounts)
	s.recordEvent(mailcluster.ClusterEvent{Event: mailcluster.EventDomainDeleteStarted, Message: "deleting a domain",
		Fields: map[string]string{"domain": name, "accounts": strconv.Itoa(d.Deleting.Accounts), "by": d.Deleting.By, "resumed": "false"}})
	return s.awaitDeletion(ctx, context.WithoutCancel(ctx), name, false)
}

// callerName names the caller of ctx for the record of a deletion.
func callerName(ctx context.Context) string {
	c, _ := callerOf(ctx)
	switch {
	case c.account != nil:
		return c.account.Address()
	case c.system != "":
		return "system: " + c.system
	}
	return ""
}

// checkAdminsLeft refuses to delete domain name when no usable global
// administrator would be left outside it and the domains being deleted
// already (checkLastAdmin leaves those out: their administrators are going
// too).
func (s *Service) checkAdminsLeft(name string) error {
	return s.checkLastAdmin(name, "")
}
