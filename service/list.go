package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// A mailing list is its record (schema.List) and one key per member
// (schema.ListMemberAccount, schema.ListMemberGroup,
// schema.ListMemberExternal) holding a mailcluster.ListMember as JSON.
// Every transaction that adds members rewrites the list record (so that
// two of them cannot pass the member limit together, and none adds to a
// list being deleted) and touches each account or group member's record
// (see alias.go); an outside member has no record to touch.

const (
	groupMemberTag    = "group:"
	externalMemberTag = "ext:"
)

func (s *Service) getList(domain, name string) (*mailcluster.MailingList, mailcluster.KV, error) {
	return getSet(s, listKind.of(domain, name), func(l *mailcluster.MailingList) *int { return &l.MemberCount })
}

// validateDescription accepts one line of at most 1024 bytes.
func validateDescription(d string) error {
	if len(d) > 1024 || strings.ContainsAny(d, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Description must be one line of at most 1024 bytes.")
	}
	return nil
}

func errNotAccount(address, domain string) error {
	return mailcluster.Errorf(mailcluster.EINVALID,
		"%s is not an account of %s: a list's members of its own domain are its accounts and groups (addresses of other domains are outside members).",
		address, domain)
}

// outsideAddress checks the address of an outside member (normalized by
// SplitAddress): at most MaxOutsideAddress bytes, in a domain name of at
// least two labels (what the outbound queue can deliver to).
func outsideAddress(mailbox, domain string) (string, error) {
	address := mailbox + "@" + domain
	if len(address) > mailcluster.MaxOutsideAddress || !strings.Contains(domain, ".") {
		return "", mailcluster.Errorf(mailcluster.EINVALID,
			"%q is not an address an outside member can have: at most %d characters, in a domain name with at least two labels.",
			clipped(address), mailcluster.MaxOutsideAddress)
	}
	return address, nil
}

// clipped shortens s for an error message.
func clipped(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// listMemberKey reads a member given to a list of domain: exactly one of
// an address (or local part) and a group name. An address of another
// domain is an outside member (external is true).
func listMemberKey(domain, list string, m mailcluster.ListMember) (ref memberRef, address string, external bool, err error) {
	switch addr, group := strings.TrimSpace(m.Address), strings.TrimSpace(m.Group); {
	case (addr == "") == (group == ""):
		return ref, "", false, mailcluster.Errorf(mailcluster.EINVALID, "A list member is either an address or a group.")
	case group != "":
		name := mailcluster.NormalizeMailbox(group)
		if err := mailcluster.ValidateMailbox(name); err != nil {
			return ref, "", false, mailcluster.Errorf(mailcluster.EINVALID, "Group name %q is not valid.", clipped(group))
		}
		b, _ := json.Marshal(mailcluster.ListMember{Group: name})
		return memberRef{key: schema.ListMemberGroup(domain, list, name), value: b}, name, false, nil
	default:
		mailbox, mdomain, err := splitLocal(addr, domain)
		if err != nil {
			return ref, "", false, err
		}
		if mdomain != domain {
			address, err := outsideAddress(mailbox, mdomain)
			if err != nil {
				return ref, "", false, err
			}
			b, _ := json.Marshal(mailcluster.ListMember{Address: address, External: true})
			return memberRef{key: schema.ListMemberExternal(domain, list, address), value: b, address: address}, address, true, nil
		}
		address := mailbox + "@" + mdomain
		b, _ := json.Marshal(mailcluster.ListMember{Address: address})
		return memberRef{key: schema.ListMemberAccount(domain, list, mailbox), value: b, address: address}, address, false, nil
	}
}

// listMemberAdd checks a member to add to a list of domain: an account or
// a group (not being deleted) of that domain, or an outside address.
func (s *Service) listMemberAdd(domain, list string, m mailcluster.ListMember) (memberRef, error) {
	ref, address, external, err := listMemberKey(domain, list, m)
	if err != nil || external {
		return ref, err
	}
	if strings.TrimSpace(m.Group) == "" {
		mailbox, _, _ := strings.Cut(address, "@")
		kv, found := s.store.Get(schema.Account(domain, mailbox))
		if !found {
			return ref, errNotAccount(address, domain)
		}
		ref.target = kv
		return ref, nil
	}
	g, kv, err := s.getGroup(domain, address)
	if err != nil || g.Deleting {
		return ref, mailcluster.Errorf(mailcluster.EINVALID, "Group %s of %s does not exist.", address, domain)
	}
	ref.target = kv
	return ref, nil
}

// listOwner checks a list owner (an address or local part of an account
// of domain) and adds the touch of its record to o. "" is no owner.
func (s *Service) listOwner(o *opSet, domain, owner string) (string, error) {
	if strings.TrimSpace(owner) == "" {
		return "", nil
	}
	mailbox, odomain, err := splitLocal(strings.TrimSpace(owner), domain)
	if err != nil {
		return "", err
	}
	kv, ok := s.store.Get(schema.Account(odomain, mailbox))
	if odomain != domain || !ok {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "The owner of a list of %s must be an account of %s; %s@%s is not.", domain, domain, mailbox, odomain)
	}
	o.touch(kv)
	return mailbox + "@" + domain, nil
}

