package service

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"mailcluster/schema"

	"mailcluster"
)

// Aliases, mailing lists and groups share these rules:
//   - accounts, aliases and lists share one name space per domain: a
//     transaction that creates one checks (index 0) that no key of the
//     other two kinds exists, so two creates cannot race past each other;
//   - a transaction that makes a record refer to an account, a list or a
//     group (an alias target, a member, a list owner) rewrites that record
//     unchanged at the index it read ("touches" it): it fails when the
//     record changed or went meanwhile, and a deletion that read the
//     record before fails on its compare-and-set, so a deletion never
//     leaves a reference behind;
//   - one call is one transaction of at most MaxWriteOps operations.

// MaxWriteOps is the most operations one call writes in one transaction,
// within the 125 a write of a cluster may hold.
const MaxWriteOps = 120

// opSet builds the operations of one transaction.
type opSet struct {
	ops     []mailcluster.Op
	changed map[string]bool
	checked map[string]bool
}

// add appends a change of a key.
func (o *opSet) add(op mailcluster.Op) {
	if o.changed == nil {
		o.changed = map[string]bool{}
	}
	o.changed[op.Key] = true
	o.ops = append(o.ops, op)
}

// touch rewrites kv unchanged at its index, unless the transaction
// changes the key already.
func (o *opSet) touch(kv mailcluster.KV) {
	if !o.changed[kv.Key] {
		o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: kv.Value, Index: kv.ModifyIndex})
	}
}

// check asserts that key is at index (0: absent), once per key.
func (o *opSet) check(key string, index uint64) {
	if o.checked == nil {
		o.checked = map[string]bool{}
	}
	if !o.checked[key] {
		o.checked[key] = true
		o.ops = append(o.ops, mailcluster.Op{Verb: mailcluster.OpCheck, Key: key, Index: index})
	}
}

// tooLarge refuses a transaction of more than MaxWriteOps operations.
func (o *opSet) tooLarge(what string) error {
	if len(o.ops) <= MaxWriteOps {
		return nil
	}
	return mailcluster.Errorf(mailcluster.ETOOLARGE,
		"%s needs %d changes, more than the %d one request may make; make it in several requests.", what, len(o.ops), MaxWriteOps)
}

