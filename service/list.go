package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// A mailing list is its record (schema.List) and one key per member
// (schema.ListMemberAccount, schema.ListMemberGroup) holding a
// mailcluster.ListMember as JSON. Every transaction that adds members
// rewrites the list record (so that two of them cannot pass the member
// limit together, and none adds to a list being deleted) and touches each
// member's record (see alias.go).

const groupMemberTag = "group:"

func (s *Service) getList(domain, name string) (*mailcluster.MailingList, mailcluster.KV, error) {
	kv, ok := s.store.Get(schema.List(domain, name))
	if !ok {
		return nil, kv, mailcluster.Errorf(mailcluster.ENOTFOUND, "Mailing list %s@%s does not exist.", name, domain)
	}
	var l mailcluster.MailingList
	if err := json.Unmarshal(kv.Value, &l); err != nil {
		return nil, kv, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored mailing list record is damaged.", Err: err}
	}
	l.MemberCount = s.store.Count(schema.ListMemberPrefix(domain, name))
	return &l, kv, nil
}

// validateDescription accepts one line of at most 1024 bytes.
func validateDescription(d string) error {
	if len(d) > 1024 || strings.ContainsAny(d, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Description must be one line of at most 1024 bytes.")
	}
	return nil
}

func errOutsideMember(address, domain string) error {
	return mailcluster.Errorf(mailcluster.EINVALID,
		"%s is not an account of %s: a list's members are accounts and groups of its domain; outside members need the outbound queue, which is not available yet.",
		address, domain)
}

func errListDeleting(l *mailcluster.MailingList) error {
	return mailcluster.Errorf(mailcluster.ECONFLICT, "Mailing list %s is being deleted.", l.Address())
}

// memberRef is a list member as stored: its key and value, and for an
// added member the record it refers to (an account or a group).
type memberRef struct {
	key    string
	value  []byte
	target mailcluster.KV
}

// listMemberKey reads a member given to a list of domain: exactly one of
// an address (or local part) and a group name. ok is false for an address
// of another domain (which no list of domain can have).
func listMemberKey(domain, list string, m mailcluster.ListMember) (ref memberRef, address string, ok bool, err error) {
	switch addr, group := strings.TrimSpace(m.Address), strings.TrimSpace(m.Group); {
	case (addr == "") == (group == ""):
		return ref, "", false, mailcluster.Errorf(mailcluster.EINVALID, "A list member is either an address or a group.")
	case group != "":
		name := mailcluster.NormalizeMailbox(group)
		if err := mailcluster.ValidateMailbox(name); err != nil {
			return ref, "", false, mailcluster.Errorf(mailcluster.EINVALID, "Group name %q is not valid.", group)
		}
		b, _ := json.Marshal(mailcluster.ListMember{Group: name})
		return memberRef{key: schema.ListMemberGroup(domain, list, name), value: b}, name, true, nil
	default:
		mailbox, mdomain, err := splitLocal(addr, domain)
		if err != nil {
			return ref, "", false, err
		}
		address := mailbox + "@" + mdomain
		if mdomain != domain {
			return ref, address, false, nil
		}
		b, _ := json.Marshal(mailcluster.ListMember{Address: address})
		return memberRef{key: schema.ListMemberAccount(domain, list, mailbox), value: b}, address, true, nil
	}
}