// validateListFields normalizes and checks a list's policy, reply-to mode
// and description, and requires an owner for a moderated list.
func validateListFields(l *mailcluster.MailingList) error {
	p, err := mailcluster.ParseListPolicy(string(l.Policy))
	if err != nil {
		return err
	}
	r, err := mailcluster.ParseListReplyTo(string(l.ReplyTo))
	if err != nil {
		return err
	}
	l.Policy, l.ReplyTo = p, r
	if err := validateDescription(l.Description); err != nil {
		return err
	}
	if l.Policy == mailcluster.ListPostModerated && l.Owner == "" {
		return mailcluster.Errorf(mailcluster.EINVALID, "A moderated list needs an owner, who reviews the posts.")
	}
	return nil
}

// CreateList creates a mailing list with its first members.
// Errors: EINVALID, ENOTFOUND, ECONFLICT,
// ETOOLARGE (MaxListMembers), EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateList(ctx context.Context, in mailcluster.ListCreate) (*mailcluster.MailingList, error) {
	domain, name, err := authorizeName(ctx, in.Domain, in.Name)
	if err != nil {
		return nil, err
	}
	l := &mailcluster.MailingList{Domain: domain, Name: name, Description: in.Description, Policy: in.Policy, ReplyTo: in.ReplyTo,
		Owner: strings.TrimSpace(in.Owner)}
	if err := validateListFields(l); err != nil {
		return nil, err
	}
	m := listKind.of(domain, name)
	if err := m.checkMembersGiven(len(in.Members)); err != nil {
		return nil, err
	}
	o, err := s.newAddress(domain, name)
	if err != nil {
		return nil, err
	}
	if l.Owner, err = s.listOwner(o, domain, l.Owner); err != nil {
		return nil, err
	}
	checkAddressFreeOps(o, domain, name, m.record())
	l.CreatedAt, l.UpdatedAt = s.now(), s.now()
	if err := createSet(ctx, s, o, m, l, in.Members, func(member mailcluster.ListMember) (memberRef, error) {
		return s.listMemberAdd(domain, name, member)
	}); err != nil {
		return nil, err
	}
	return reread(l, s.getList, domain, name), nil
}

// FindList returns one list (with MemberCount). Errors: EINVALID,
// ENOTFOUND, EFORBIDDEN.
func (s *Service) FindList(ctx context.Context, domain, name string) (*mailcluster.MailingList, error) {
	return findRecord(ctx, s, domain, name, s.getList)
}

// FindLists returns a page of a domain's lists (see FindAliases).
func (s *Service) FindLists(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.MailingList, string, error) {
	return findPage(ctx, s, domain, cursor, limit, schema.ListPrefix, byName(s.getList))
}