// pageLimit checks a page size: 0 means 100, otherwise 1..1000.
func pageLimit(limit int) (int, error) {
	if limit == 0 {
		return 100, nil
	}
	if limit < 1 || limit > 1000 {
		return 0, mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	return limit, nil
}

// page returns up to limit keys under prefix after the key prefix+cursor,
// and the cursor of the next page ("" at the end).
func (s *Service) page(prefix, cursor string, limit int) ([]mailcluster.KV, string) {
	after := ""
	if cursor != "" {
		after = prefix + cursor
	}
	kvs := s.store.List(prefix, after, limit+1)
	if len(kvs) <= limit {
		return kvs, ""
	}
	kvs = kvs[:limit]
	return kvs, strings.TrimPrefix(kvs[limit-1].Key, prefix)
}

// addressKeys are the keys of the three kinds that share the name space
// of addresses: account, alias and list.
func addressKeys(domain, name string) [3]string {
	return [3]string{schema.Account(domain, name), schema.Alias(domain, name), schema.List(domain, name)}
}

// checkAddressFree refuses name@domain when an account, alias or list of
// that name exists (ECONFLICT).
func (s *Service) checkAddressFree(domain, name string) error {
	kinds := [3]string{"An account", "An alias", "A mailing list"}
	for i, key := range addressKeys(domain, name) {
		if _, ok := s.store.Get(key); ok {
			return mailcluster.Errorf(mailcluster.ECONFLICT, "%s %s@%s already exists.", kinds[i], name, domain)
		}
	}
	return nil
}

// checkAddressFreeOps adds the checks that no account, alias or list of
// name@domain exists, except own (the key the transaction creates with a
// compare-and-set of index 0).
func checkAddressFreeOps(o *opSet, domain, name, own string) {
	for _, key := range addressKeys(domain, name) {
		if key != own {
			o.check(key, 0)
		}
	}
}

// isGlobal reports whether ctx acts for the node itself or a global
// administrator.
func isGlobal(ctx context.Context) bool {
	c := CallerFromContext(ctx)
	return c == nil || c.AdminRights == mailcluster.AdminGlobal
}

// splitLocal reads a local part or a full address; a local part is of
// domain. It returns the normalized mailbox and domain.
func splitLocal(s, domain string) (string, string, error) {
	if strings.Contains(s, "@") {
		return mailcluster.SplitAddress(s)
	}
	mailbox := mailcluster.NormalizeMailbox(s)
	if err := mailcluster.ValidateMailbox(mailbox); err != nil {
		return "", "", err
	}
	return mailbox, domain, nil
}

func (s *Service) getAlias(domain, name string) (*mailcluster.Alias, uint64, error) {
	a, kv, err := getRecord[mailcluster.Alias](s, schema.Alias(domain, name), "alias", "Alias "+name+"@"+domain)
	if err != nil {
		return nil, 0, err
	}
	return a, kv.ModifyIndex, nil
}

// checkDomainOp adds to o the check of the record of domain, which must
// be in service. Errors: ENOTFOUND, ECONFLICT (being deleted).
func (s *Service) checkDomainOp(o *opSet, domain string) error {
	_, didx, err := s.getDomain(domain)
	if err != nil {
		return err
	}
	o.check(schema.Domain(domain), didx)
	return nil
}

// aliasTarget checks the target of an alias of domain: an account (an
// address, or a local part of domain) of a domain in service; an account
// of another domain only for global administrators. It adds to o the
// touch of the target's record and, for another domain, the check of that
// domain's record, and returns the target's address.
// Errors: EINVALID, ENOTFOUND, ECONFLICT (domain being deleted), EFORBIDDEN.
func (s *Service) aliasTarget(ctx context.Context, o *opSet, domain, target string) (string, error) {
	mailbox, tdomain, err := splitLocal(strings.TrimSpace(target), domain)
	if err != nil {
		return "", err
	}
	if tdomain != domain {
		if !isGlobal(ctx) {
			return "", mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may point an alias of %s at an account of another domain.", domain)
		}
		if err := s.checkDomainOp(o, tdomain); err != nil {
			return "", err
		}
	}
	kv, ok := s.store.Get(schema.Account(tdomain, mailbox))
	if !ok {
		return "", mailcluster.Errorf(mailcluster.ENOTFOUND, "Account %s@%s, the alias's target, does not exist.", mailbox, tdomain)
	}
	o.touch(kv)
	return mailbox + "@" + tdomain, nil
}

// checkAliasCount refuses a target that would get more than
// MaxAliasesPerAccount aliases by adding n (ECONFLICT).
func (s *Service) checkAliasCount(target string, n int) error {
	if n > 0 && s.store.Count(schema.AliasTargetPrefix(target))+n > mailcluster.MaxAliasesPerAccount {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Account %s would have more than %d aliases.", target, mailcluster.MaxAliasesPerAccount)
	}
	return nil
}

// newAliasOps adds to o the record of a new alias with its index entry and
// the name-space checks.
func newAliasOps(o *opSet, a *mailcluster.Alias) {
	key := schema.Alias(a.Domain, a.Name)
	b, _ := json.Marshal(a)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: b, Index: 0})
	o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.AliasTarget(a.Target, a.Address()), Value: []byte("{}")})
	checkAddressFreeOps(o, a.Domain, a.Name, key)
}

// deleteAliasOps adds to o the deletion of an alias record (at index) and
// of its index entry.
func deleteAliasOps(o *opSet, a *mailcluster.Alias, index uint64) {
	o.add(mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: schema.Alias(a.Domain, a.Name), Index: index})
	o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: schema.AliasTarget(a.Target, a.Address())})
}

// CreateAlias creates name@domain delivering to target (an address).
// Errors: EINVALID, ENOTFOUND (domain, target), ECONFLICT (an account,
// alias or list of that name exists; the target has MaxAliasesPerAccount),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateAlias(ctx context.Context, domain, name, target string) (*mailcluster.Alias, error) {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	o, err := s.newAddress(domain, name)
	if err != nil {
		return nil, err
	}
	addr, err := s.aliasTarget(ctx, o, domain, target)
	if err != nil {
		return nil, err
	}
	if err := s.checkAliasCount(addr, 1); err != nil {
		return nil, err
	}
	a := &mailcluster.Alias{Domain: domain, Name: name, Target: addr, CreatedAt: s.now(), UpdatedAt: s.now()}
	newAliasOps(o, a)
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Alias %s or its target was changed concurrently; try again.", a.Address())
	}
	s.log.Info("alias created", "alias", a.Address(), "target", a.Target)
	return a, nil
}