// listMemberAdd checks a member to add to a list of domain: an account or
// a group (not being deleted) of that domain.
func (s *Service) listMemberAdd(domain, list string, m mailcluster.ListMember) (memberRef, error) {
	ref, address, ok, err := listMemberKey(domain, list, m)
	if err != nil {
		return ref, err
	}
	if !ok {
		return ref, errOutsideMember(address, domain)
	}
	if strings.TrimSpace(m.Group) == "" {
		mailbox, _, _ := strings.Cut(address, "@")
		kv, found := s.store.Get(schema.Account(domain, mailbox))
		if !found {
			return ref, errOutsideMember(address, domain)
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
// Errors: EINVALID (also outside members), ENOTFOUND, ECONFLICT,
// ETOOLARGE (MaxListMembers), EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateList(ctx context.Context, in mailcluster.ListCreate) (*mailcluster.MailingList, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	domain, name, err := normalizeAccountName(in.Domain, in.Name)
	if err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, err
	}
	l := &mailcluster.MailingList{Domain: domain, Name: name, Description: in.Description, Policy: in.Policy, ReplyTo: in.ReplyTo,
		Owner: strings.TrimSpace(in.Owner)}
	if err := validateListFields(l); err != nil {
		return nil, err
	}
	if len(in.Members) > mailcluster.MaxListMembers {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "A list has at most %d members; %d were given.", mailcluster.MaxListMembers, len(in.Members))
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	_, didx, err := s.getDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.checkAddressFree(domain, name); err != nil {
		return nil, err
	}
	var o opSet
	o.check(schema.Domain(domain), didx)
	if l.Owner, err = s.listOwner(&o, domain, l.Owner); err != nil {
		return nil, err
	}
	key := schema.List(domain, name)
	checkAddressFreeOps(&o, domain, name, key)
	fixed := len(o.ops) + 1
	tooMany := func() error {
		return mailcluster.Errorf(mailcluster.ETOOLARGE,
			"A list can be created with at most about %d members in one request (%d were given): create it with fewer and add the rest with updates.",
			(MaxWriteOps-fixed)/2, len(in.Members))
	}
	if fixed+len(in.Members) > MaxWriteOps {
		return nil, tooMany()
	}
	for _, m := range in.Members {
		ref, err := s.listMemberAdd(domain, name, m)
		if err != nil {
			return nil, err
		}
		if !o.changed[ref.key] {
			o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: ref.key, Value: ref.value})
			o.touch(ref.target)
		}
	}
	l.CreatedAt, l.UpdatedAt = s.now(), s.now()
	b, _ := json.Marshal(l)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: b, Index: 0})
	if len(o.ops) > MaxWriteOps {
		return nil, tooMany()
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Mailing list %s, its domain or one of its members was changed concurrently; try again.", l.Address())
	}
	s.log.Info("mailing list created", "list", l.Address())
	if out, _, err := s.getList(domain, name); err == nil {
		return out, nil
	}
	return l, nil
}

// FindList returns one list (with MemberCount). Errors: EINVALID,
// ENOTFOUND, EFORBIDDEN.
func (s *Service) FindList(ctx context.Context, domain, name string) (*mailcluster.MailingList, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	l, _, err := s.getList(domain, name)
	return l, err
}

// FindLists returns a page of a domain's lists (see FindAliases).
func (s *Service) FindLists(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.MailingList, string, error) {
	domain, limit, err := s.readDomainPage(ctx, domain, limit)
	if err != nil {
		return nil, "", err
	}
	kvs, next := s.page(schema.ListPrefix(domain), mailcluster.NormalizeMailbox(cursor), limit)
	out := make([]*mailcluster.MailingList, 0, len(kvs))
	for _, kv := range kvs {
		l, _, err := s.getList(domain, strings.TrimPrefix(kv.Key, schema.ListPrefix(domain)))
		if err != nil {
			return nil, "", err
		}
		out = append(out, l)
	}
	return out, next, nil
}

