package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// Mailing lists and groups are both a record with a set of members: one
// key per member below a prefix of the set's own, a member count computed
// on read, and a Deleting mark while a large set is deleted in bounded
// transactions. The code here serves both; list.go and group.go keep what
// differs: their fields, what a member is and what a deletion removes.

// setKind is the kind of a member set: mailing lists or groups.
type setKind int

const (
	listKind setKind = iota
	groupKind
)

// of returns the set of this kind named name in domain.
func (k setKind) of(domain, name string) memberSet { return memberSet{k, domain, name} }

// noun is "mailing list" or "group".
func (k setKind) noun() string {
	if k == listKind {
		return "mailing list"
	}
	return "group"
}

// short is "list" or "group".
func (k setKind) short() string {
	if k == listKind {
		return "list"
	}
	return "group"
}

// max is the most members a set of this kind has.
func (k setKind) max() int {
	if k == listKind {
		return mailcluster.MaxListMembers
	}
	return mailcluster.MaxGroupMembers
}

// prefix is the prefix of the records of this kind in domain.
func (k setKind) prefix(domain string) string {
	if k == listKind {
		return schema.ListPrefix(domain)
	}
	return schema.GroupPrefix(domain)
}

// memberSet is one mailing list or group.
type memberSet struct {
	setKind
	domain, name string
}

// title names the set in messages: "sales@example.com" (a list) or
// "staff of example.com" (a group, which has no address).
func (m memberSet) title() string {
	if m.setKind == listKind {
		return m.name + "@" + m.domain
	}
	return m.name + " of " + m.domain
}

// what is "Mailing list sales@example.com" or "Group staff of example.com".
func (m memberSet) what() string { return capitalize(m.noun()) + " " + m.title() }

// named is "List sales@example.com" or "Group staff of example.com".
func (m memberSet) named() string { return capitalize(m.short()) + " " + m.title() }

// logArgs are the fields that name the set in logs.
func (m memberSet) logArgs() []any {
	if m.setKind == listKind {
		return []any{"list", m.title()}
	}
	return []any{"group", m.name, "domain", m.domain}
}

// record is the key of the set's record.
func (m memberSet) record() string {
	if m.setKind == listKind {
		return schema.List(m.domain, m.name)
	}
	return schema.Group(m.domain, m.name)
}

// members is the prefix of the set's member keys.
func (m memberSet) members() string {
	if m.setKind == listKind {
		return schema.ListMemberPrefix(m.domain, m.name)
	}
	return schema.GroupMemberPrefix(m.domain, m.name)
}

// accountKey is the key of account mailbox (of the set's domain) as a
// member of the set.
func (m memberSet) accountKey(mailbox string) string {
	if m.setKind == listKind {
		return schema.ListMemberAccount(m.domain, m.name, mailbox)
	}
	return schema.GroupMember(m.domain, m.name, mailbox)
}

func (m memberSet) errDeleting() error {
	return mailcluster.Errorf(mailcluster.ECONFLICT, "%s is being deleted.", m.what())
}

// errAddedAndRemoved refuses an update that adds and removes member r.
func (m memberSet) errAddedAndRemoved(r memberRef) error {
	if m.setKind == listKind {
		return mailcluster.Errorf(mailcluster.EINVALID, "A member is both added and removed.")
	}
	return mailcluster.Errorf(mailcluster.EINVALID, "%s is both added and removed.", r.address)
}

// errJoinedAndLeft refuses an account change that joins and leaves m.
func (m memberSet) errJoinedAndLeft() error {
	if m.setKind == listKind {
		return mailcluster.Errorf(mailcluster.EINVALID, "List %s is both joined and left.", m.title())
	}
	return mailcluster.Errorf(mailcluster.EINVALID, "Group %s is both joined and left.", m.name)
}

// capitalize returns s with its first letter in upper case.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// setState is what the shared code reads of a set's record.
type setState struct {
	deleting bool
	count    int // its members
}