// FindAlias returns one alias. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAlias(ctx context.Context, domain, name string) (*mailcluster.Alias, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	a, _, err := s.getAlias(domain, name)
	return a, err
}

// readName checks a read of name@domain: a caller, a serving node, valid
// names, the caller's rights on domain and the domain in service.
func (s *Service) readName(ctx context.Context, domain, name string) (string, string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return "", "", err
	}
	if err := s.checkServing(); err != nil {
		return "", "", err
	}
	domain, name, err := normalizeAccountName(domain, name)
	if err != nil {
		return "", "", err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return "", "", err
	}
	if err := s.checkDomain(domain); err != nil {
		return "", "", err
	}
	return domain, name, nil
}

// readDomainPage checks a paged read of a domain's records and returns
// the normalized domain and page size.
func (s *Service) readDomainPage(ctx context.Context, domain string, limit int) (string, int, error) {
	if err := requireSignedIn(ctx); err != nil {
		return "", 0, err
	}
	if err := s.checkServing(); err != nil {
		return "", 0, err
	}
	domain = mailcluster.NormalizeDomain(domain)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return "", 0, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return "", 0, err
	}
	if err := s.checkDomain(domain); err != nil {
		return "", 0, err
	}
	limit, err := pageLimit(limit)
	return domain, limit, err
}

// FindAliases returns a page of a domain's aliases in name order, starting
// after cursor (a name), at most limit (1..1000, 0: 100), and the cursor
// of the next page ("" at the end). Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAliases(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.Alias, string, error) {
	return findPage(ctx, s, domain, cursor, limit, schema.AliasPrefix, func(_, _ string, kv mailcluster.KV) (*mailcluster.Alias, error) {
		return decodeRecord[mailcluster.Alias](kv, "alias")
	})
}

// UpdateAlias points an alias at another target. Errors as CreateAlias.
func (s *Service) UpdateAlias(ctx context.Context, domain, name, target string) (*mailcluster.Alias, error) {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	if _, err := s.writableDomain(domain); err != nil {
		return nil, err
	}
	a, idx, err := s.getAlias(domain, name)
	if err != nil {
		return nil, err
	}
	var o opSet
	addr, err := s.aliasTarget(ctx, &o, domain, target)
	if err != nil {
		return nil, err
	}
	if addr == a.Target {
		return a, nil
	}
	if err := s.checkAliasCount(addr, 1); err != nil {
		return nil, err
	}
	old := a.Target
	a.Target, a.UpdatedAt = addr, s.now()
	b, _ := json.Marshal(a)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Alias(domain, name), Value: b, Index: idx})
	o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: schema.AliasTarget(old, a.Address())})
	o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.AliasTarget(addr, a.Address()), Value: []byte("{}")})
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Alias %s or its target was changed concurrently; try again.", a.Address())
	}
	s.log.Info("alias updated", "alias", a.Address(), "target", a.Target)
	return a, nil
}

// DeleteAlias removes an alias. Errors: EINVALID, ENOTFOUND, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteAlias(ctx context.Context, domain, name string) error {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return err
	}
	if _, err := s.writableDomain(domain); err != nil {
		return err
	}
	a, idx, err := s.getAlias(domain, name)
	if err != nil {
		return err
	}
	var o opSet
	deleteAliasOps(&o, a, idx)
	if err := s.txn(ctx, o.ops); err != nil {
		return conflictAs(err, "Alias %s was changed concurrently; try again.", a.Address())
	}
	s.log.Info("alias deleted", "alias", a.Address())
	return nil
}

// AccountAliases returns the aliases that point at an account.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountAliases(ctx context.Context, domain, mailbox string) ([]*mailcluster.Alias, error) {
	domain, mailbox, err := s.readAccountName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	return s.aliasesOf(domain, mailbox), nil
}