// UpdateList changes a list and its membership in one transaction.
// Errors as CreateList.
func (s *Service) UpdateList(ctx context.Context, domain, name string, upd mailcluster.ListUpdate) (*mailcluster.MailingList, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	domain, name, err := normalizeAccountName(domain, name)
	if err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, err
	}
	changes := len(upd.AddMembers) + len(upd.RemoveMembers)
	if changes > MaxWriteOps {
		return nil, errTooManyMemberChanges(changes)
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if _, _, err := s.getDomain(domain); err != nil {
		return nil, err
	}
	l, kv, err := s.getList(domain, name)
	if err != nil {
		return nil, err
	}
	if l.Deleting {
		return nil, errListDeleting(l)
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
	added, err := s.memberChanges(&o, domain, name, upd.AddMembers, upd.RemoveMembers)
	if err != nil {
		return nil, err
	}
	if added > 0 && l.MemberCount+added > mailcluster.MaxListMembers {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "List %s would have more than %d members.", l.Address(), mailcluster.MaxListMembers)
	}
	l.UpdatedAt, l.MemberCount = s.now(), 0
	b, _ := json.Marshal(l)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex})
	if len(o.ops) > MaxWriteOps {
		return nil, errTooManyMemberChanges(changes)
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Mailing list %s or one of its members was changed concurrently; try again.", l.Address())
	}
	s.log.Info("mailing list updated", "list", l.Address())
	if out, _, err := s.getList(domain, name); err == nil {
		return out, nil
	}
	return l, nil
}

func errTooManyMemberChanges(n int) error {
	return mailcluster.Errorf(mailcluster.ETOOLARGE,
		"One request may add or remove at most about %d members (this one changes %d): split it into several.", MaxWriteOps/2-2, n)
}

// memberChanges adds to o the members a list update adds (with the
// touches of their records) and removes, and returns how many it adds.
// Adding a present member or removing an absent one changes nothing.
func (s *Service) memberChanges(o *opSet, domain, list string, add, remove []mailcluster.ListMember) (int, error) {
	removed := map[string]bool{}
	var removes []string
	for _, m := range remove {
		ref, _, ok, err := listMemberKey(domain, list, m)
		if err != nil {
			return 0, err
		}
		if ok && !removed[ref.key] {
			removed[ref.key] = true
			removes = append(removes, ref.key)
		}
	}
	added := 0
	for _, m := range add {
		ref, err := s.listMemberAdd(domain, list, m)
		if err != nil {
			return 0, err
		}
		if removed[ref.key] {
			return 0, mailcluster.Errorf(mailcluster.EINVALID, "A member is both added and removed.")
		}
		if _, present := s.store.Get(ref.key); present || o.changed[ref.key] {
			continue
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: ref.key, Value: ref.value})
		o.touch(ref.target)
		added++
	}
	for _, key := range removes {
		if _, present := s.store.Get(key); present {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
		}
	}
	return added, nil
}

// DeleteList removes a list and its memberships: a list with few members
// in one transaction; a larger one is marked as being deleted (it
// receives no mail and takes no changes from then on), its members are
// removed in bounded transactions and then its record, as a domain's
// deletion does (an unfinished one resumes with ResumeDomainDeletions).
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteList(ctx context.Context, domain, name string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	domain, name, err := normalizeAccountName(domain, name)
	if err != nil {
		return err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if _, _, err := s.getDomain(domain); err != nil {
		return err
	}
	l, kv, err := s.getList(domain, name)
	if err != nil {
		return err
	}
	job := s.listDeletion(domain, name)
	if l.Deleting {
		return s.awaitSetDeletion(ctx, job)
	}
	if members := s.store.List(schema.ListMemberPrefix(domain, name), "", MaxDeleteOps); len(members) < MaxDeleteOps {
		ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}
		for _, m := range members {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: m.Key})
		}
		if err := s.txn(ctx, ops); err != nil {
			return conflictAs(err, "Mailing list %s was changed concurrently; try again.", l.Address())
		}
		s.log.Info("mailing list deleted", "list", l.Address(), "members", len(members))
		return nil
	}
	l.Deleting, l.MemberCount = true, 0
	b, _ := json.Marshal(l)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Mailing list %s was changed concurrently; try again.", l.Address())
	}
	s.log.Info("mailing list deletion started", "list", l.Address())
	return s.awaitSetDeletion(ctx, job)
}

