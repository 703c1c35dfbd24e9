package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

func (s *Service) getDomain(name string) (*mailcluster.Domain, uint64, error) {
	kv, ok := s.store.Get(schema.Domain(name))
	if !ok {
		return nil, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s does not exist.", name)
	}
	var d mailcluster.Domain
	if !s.decodeCached(kv, &d) {
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, 0, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored domain record is damaged.", Err: err}
		}
		s.storeDecoded(kv, d)
	}
	d.AccountCount = s.store.Count(schema.AccountPrefix(name))
	return &d, kv.ModifyIndex, nil
}

// decoded is a record decoded from the store at one modify index.
type decoded struct {
	index uint64
	value any // Domain or Account, by value
}

// maxDecoded bounds the cache of decoded records.
const maxDecoded = 20000

// decodeCached copies the decoded form of kv into dst when the cache holds
// it at kv's modify index (records never change at one index).
func (s *Service) decodeCached(kv mailcluster.KV, dst any) bool {
	v, ok := s.decodedCache.Load(kv.Key)
	if !ok || v.(decoded).index != kv.ModifyIndex {
		return false
	}
	switch d := dst.(type) {
	case *mailcluster.Domain:
		rec, ok := v.(decoded).value.(mailcluster.Domain)
		*d = rec
		return ok
	case *mailcluster.Account:
		rec, ok := v.(decoded).value.(mailcluster.Account)
		*d = rec
		return ok
	}
	return false
}

func (s *Service) storeDecoded(kv mailcluster.KV, value any) {
	if s.decodedCount.Add(1) > maxDecoded {
		s.decodedCache.Clear()
		s.decodedCount.Store(0)
	}
	s.decodedCache.Store(kv.Key, decoded{index: kv.ModifyIndex, value: value})
}

// FindDomains returns every domain the caller may see, by name.
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
		d, _, err := s.getDomain(name)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// FindDomain returns one domain. Errors: ENOTFOUND, EINVALID, EFORBIDDEN.
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
	d, _, err := s.getDomain(name)
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

func validateDomainFields(description string, maxAccounts int) error {
	if len(description) > 1024 || strings.ContainsAny(description, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Description must be one line of at most 1024 bytes.")
	}
	if maxAccounts < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "MaxAccounts must be 0 (unlimited) or more.")
	}
	return nil
}

// UpdateDomain changes a domain's fields. Errors as CreateDomain plus ENOTFOUND.
func (s *Service) UpdateDomain(ctx context.Context, name string, upd mailcluster.DomainUpdate) (*mailcluster.Domain, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	name = mailcluster.NormalizeDomain(name)
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
// all its accounts in the same transaction, only when force is set.
// Errors: ENOTFOUND, ECONFLICT (has accounts), EFORBIDDEN, EREADONLY.
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
	_, idx, err := s.getDomain(name)
	if err != nil {
		return err
	}
	accounts := s.store.List(schema.AccountPrefix(name), "", 0)
	if len(accounts) > 0 && !force {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s has %d accounts; delete them first or use force.", name, len(accounts))
	}
	if c := CallerFromContext(ctx); c != nil && c.Domain == name {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot delete the domain of your own account.")
	}
	if err := s.checkLastAdmin(name, ""); err != nil {
		return err
	}
	ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Domain(name), Index: idx}}
	for _, kv := range accounts {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
	}
	for _, kv := range s.store.List(schema.UsagePrefix(name), "", 0) {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: kv.Key})
	}
	for _, kv := range s.store.List(schema.PrefixFrozenAccounts, "", 0) {
		if strings.HasSuffix(kv.Key, "@"+name) {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: kv.Key})
		}
	}
	if err := s.txn(ctx, ops); err != nil {
		return conflictAs(err, "Domain %s was changed concurrently; try again.", name)
	}
	s.log.Info("domain deleted", "domain", name, "accounts", len(accounts))
	return nil
}