// setState reads the record of m. Errors: ENOTFOUND, EINTERNAL.
func (s *Service) setState(m memberSet) (setState, mailcluster.KV, error) {
	if m.setKind == listKind {
		l, kv, err := s.getList(m.domain, m.name)
		if err != nil {
			return setState{}, kv, err
		}
		return setState{deleting: l.Deleting, count: l.MemberCount}, kv, nil
	}
	g, kv, err := s.getGroup(m.domain, m.name)
	if err != nil {
		return setState{}, kv, err
	}
	return setState{deleting: g.Deleting, count: g.MemberCount}, kv, nil
}

// deletion describes the deletion of m (see setDeletion).
func (s *Service) deletion(m memberSet) setDeletion {
	if m.setKind == listKind {
		return s.listDeletion(m.domain, m.name)
	}
	return s.groupDeletion(m.domain, m.name)
}

// getSet reads and decodes the record of m (T is its type) and counts
// its members. Errors: ENOTFOUND, EINTERNAL.
func getSet[T any](s *Service, m memberSet, count func(*T) *int) (*T, mailcluster.KV, error) {
	v, kv, err := getRecord[T](s, m.record(), m.noun(), m.what())
	if err != nil {
		return nil, kv, err
	}
	*count(v) = s.store.Count(m.members())
	return v, kv, nil
}

// memberRef is a member as stored: its key and value, and for an added
// member the record it refers to (an account or a group; none for an
// outside member of a list) and, for an address, the address.
type memberRef struct {
	key     string
	value   []byte
	target  mailcluster.KV
	address string
}

// touch adds to o the touch of the record r refers to, if any.
func (r memberRef) touch(o *opSet) {
	if r.target.Key != "" {
		o.touch(r.target)
	}
}

// checkMembersGiven refuses a new set with more members than it may have.
func (m memberSet) checkMembersGiven(n int) error {
	if n > m.max() {
		return mailcluster.Errorf(mailcluster.ETOOLARGE, "A %s has at most %d members; %d were given.", m.short(), m.max(), n)
	}
	return nil
}

// checkCreateSize refuses a new set with n members when one transaction
// cannot hold them with fixed other operations.
func (m memberSet) checkCreateSize(fixed, n int) error {
	if fixed+n > MaxWriteOps {
		return m.errCreateTooLarge(fixed, n)
	}
	return nil
}

func (m memberSet) errCreateTooLarge(fixed, n int) error {
	return mailcluster.Errorf(mailcluster.ETOOLARGE,
		"A %s can be created with at most about %d members in one request (%d were given): create it with fewer and add the rest with updates.",
		m.short(), (MaxWriteOps-fixed)/2, n)
}

// checkMemberChanges refuses an update of more members than one
// transaction holds.
func checkMemberChanges(n int) error {
	if n > MaxWriteOps {
		return errTooManyMemberChanges(n)
	}
	return nil
}

func errTooManyMemberChanges(n int) error {
	return mailcluster.Errorf(mailcluster.ETOOLARGE,
		"One request may add or remove at most about %d members (this one changes %d): split it into several.", MaxWriteOps/2-2, n)
}

// createSet writes a new set m with its record rec and its first members
// (each checked by ref), after the operations o holds (checks and
// touches), in one transaction.
func createSet[M any](ctx context.Context, s *Service, o *opSet, m memberSet, rec any, members []M, ref func(M) (memberRef, error)) error {
	fixed := len(o.ops) + 1
	if err := m.checkCreateSize(fixed, len(members)); err != nil {
		return err
	}
	for _, member := range members {
		r, err := ref(member)
		if err != nil {
			return err
		}
		if !o.changed[r.key] {
			o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: r.key, Value: r.value})
			r.touch(o)
		}
	}
	return s.saveSet(ctx, o, m, rec, 0, func() error { return m.errCreateTooLarge(fixed, len(members)) })
}