// UpdateList changes a list and its membership in one transaction.
// Errors as CreateList.
func (s *Service) UpdateList(ctx context.Context, domain, name string, upd mailcluster.ListUpdate) (*mailcluster.MailingList, error) {
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
	l, kv, err := s.getList(domain, name)
	if err != nil {
		return nil, err
	}
	m := listKind.of(domain, name)
	if l.Deleting {
		return nil, m.errDeleting()
	}
	var o opSet
	setIf(&l.Description, upd.Description)
	setIf(&l.Policy, upd.Policy)
	setIf(&l.ReplyTo, upd.ReplyTo)
	if upd.Owner != nil {
		if l.Owner, err = s.listOwner(&o, domain, *upd.Owner); err != nil {
			return nil, err
		}
	}
	if err := validateListFields(l); err != nil {
		return nil, err
	}
	if err := memberChanges(s, &o, m, l.MemberCount, upd.AddMembers, upd.RemoveMembers,
		func(member mailcluster.ListMember) (memberRef, error) { return s.listMemberAdd(domain, name, member) },
		func(member mailcluster.ListMember) (string, bool, error) {
			ref, _, _, err := listMemberKey(domain, name, member)
			return ref.key, err == nil, err
		}); err != nil {
		return nil, err
	}
	l.UpdatedAt, l.MemberCount = s.now(), 0
	if err := s.saveSet(ctx, &o, m, l, kv.ModifyIndex, func() error { return errTooManyMemberChanges(changes) }); err != nil {
		return nil, err
	}
	return reread(l, s.getList, domain, name), nil
}

// DeleteList removes a list and its memberships: a list with few members
// in one transaction; a larger one is marked as being deleted (it
// receives no mail and takes no changes from then on), its members are
// removed in bounded transactions and then its record, as a domain's
// deletion does (an unfinished one resumes with ResumeDomainDeletions).
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteList(ctx context.Context, domain, name string) error {
	domain, name, err := authorizeName(ctx, domain, name)
	if err != nil {
		return err
	}
	if _, err := s.writableDomain(domain); err != nil {
		return err
	}
	l, kv, err := s.getList(domain, name)
	if err != nil {
		return err
	}
	return s.deleteSet(ctx, s.listDeletion(domain, name), kv, l.Deleting, func() any {
		l.Deleting, l.MemberCount = true, 0
		return l
	})
}

// listDeletion describes the deletion of a list: its members, then its
// record.
func (s *Service) listDeletion(domain, name string) setDeletion {
	return setDeletion{memberSet: listKind.of(domain, name),
		keys: func(limit int) []string {
			var out []string
			for _, kv := range s.store.List(schema.ListMemberPrefix(domain, name), "", limit) {
				out = append(out, kv.Key)
			}
			return out
		}}
}

// FindListMembers returns a page of a list's members (accounts and
// outside members as full addresses, groups by name), in key order;
// cursor as FindAliases (a member's address stands for its key).
func (s *Service) FindListMembers(ctx context.Context, domain, name, cursor string, limit int) ([]mailcluster.ListMember, string, error) {
	return findMembers(ctx, s, listKind, domain, name, cursor, limit, listMemberOf)
}

// listMemberOf returns the member a member key (below its list's prefix)
// names.
func listMemberOf(domain, suffix string) mailcluster.ListMember {
	if g, ok := strings.CutPrefix(suffix, groupMemberTag); ok {
		return mailcluster.ListMember{Group: g}
	}
	if a, ok := strings.CutPrefix(suffix, externalMemberTag); ok {
		return mailcluster.ListMember{Address: a, External: true}
	}
	return mailcluster.ListMember{Address: suffix + "@" + domain}
}

// AccountLists returns the lists of the account's domain that have the
// account as a direct member. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountLists(ctx context.Context, domain, mailbox string) ([]*mailcluster.MailingList, error) {
	return accountSets(ctx, s, listKind, domain, mailbox, s.getList)
}

// accountListChanges adds to o the lists an account create or update
// joins and leaves (names or addresses of lists of the account's domain);
// the account's record is written by the same transaction.
func (s *Service) accountListChanges(o *opSet, a *mailcluster.Account, add, remove []string) error {
	parse := func(list []string) ([]string, error) {
		var out []string
		for _, s := range list {
			name, domain, err := splitLocal(strings.TrimSpace(s), a.Domain)
			if err != nil {
				return nil, err
			}
			if domain != a.Domain {
				return nil, mailcluster.Errorf(mailcluster.EINVALID, "%s@%s is not a list of %s: an account joins the lists of its own domain.", name, domain, a.Domain)
			}
			out = append(out, name)
		}
		return out, nil
	}
	adds, removes, err := parseChanges(add, remove, parse)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(mailcluster.ListMember{Address: a.Address()})
	return s.joinSets(o, a, listKind, adds, removes, b)
}
