package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// What the calls of aliases, mailing lists and groups (and in part those
// of accounts) share: checking a write, reading a record, paging a
// domain's records.

// authorizeName checks a write of name@domain: a signed-in caller, valid
// names (returned normalized) and the caller's rights on domain.
func authorizeName(ctx context.Context, domain, name string) (string, string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return "", "", err
	}
	domain, name, err := normalizeAccountName(domain, name)
	if err != nil {
		return "", "", err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return "", "", err
	}
	return domain, name, nil
}

// writableDomain checks that this node takes writes and that domain is
// in service, and returns the index of the domain's record.
func (s *Service) writableDomain(domain string) (uint64, error) {
	if err := s.checkWritable(); err != nil {
		return 0, err
	}
	_, idx, err := s.getDomain(domain)
	return idx, err
}

// newAddress checks a create of name@domain, an address (an account, an
// alias or a list): this node takes writes, domain is in service and no
// account, alias or list of that name exists (ECONFLICT). It returns the
// operations of the create so far: the check of the domain's record.
func (s *Service) newAddress(domain, name string) (*opSet, error) {
	didx, err := s.writableDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.checkAddressFree(domain, name); err != nil {
		return nil, err
	}
	o := &opSet{}
	o.check(schema.Domain(domain), didx)
	return o, nil
}

// decodeRecord decodes a stored record of kind ("alias", "group", ...).
func decodeRecord[T any](kv mailcluster.KV, kind string) (*T, error) {
	var v T
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored " + kind + " record is damaged.", Err: err}
	}
	return &v, nil
}

// getRecord reads and decodes the record of kind at key; what names it
// when it does not exist ("Alias sales@example.com").
// Errors: ENOTFOUND, EINTERNAL.
func getRecord[T any](s *Service, key, kind, what string) (*T, mailcluster.KV, error) {
	kv, ok := s.store.Get(key)
	if !ok {
		return nil, kv, mailcluster.Errorf(mailcluster.ENOTFOUND, "%s does not exist.", what)
	}
	v, err := decodeRecord[T](kv, kind)
	return v, kv, err
}

// findPage returns a page of a domain's records below prefix(domain) in
// name order (see FindAliases), each read by get from its name and
// key-value.
func findPage[T any](ctx context.Context, s *Service, domain, cursor string, limit int, prefix func(domain string) string,
	get func(domain, name string, kv mailcluster.KV) (*T, error)) ([]*T, string, error) {
	domain, limit, err := s.readDomainPage(ctx, domain, limit)
	if err != nil {
		return nil, "", err
	}
	p := prefix(domain)
	kvs, next := s.page(p, mailcluster.NormalizeMailbox(cursor), limit)
	out := make([]*T, 0, len(kvs))
	for _, kv := range kvs {
		v, err := get(domain, strings.TrimPrefix(kv.Key, p), kv)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

// byName adapts a read of a record by name to findPage.
func byName[T any](get func(domain, name string) (*T, mailcluster.KV, error)) func(domain, name string, kv mailcluster.KV) (*T, error) {
	return func(domain, name string, _ mailcluster.KV) (*T, error) {
		v, _, err := get(domain, name)
		return v, err
	}
}

// findRecord returns the record name@domain (read by get) after the
// checks of readName.
func findRecord[T any](ctx context.Context, s *Service, domain, name string, get func(domain, name string) (*T, mailcluster.KV, error)) (*T, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	v, _, err := get(domain, name)
	return v, err
}

// parseChanges reads with parse the entries a change adds and removes.
func parseChanges[T any](add, remove []string, parse func([]string) ([]T, error)) (adds, removes []T, err error) {
	if adds, err = parse(add); err != nil {
		return nil, nil, err
	}
	if removes, err = parse(remove); err != nil {
		return nil, nil, err
	}
	return adds, removes, nil
}