// memberChanges adds to o the members an update of m adds (each checked
// by addRef, with the touch of its record) and removes (each keyed by
// removeKey; ok false: a member the set cannot have), and refuses more
// than m's maximum with the count members it has. Adding a present member
// or removing an absent one changes nothing.
func memberChanges[M any](s *Service, o *opSet, m memberSet, count int, add, remove []M,
	addRef func(M) (memberRef, error), removeKey func(M) (key string, ok bool, err error)) error {
	removed := map[string]bool{}
	var removes []string
	for _, member := range remove {
		key, ok, err := removeKey(member)
		if err != nil {
			return err
		}
		if ok && !removed[key] {
			removed[key] = true
			removes = append(removes, key)
		}
	}
	added := 0
	for _, member := range add {
		r, err := addRef(member)
		if err != nil {
			return err
		}
		if removed[r.key] {
			return m.errAddedAndRemoved(r)
		}
		if s.has(r.key) || o.changed[r.key] {
			continue
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: r.key, Value: r.value})
		r.touch(o)
		added++
	}
	for _, key := range removes {
		if s.has(key) {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
		}
	}
	if added > 0 && count+added > m.max() {
		return mailcluster.Errorf(mailcluster.ETOOLARGE, "%s would have more than %d members.", m.named(), m.max())
	}
	return nil
}

// saveSet writes rec, the record of m, last in o at index (0: a new
// record) and commits o. tooMany is the refusal of more operations than
// MaxWriteOps.
func (s *Service) saveSet(ctx context.Context, o *opSet, m memberSet, rec any, index uint64, tooMany func() error) error {
	b, _ := json.Marshal(rec)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: m.record(), Value: b, Index: index})
	if len(o.ops) > MaxWriteOps {
		return tooMany()
	}
	verb, others := "updated", " or one of its members"
	if index == 0 {
		verb, others = "created", ", its domain or one of its members"
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return conflictAs(err, "%s%s was changed concurrently; try again.", m.what(), others)
	}
	s.log.Info(m.noun()+" "+verb, m.logArgs()...)
	return nil
}

// reread returns the record of name@domain as stored after a write (with
// its member count), or rec when it cannot be read.
func reread[T any](rec *T, get func(domain, name string) (*T, mailcluster.KV, error), domain, name string) *T {
	if out, _, err := get(domain, name); err == nil {
		return out
	}
	return rec
}

// deleteSet deletes the set of deletion j, whose record is kv: one with
// fewer keys to remove than a transaction of a deletion holds at once;
// a larger one is marked as being deleted (marked returns its record with
// the mark) and then deleted by j in bounded transactions, as is one
// marked already (deleting).
func (s *Service) deleteSet(ctx context.Context, j setDeletion, kv mailcluster.KV, deleting bool, marked func() any) error {
	if deleting {
		return s.awaitSetDeletion(ctx, j)
	}
	if keys := j.keys(MaxDeleteOps); len(keys) < MaxDeleteOps {
		ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}
		for _, k := range keys {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
		}
		if err := s.txn(ctx, ops); err != nil {
			return conflictAs(err, "%s was changed concurrently; try again.", j.what())
		}
		s.log.Info(j.noun()+" deleted", append(j.logArgs(), "keys", len(keys))...)
		return nil
	}
	b, _ := json.Marshal(marked())
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "%s was changed concurrently; try again.", j.what())
	}
	s.log.Info(j.noun()+" deletion started", j.logArgs()...)
	return s.awaitSetDeletion(ctx, j)
}

