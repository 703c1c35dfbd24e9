package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// A group is its record (schema.Group) and one key per member account
// (schema.GroupMember, value "{}"). Groups have their own name space. As
// for lists, a transaction that adds members rewrites the group record and
// touches each member's account record.

func (s *Service) getGroup(domain, name string) (*mailcluster.Group, mailcluster.KV, error) {
	return getSet(s, groupKind.of(domain, name), func(g *mailcluster.Group) *int { return &g.MemberCount })
}

func validateGroupFields(g *mailcluster.Group) error {
	if err := validateDescription(g.Description); err != nil {
		return err
	}
	if g.QuotaBytes < 0 || g.QuotaMessages < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "Default quotas must be 0 (none) or more.")
	}
	return nil
}

// groupMemberAdd checks an account (mailbox or address) to add to a group
// of domain and returns it as a member of the group.
func (s *Service) groupMemberAdd(domain, group, member string) (memberRef, error) {
	mailbox, mdomain, err := splitLocal(strings.TrimSpace(member), domain)
	if err != nil {
		return memberRef{}, err
	}
	kv, ok := s.store.Get(schema.Account(mdomain, mailbox))
	if mdomain != domain || !ok {
		return memberRef{}, mailcluster.Errorf(mailcluster.EINVALID, "%s@%s is not an account of %s: a group holds accounts of its own domain.", mailbox, mdomain, domain)
	}
	return memberRef{key: schema.GroupMember(domain, group, mailbox), value: []byte("{}"), target: kv, address: mailbox + "@" + domain}, nil
}

// groupMemberKey returns the key of an account (mailbox or address) to
// remove from a group of domain; ok is false for an address of another
// domain.
func groupMemberKey(domain, group, member string) (string, bool, error) {
	mailbox, mdomain, err := splitLocal(strings.TrimSpace(member), domain)
	if err != nil {
		return "", false, err
	}
	return schema.GroupMember(domain, group, mailbox), mdomain == domain, nil
}

// CreateGroup creates a group with its first members.
// Errors: EINVALID, ENOTFOUND, ECONFLICT, ETOOLARGE, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) CreateGroup(ctx context.Context, in mailcluster.GroupCreate) (*mailcluster.Group, error) {
	domain, name, err := authorizeName(ctx, in.Domain, in.Name)
	if err != nil {
		return nil, err
	}
	g := &mailcluster.Group{Domain: domain, Name: name, Description: in.Description, QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages}
	if err := validateGroupFields(g); err != nil {
		return nil, err
	}
	m := groupKind.of(domain, name)
	if err := m.checkMembersGiven(len(in.Members)); err != nil {
		return nil, err
	}
	const fixed = 2 // the domain's check and the record
	if err := m.checkCreateSize(fixed, len(in.Members)); err != nil {
		return nil, err
	}
	didx, err := s.writableDomain(domain)
	if err != nil {
		return nil, err
	}
	if s.has(m.record()) {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "%s already exists.", m.what())
	}
	var o opSet
	o.check(schema.Domain(domain), didx)
	g.CreatedAt, g.UpdatedAt = s.now(), s.now()
	if err := createSet(ctx, s, &o, m, g, in.Members, func(member string) (memberRef, error) {
		return s.groupMemberAdd(domain, name, member)
	}); err != nil {
		return nil, err
	}
	return reread(g, s.getGroup, domain, name), nil
}

// FindGroup returns one group (with MemberCount).
func (s *Service) FindGroup(ctx context.Context, domain, name string) (*mailcluster.Group, error) {
	return findRecord(ctx, s, domain, name, s.getGroup)
}

// FindGroups returns a page of a domain's groups (see FindAliases).
func (s *Service) FindGroups(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.Group, string, error) {
	return findPage(ctx, s, domain, cursor, limit, schema.GroupPrefix, byName(s.getGroup))
}

// UpdateGroup changes a group and its membership in one transaction.
func (s *Service) UpdateGroup(ctx context.Context, domain, name string, upd mailcluster.GroupUpdate) (*mailcluster.Group, error) {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	changes := len(upd.AddMembers) + len(upd.RemoveMembers)
	if err := checkMemberChanges(changes); err != nil {
		return nil, err
	}
	if _, err := s.writableDomain(domain); err != nil {
		return nil, err
	}
	g, kv, err := s.getGroup(domain, name)
	if err != nil {
		return nil, err
	}
	m := groupKind.of(domain, name)
	if g.Deleting {
		return nil, m.errDeleting()
	}
	setIf(&g.Description, upd.Description)
	setIf(&g.QuotaBytes, upd.QuotaBytes)
	setIf(&g.QuotaMessages, upd.QuotaMessages)
	if err := validateGroupFields(g); err != nil {
		return nil, err
	}
	var o opSet
	if err := memberChanges(s, &o, m, g.MemberCount, upd.AddMembers, upd.RemoveMembers,
		func(member string) (memberRef, error) { return s.groupMemberAdd(domain, name, member) },
		func(member string) (string, bool, error) { return groupMemberKey(domain, name, member) }); err != nil {
		return nil, err
	}
	g.UpdatedAt, g.MemberCount = s.now(), 0
	if err := s.saveSet(ctx, &o, m, g, kv.ModifyIndex, func() error { return errTooManyMemberChanges(changes) }); err != nil {
		return nil, err
	}
	return reread(g, s.getGroup, domain, name), nil
}

