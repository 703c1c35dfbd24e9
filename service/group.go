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
	kv, ok := s.store.Get(schema.Group(domain, name))
	if !ok {
		return nil, kv, mailcluster.Errorf(mailcluster.ENOTFOUND, "Group %s of %s does not exist.", name, domain)
	}
	var g mailcluster.Group
	if err := json.Unmarshal(kv.Value, &g); err != nil {
		return nil, kv, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored group record is damaged.", Err: err}
	}
	g.MemberCount = s.store.Count(schema.GroupMemberPrefix(domain, name))
	return &g, kv, nil
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

func errGroupDeleting(g *mailcluster.Group) error {
	return mailcluster.Errorf(mailcluster.ECONFLICT, "Group %s of %s is being deleted.", g.Name, g.Domain)
}

// groupMemberAdd checks an account (mailbox or address) to add to a group
// of domain and returns its mailbox and record.
func (s *Service) groupMemberAdd(domain, member string) (string, mailcluster.KV, error) {
	mailbox, mdomain, err := splitLocal(strings.TrimSpace(member), domain)
	if err != nil {
		return "", mailcluster.KV{}, err
	}
	kv, ok := s.store.Get(schema.Account(mdomain, mailbox))
	if mdomain != domain || !ok {
		return "", kv, mailcluster.Errorf(mailcluster.EINVALID, "%s@%s is not an account of %s: a group holds accounts of its own domain.", mailbox, mdomain, domain)
	}
	return mailbox, kv, nil
}

// CreateGroup creates a group with its first members.
// Errors: EINVALID, ENOTFOUND, ECONFLICT, ETOOLARGE, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) CreateGroup(ctx context.Context, in mailcluster.GroupCreate) (*mailcluster.Group, error) {
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
	g := &mailcluster.Group{Domain: domain, Name: name, Description: in.Description, QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages}
	if err := validateGroupFields(g); err != nil {
		return nil, err
	}
	if len(in.Members) > mailcluster.MaxGroupMembers {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "A group has at most %d members; %d were given.", mailcluster.MaxGroupMembers, len(in.Members))
	}
	const fixed = 2 // the domain's check and the record
	tooMany := func() error {
		return mailcluster.Errorf(mailcluster.ETOOLARGE,
			"A group can be created with at most about %d members in one request (%d were given): create it with fewer and add the rest with updates.",
			(MaxWriteOps-fixed)/2, len(in.Members))
	}
	if fixed+len(in.Members) > MaxWriteOps {
		return nil, tooMany()
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	_, didx, err := s.getDomain(domain)
	if err != nil {
		return nil, err
	}
	key := schema.Group(domain, name)
	if _, ok := s.store.Get(key); ok {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Group %s of %s already exists.", name, domain)
	}
	var o opSet
	o.check(schema.Domain(domain), didx)
	for _, m := range in.Members {
		mailbox, kv, err := s.groupMemberAdd(domain, m)
		if err != nil {
			return nil, err
		}
		if mk := schema.GroupMember(domain, name, mailbox); !o.changed[mk] {
			o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: mk, Value: []byte("{}")})
			o.touch(kv)
		}
	}
	g.CreatedAt, g.UpdatedAt = s.now(), s.now()
	b, _ := json.Marshal(g)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: b, Index: 0})
	if len(o.ops) > MaxWriteOps {
		return nil, tooMany()
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Group %s of %s, its domain or one of its members was changed concurrently; try again.", name, domain)
	}
	s.log.Info("group created", "group", name, "domain", domain)
	if out, _, err := s.getGroup(domain, name); err == nil {
		return out, nil
	}
	return g, nil
}

// FindGroup returns one group (with MemberCount).
func (s *Service) FindGroup(ctx context.Context, domain, name string) (*mailcluster.Group, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	g, _, err := s.getGroup(domain, name)
	return g, err
}

// FindGroups returns a page of a domain's groups (see FindAliases).
func (s *Service) FindGroups(ctx context.Context, domain, cursor string, limit int) ([]*mailcluster.Group, string, error) {
	domain, limit, err := s.readDomainPage(ctx, domain, limit)
	if err != nil {
		return nil, "", err
	}
	kvs, next := s.page(schema.GroupPrefix(domain), mailcluster.NormalizeMailbox(cursor), limit)
	out := make([]*mailcluster.Group, 0, len(kvs))
	for _, kv := range kvs {
		g, _, err := s.getGroup(domain, strings.TrimPrefix(kv.Key, schema.GroupPrefix(domain)))
		if err != nil {
			return nil, "", err
		}
		out = append(out, g)
	}
	return out, next, nil
}