// findMembers returns a page of the members of the set of kind k named
// name@domain, each made by member from the set's domain and its key below
// the set's prefix,
// in key order, starting after cursor (a key, or a member's address,
// whose local part stands for its key). Errors: EINVALID, ENOTFOUND,
// EFORBIDDEN.
func findMembers[M any](ctx context.Context, s *Service, k setKind, domain, name, cursor string, limit int, member func(domain, suffix string) M) ([]M, string, error) {
	domain, name, err := s.readName(ctx, domain, name)
	if err != nil {
		return nil, "", err
	}
	if limit, err = pageLimit(limit); err != nil {
		return nil, "", err
	}
	m := k.of(domain, name)
	if _, _, err := s.setState(m); err != nil {
		return nil, "", err
	}
	cursor = memberCursor(k, domain, cursor)
	prefix := m.members()
	kvs, next := s.page(prefix, cursor, limit)
	out := make([]M, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, member(domain, strings.TrimPrefix(kv.Key, prefix)))
	}
	return out, next, nil
}

// memberCursor returns the key suffix a page cursor of the members of a
// set of kind k in domain stands for: a key suffix as a page returned it,
// or a member's address (an account's stands for its local part, an
// outside member's of a list for its "ext:" key).
func memberCursor(k setKind, domain, cursor string) string {
	cursor = mailcluster.NormalizeMailbox(cursor)
	if k == listKind && strings.HasPrefix(cursor, externalMemberTag) {
		return cursor
	}
	mailbox, mdomain, ok := strings.Cut(cursor, "@")
	if !ok {
		return cursor
	}
	if k == listKind && mdomain != domain {
		return externalMemberTag + cursor
	}
	return mailcluster.NormalizeMailbox(mailbox)
}

// accountSets returns the sets of kind k (each read by get) that have
// account mailbox@domain as a direct member, those being deleted included.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func accountSets[T any](ctx context.Context, s *Service, k setKind, domain, mailbox string,
	get func(domain, name string) (*T, mailcluster.KV, error)) ([]*T, error) {
	domain, mailbox, err := s.readAccountName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	return setsOf(s, k, domain, mailbox, get), nil
}

// setsOf returns the sets of kind k (each read by get) that have account
// mailbox@domain (names already checked) as a direct member.
func setsOf[T any](s *Service, k setKind, domain, mailbox string, get func(domain, name string) (*T, mailcluster.KV, error)) []*T {
	out := []*T{}
	for _, name := range s.setsWith(k, domain, mailbox) {
		if v, _, err := get(domain, name); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// setsWith returns the names of the sets of kind k in domain that have
// account mailbox as a direct member, those being deleted included.
func (s *Service) setsWith(k setKind, domain, mailbox string) []string {
	var out []string
	for _, kv := range s.store.List(k.prefix(domain), "", 0) {
		name := strings.TrimPrefix(kv.Key, k.prefix(domain))
		if s.has(k.of(domain, name).accountKey(mailbox)) {
			out = append(out, name)
		}
	}
	return out
}

// joinSets adds to o the sets of kind k (by name, in the account's
// domain) that account a joins (adds) and leaves (removes); value is its
// member entry. The account's record is written by the same transaction.
func (s *Service) joinSets(o *opSet, a *mailcluster.Account, k setKind, adds, removes []string, value []byte) error {
	leave := map[string]bool{}
	for _, name := range removes {
		leave[name] = true
	}
	for _, name := range adds {
		m := k.of(a.Domain, name)
		if leave[name] {
			return m.errJoinedAndLeft()
		}
		key := m.accountKey(a.Mailbox)
		if o.changed[key] {
			continue
		}
		st, kv, err := s.setState(m)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return mailcluster.Errorf(mailcluster.EINVALID, "%s does not exist.", m.what())
		}
		if err != nil {
			return err
		}
		if st.deleting {
			return m.errDeleting()
		}
		if s.has(key) {
			continue
		}
		if st.count >= m.max() {
			return mailcluster.Errorf(mailcluster.ETOOLARGE, "%s has its maximum of %d members.", m.named(), m.max())
		}
		o.add(mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: value})
		o.touch(kv)
	}
	for _, name := range removes {
		if key := k.of(a.Domain, name).accountKey(a.Mailbox); s.has(key) && !o.changed[key] {
			o.add(mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
		}
	}
	return nil
}