// DeleteGroup removes a group, its memberships and its list memberships:
// a small group in one transaction, a larger one in bounded transactions
// after a mark (see DeleteList).
func (s *Service) DeleteGroup(ctx context.Context, domain, name string) error {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return err
	}
	if _, err := s.writableDomain(domain); err != nil {
		return err
	}
	g, kv, err := s.getGroup(domain, name)
	if err != nil {
		return err
	}
	return s.deleteSet(ctx, s.groupDeletion(domain, name), kv, g.Deleting, func() any {
		g.Deleting, g.MemberCount = true, 0
		return g
	})
}

// groupDeletion describes the deletion of a group: its memberships in the
// lists of its domain and its members, then its record.
func (s *Service) groupDeletion(domain, name string) setDeletion {
	return setDeletion{memberSet: groupKind.of(domain, name),
		keys: func(limit int) []string {
			var out []string
			for _, kv := range s.store.List(schema.ListPrefix(domain), "", 0) {
				if len(out) == limit {
					return out
				}
				key := schema.ListMemberGroup(domain, strings.TrimPrefix(kv.Key, schema.ListPrefix(domain)), name)
				if _, ok := s.store.Get(key); ok {
					out = append(out, key)
				}
			}
			if len(out) == limit {
				return out
			}
			for _, kv := range s.store.List(schema.GroupMemberPrefix(domain, name), "", limit-len(out)) {
				out = append(out, kv.Key)
			}
			return out
		}}
}

// FindGroupMembers returns a page of a group's members as full addresses.
func (s *Service) FindGroupMembers(ctx context.Context, domain, name, cursor string, limit int) ([]string, string, error) {
	return findMembers(ctx, s, groupKind, domain, name, cursor, limit, func(domain, mailbox string) string {
		return mailbox + "@" + domain
	})
}

// AccountGroups returns the groups an account belongs to.
func (s *Service) AccountGroups(ctx context.Context, domain, mailbox string) ([]*mailcluster.Group, error) {
	return accountSets(ctx, s, groupKind, domain, mailbox, s.getGroup)
}

// quotaGroups returns a function that fills in the default quotas of the
// groups of domain for an account of that domain whose own quota is 0:
// the smallest non-zero default among its groups (not being deleted).
// The account given is changed; the stored record is not.
func (s *Service) quotaGroups(domain string) func(a *mailcluster.Account) {
	var groups []mailcluster.Group
	if s.store.Count(schema.GroupPrefix(domain)) > 0 {
		for _, kv := range s.store.List(schema.GroupPrefix(domain), "", 0) {
			var g mailcluster.Group
			if json.Unmarshal(kv.Value, &g) == nil && !g.Deleting && (g.QuotaBytes > 0 || g.QuotaMessages > 0) {
				g.Name = strings.TrimPrefix(kv.Key, schema.GroupPrefix(domain))
				groups = append(groups, g)
			}
		}
	}
	return func(a *mailcluster.Account) {
		if len(groups) == 0 || a.QuotaBytes != 0 && a.QuotaMessages != 0 {
			return
		}
		var bytes, messages int64
		for _, g := range groups {
			if _, ok := s.store.Get(schema.GroupMember(domain, g.Name, a.Mailbox)); !ok {
				continue
			}
			bytes = minPositive(bytes, g.QuotaBytes)
			messages = minPositive(messages, g.QuotaMessages)
		}
		if a.QuotaBytes == 0 {
			a.QuotaBytes = bytes
		}
		if a.QuotaMessages == 0 {
			a.QuotaMessages = messages
		}
	}
}

// minPositive returns the smaller of two values, ignoring zeros.
func minPositive(cur, v int64) int64 {
	if v > 0 && (cur == 0 || v < cur) {
		return v
	}
	return cur
}

// accountGroupChanges adds to o the groups an account create or update
// joins and leaves (group names of the account's domain); the account's
// record is written by the same transaction.
func (s *Service) accountGroupChanges(o *opSet, a *mailcluster.Account, add, remove []string) error {
	parse := func(list []string) ([]string, error) {
		var out []string
		for _, s := range list {
			s = strings.TrimSpace(s)
			if name, domain, ok := strings.Cut(s, "@"); ok {
				if mailcluster.NormalizeDomain(domain) != a.Domain {
					return nil, mailcluster.Errorf(mailcluster.EINVALID, "%s is not a group of %s: an account joins the groups of its own domain.", s, a.Domain)
				}
				s = name
			}
			name := mailcluster.NormalizeMailbox(s)
			if err := mailcluster.ValidateMailbox(name); err != nil {
				return nil, mailcluster.Errorf(mailcluster.EINVALID, "Group name %q is not valid.", s)
			}
			out = append(out, name)
		}
		return out, nil
	}
	adds, removes, err := parseChanges(add, remove, parse)
	if err != nil {
		return err
	}
	return s.joinSets(o, a, groupKind, adds, removes, []byte("{}"))
}