// UpdateGroup changes a group and its membership in one transaction.
func (s *Service) UpdateGroup(ctx context.Context, domain, name string, upd mailcluster.GroupUpdate) (*mailcluster.Group, error) {
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
	g, kv, err := s.getGroup(domain, name)
	if err != nil {
		return nil, err
	}
	if g.Deleting {
		return nil, errGroupDeleting(g)
	}
	setIf(&g.Description, upd.Description)
	setIf(&g.QuotaBytes, upd.QuotaBytes)
	setIf(&g.QuotaMessages, upd.QuotaMessages)
	if err := validateGroupFields(g); err != nil {
		return nil, err
	}
	var o opSet
	var removes []string
	removed := map[string]bool{}
	for _, m := range upd.RemoveMembers {
		mailbox, mdomain, err := splitLocal(strings.TrimSpace(m), domain)
		if err != nil {
			return nil, err
		}
		if mk := schema.GroupMember(domain, name, mailbox); mdomain == domain && !removed[mk] {
			removed[mk] = true
			removes = append(removes, mk)
		}
	}
	added := 0
	for _, m := range upd.AddMembers {
		mailbox, akv, err := s.groupMemberAdd(domain, m)
		if err != nil {
			return nil, err
		}
		mk := schema.GroupMember(domain, name, mailbox)
		if removed[mk] {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "%s@%s is both added and removed.", mailbox, domain)
		}
		if _, present := s.store.Get(mk); present || o.changed[mk] {
			continue
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: mk, Value: []byte("{}")})
		o.touch(akv)
		added++
	}
	for _, mk := range removes {
		if _, present := s.store.Get(mk); present {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: mk})
		}
	}
	if added > 0 && g.MemberCount+added > mailcluster.MaxGroupMembers {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "Group %s of %s would have more than %d members.", name, domain, mailcluster.MaxGroupMembers)
	}
	g.UpdatedAt, g.MemberCount = s.now(), 0
	b, _ := json.Marshal(g)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex})
	if len(o.ops) > MaxWriteOps {
		return nil, errTooManyMemberChanges(changes)
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Group %s of %s or one of its members was changed concurrently; try again.", name, domain)
	}
	s.log.Info("group updated", "group", name, "domain", domain)
	if out, _, err := s.getGroup(domain, name); err == nil {
		return out, nil
	}
	return g, nil
}

// DeleteGroup removes a group, its memberships and its list memberships:
// a small group in one transaction, a larger one in bounded transactions
// after a mark (see DeleteList).
func (s *Service) DeleteGroup(ctx context.Context, domain, name string) error {
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
	g, kv, err := s.getGroup(domain, name)
	if err != nil {
		return err
	}
	job := s.groupDeletion(domain, name)
	if g.Deleting {
		return s.awaitSetDeletion(ctx, job)
	}
	if keys := job.keys(MaxDeleteOps); len(keys) < MaxDeleteOps {
		ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}
		for _, k := range keys {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
		}
		if err := s.txn(ctx, ops); err != nil {
			return conflictAs(err, "Group %s of %s was changed concurrently; try again.", name, domain)
		}
		s.log.Info("group deleted", "group", name, "domain", domain)
		return nil
	}
	g.Deleting, g.MemberCount = true, 0
	b, _ := json.Marshal(g)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Group %s of %s was changed concurrently; try again.", name, domain)
	}
	s.log.Info("group deletion started", "group", name, "domain", domain)
	return s.awaitSetDeletion(ctx, job)
}

// groupDeletion describes the deletion of a group: its memberships in the
// lists of its domain and its members, then its record.
func (s *Service) groupDeletion(domain, name string) setDeletion {
	return setDeletion{kind: "group", address: name + " of " + domain, record: schema.Group(domain, name),
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
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, "", err
	}
	if limit, err = pageLimit(limit); err != nil {
		return nil, "", err
	}
	if _, _, err := s.getGroup(domain, name); err != nil {
		return nil, "", err
	}
	if mailbox, _, ok := strings.Cut(cursor, "@"); ok {
		cursor = mailbox
	}
	prefix := schema.GroupMemberPrefix(domain, name)
	kvs, next := s.page(prefix, mailcluster.NormalizeMailbox(cursor), limit)
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, strings.TrimPrefix(kv.Key, prefix)+"@"+domain)
	}
	return out, next, nil
}

// AccountGroups returns the groups an account belongs to.
func (s *Service) AccountGroups(ctx context.Context, domain, mailbox string) ([]*mailcluster.Group, error) {
	domain, mailbox, err := s.readName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.getAccount(domain, mailbox); err != nil {
		return nil, err
	}
	return append([]*mailcluster.Group{}, s.groupsOf(domain, mailbox)...), nil
}

// groupsOf returns the groups of domain that mailbox belongs to, those
// being deleted included.
func (s *Service) groupsOf(domain, mailbox string) []*mailcluster.Group {
	var out []*mailcluster.Group
	for _, kv := range s.store.List(schema.GroupPrefix(domain), "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.GroupPrefix(domain))
		if _, ok := s.store.Get(schema.GroupMember(domain, name, mailbox)); !ok {
			continue
		}
		if g, _, err := s.getGroup(domain, name); err == nil {
			out = append(out, g)
		}
	}
	return out
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
	for _, name := range adds {
		if leave[name] {
			return mailcluster.Errorf(mailcluster.EINVALID, "Group %s is both joined and left.", name)
		}
		key := schema.GroupMember(a.Domain, name, a.Mailbox)
		if o.changed[key] {
			continue
		}
		g, kv, err := s.getGroup(a.Domain, name)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return mailcluster.Errorf(mailcluster.EINVALID, "Group %s of %s does not exist.", name, a.Domain)
		}
		if err != nil {
			return err
		}
		if g.Deleting {
			return errGroupDeleting(g)
		}
		if _, present := s.store.Get(key); present {
			continue
		}
		if g.MemberCount >= mailcluster.MaxGroupMembers {
			return mailcluster.Errorf(mailcluster.ETOOLARGE, "Group %s of %s has its maximum of %d members.", name, a.Domain, mailcluster.MaxGroupMembers)
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: []byte("{}")})
		o.touch(kv)
	}
	for _, name := range removes {
		key := schema.GroupMember(a.Domain, name, a.Mailbox)
		if _, present := s.store.Get(key); present && !o.changed[key] {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
		}
	}
	return nil
}