// aliasesOf returns the aliases that point at account mailbox@domain
// (names already checked).
func (s *Service) aliasesOf(domain, mailbox string) []*mailcluster.Alias {
	out := []*mailcluster.Alias{}
	for _, kv := range s.accountAliasEntries(mailbox + "@" + domain) {
		if a, _, err := s.getAlias(kv.domain, kv.name); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// readAccountName is readName for a read about an existing account.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) readAccountName(ctx context.Context, domain, mailbox string) (string, string, error) {
	domain, mailbox, err := s.readName(ctx, domain, mailbox)
	if err != nil {
		return "", "", err
	}
	if _, _, err := s.getAccount(domain, mailbox); err != nil {
		return "", "", err
	}
	return domain, mailbox, nil
}

// MembershipQuery says which memberships AccountMemberships reads.
type MembershipQuery struct {
	Aliases, Lists, Groups bool
}

// AccountMemberships are the aliases that point at an account and the
// mailing lists and groups it is a direct member of.
type AccountMemberships struct {
	Aliases []*mailcluster.Alias
	Lists   []*mailcluster.MailingList
	Groups  []*mailcluster.Group
}

// AccountMemberships returns what q asks of an account's memberships, as
// AccountAliases, AccountLists and AccountGroups would, with one check of
// the caller and the account; what q does not ask is nil.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountMemberships(ctx context.Context, domain, mailbox string, q MembershipQuery) (AccountMemberships, error) {
	var out AccountMemberships
	domain, mailbox, err := s.readAccountName(ctx, domain, mailbox)
	if err != nil {
		return out, err
	}
	if q.Aliases {
		out.Aliases = s.aliasesOf(domain, mailbox)
	}
	if q.Lists {
		out.Lists = setsOf(s, listKind, domain, mailbox, s.getList)
	}
	if q.Groups {
		out.Groups = setsOf(s, groupKind, domain, mailbox, s.getGroup)
	}
	return out, nil
}

// aliasEntry is an alias named by the index of an account's aliases.
type aliasEntry struct {
	key          string // the index key
	domain, name string // the alias
}

// accountAliasEntries reads the index of the aliases pointing at address.
func (s *Service) accountAliasEntries(address string) []aliasEntry {
	prefix := schema.AliasTargetPrefix(address)
	var out []aliasEntry
	for _, kv := range s.store.List(prefix, "", 0) {
		name, domain, err := mailcluster.SplitAddress(strings.TrimPrefix(kv.Key, prefix))
		if err == nil {
			out = append(out, aliasEntry{key: kv.Key, domain: domain, name: name})
		}
	}
	return out
}

// accountAliasChanges adds to o the aliases an account create or update
// adds and removes (local parts of the account's domain, or addresses of
// any local domain for a global administrator); a is the account, with
// its record written by the same transaction.
func (s *Service) accountAliasChanges(ctx context.Context, o *opSet, a *mailcluster.Account, add, remove []string, now time.Time) error {
	target := a.Address()
	type ref struct{ domain, name string }
	parse := func(list []string) ([]ref, error) {
		var out []ref
		seen := map[ref]bool{}
		for _, s := range list {
			name, domain, err := splitLocal(strings.TrimSpace(s), a.Domain)
			if err != nil {
				return nil, err
			}
			if domain != a.Domain && !isGlobal(ctx) {
				return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may give %s an alias in another domain (%s).", target, domain)
			}
			if r := (ref{domain, name}); !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
		return out, nil
	}
	adds, removes, err := parseChanges(add, remove, parse)
	if err != nil {
		return err
	}
	for _, r := range removes {
		for _, x := range adds {
			if r == x {
				return mailcluster.Errorf(mailcluster.EINVALID, "Alias %s@%s is both added and removed.", r.name, r.domain)
			}
		}
	}
	added := 0
	for _, r := range adds {
		if r.domain == a.Domain && r.name == a.Mailbox {
			return mailcluster.Errorf(mailcluster.ECONFLICT, "An alias cannot have the account's own name %s.", target)
		}
		if cur, _, err := s.getAlias(r.domain, r.name); err == nil {
			if cur.Target == target {
				continue // there already
			}
			return mailcluster.Errorf(mailcluster.ECONFLICT, "Alias %s already exists and points at %s.", cur.Address(), cur.Target)
		}
		if err := s.checkAddressFree(r.domain, r.name); err != nil {
			return err
		}
		if r.domain != a.Domain {
			if err := s.checkDomainOp(o, r.domain); err != nil {
				return err
			}
		}
		newAliasOps(o, &mailcluster.Alias{Domain: r.domain, Name: r.name, Target: target, CreatedAt: now, UpdatedAt: now})
		added++
	}
	if err := s.checkAliasCount(target, added); err != nil {
		return err
	}
	for _, r := range removes {
		if cur, idx, err := s.getAlias(r.domain, r.name); err == nil && cur.Target == target {
			deleteAliasOps(o, cur, idx)
		}
	}
	return nil
}