// listDeletion describes the deletion of a list: its members, then its
// record.
func (s *Service) listDeletion(domain, name string) setDeletion {
	return setDeletion{kind: "mailing list", address: name + "@" + domain, record: schema.List(domain, name),
		keys: func(limit int) []string {
			var out []string
			for _, kv := range s.store.List(schema.ListMemberPrefix(domain, name), "", limit) {
				out = append(out, kv.Key)
			}
			return out
		}}
}

// FindListMembers returns a page of a list's members (accounts as full
// addresses, groups by name), in key order; cursor as FindAliases.
func (s *Service) FindListMembers(ctx context.Context, domain, name, cursor string, limit int) ([]mailcluster.ListMember, string, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, "", err
	}
	if limit, err = pageLimit(limit); err != nil {
		return nil, "", err
	}
	if _, _, err := s.getList(domain, name); err != nil {
		return nil, "", err
	}
	cursor = strings.ToLower(strings.TrimSpace(cursor))
	if mailbox, _, ok := strings.Cut(cursor, "@"); ok {
		cursor = mailbox // a member's address stands for its key
	}
	prefix := schema.ListMemberPrefix(domain, name)
	kvs, next := s.page(prefix, cursor, limit)
	out := make([]mailcluster.ListMember, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, listMemberOf(domain, strings.TrimPrefix(kv.Key, prefix)))
	}
	return out, next, nil
}

// listMemberOf returns the member a member key (below its list's prefix)
// names.
func listMemberOf(domain, suffix string) mailcluster.ListMember {
	if g, ok := strings.CutPrefix(suffix, groupMemberTag); ok {
		return mailcluster.ListMember{Group: g}
	}
	return mailcluster.ListMember{Address: suffix + "@" + domain}
}

// AccountLists returns the lists of the account's domain that have the
// account as a direct member. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) AccountLists(ctx context.Context, domain, mailbox string) ([]*mailcluster.MailingList, error) {
	domain, mailbox, err := s.readName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.getAccount(domain, mailbox); err != nil {
		return nil, err
	}
	out := []*mailcluster.MailingList{}
	for _, kv := range s.store.List(schema.ListPrefix(domain), "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.ListPrefix(domain))
		if _, ok := s.store.Get(schema.ListMemberAccount(domain, name, mailbox)); !ok {
			continue
		}
		if l, _, err := s.getList(domain, name); err == nil {
			out = append(out, l)
		}
	}
	return out, nil
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
	adds, err := parse(add)
	if err != nil {
		return err
	}
	removes, err := parse(remove)
	if err != nil {
		return err
	}
	leave := map[string]bool{}
	for _, name := range removes {
		leave[name] = true
	}
	b, _ := json.Marshal(mailcluster.ListMember{Address: a.Address()})
	for _, name := range adds {
		if leave[name] {
			return mailcluster.Errorf(mailcluster.EINVALID, "List %s@%s is both joined and left.", name, a.Domain)
		}
		key := schema.ListMemberAccount(a.Domain, name, a.Mailbox)
		if o.changed[key] {
			continue
		}
		l, kv, err := s.getList(a.Domain, name)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return mailcluster.Errorf(mailcluster.EINVALID, "Mailing list %s@%s does not exist.", name, a.Domain)
		}
		if err != nil {
			return err
		}
		if l.Deleting {
			return errListDeleting(l)
		}
		if _, present := s.store.Get(key); present {
			continue
		}
		if l.MemberCount >= mailcluster.MaxListMembers {
			return mailcluster.Errorf(mailcluster.ETOOLARGE, "List %s has its maximum of %d members.", l.Address(), mailcluster.MaxListMembers)
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: b})
		o.touch(kv)
	}
	for _, name := range removes {
		key := schema.ListMemberAccount(a.Domain, name, a.Mailbox)
		if _, present := s.store.Get(key); present && !o.changed[key] {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
		}
	}
	return nil
}
