package service

import (
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// ResolveRecipient resolves an address served here for delivery (see
// mailcluster.Recipient): an account, an alias, a list (whose posting
// policy is checked against sender, the envelope sender, "" for the null
// sender), postmaster@ or abuse@ of any domain, and the bare "postmaster"
// (RFC 5321 4.5.1). Errors: EINVALID, ENOTFOUND (no such address, or a
// domain being deleted), EFORBIDDEN (the list refuses the sender).
//
// An account, or an alias's target, is returned even when disabled (the
// caller decides what to answer); a list's disabled members are left out,
// and its outside members in domains not served here are in External.
// Quotas of 0 are filled with the defaults of the account's groups. The
// accounts carry no password hash.
func (l *Local) ResolveRecipient(address, sender string) (*mailcluster.Recipient, error) {
	return l.s.resolveRecipient(address, sender)
}

func (s *Service) resolveRecipient(address, sender string) (*mailcluster.Recipient, error) {
	address = strings.TrimSpace(address)
	if !strings.Contains(address, "@") {
		if !strings.EqualFold(address, mailcluster.Postmaster) {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "%q is not an address of the form mailbox@domain.", address)
		}
		a, err := s.firstGlobalAdmin()
		if err != nil {
			return nil, err
		}
		return &mailcluster.Recipient{Address: mailcluster.Postmaster, Accounts: []*mailcluster.Account{s.forDelivery(a)}}, nil
	}
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return nil, err
	}
	d, err := s.servedDomain(domain)
	if err != nil {
		return nil, err
	}
	r := &mailcluster.Recipient{Address: mailbox + "@" + domain}
	if a, _, err := s.getAccount(domain, mailbox); err == nil {
		r.Accounts = []*mailcluster.Account{s.forDelivery(a)}
		return r, nil
	} else if mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
		return nil, err
	}
	if al, _, err := s.getAlias(domain, mailbox); err == nil {
		a, err := s.lookupAccount(al.Target)
		if err != nil {
			return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Address %s does not exist.", r.Address)
		}
		r.Accounts = []*mailcluster.Account{s.forDelivery(a)}
		return r, nil
	} else if mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
		return nil, err
	}
	if l, _, err := s.getList(domain, mailbox); err == nil {
		if l.Deleting {
			return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Mailing list %s is being deleted.", r.Address)
		}
		return s.resolveList(r, l, sender)
	} else if mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
		return nil, err
	}
	if mailbox == mailcluster.Postmaster || mailbox == mailcluster.Abuse {
		a, err := s.postmasterOf(d)
		if err != nil {
			return nil, err
		}
		r.Accounts = []*mailcluster.Account{s.forDelivery(a)}
		return r, nil
	}
	return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Address %s does not exist.", r.Address)
}

// servedDomain returns a domain in service for delivery: one that does
// not exist or is being deleted is not found.
func (s *Service) servedDomain(domain string) (*mailcluster.Domain, error) {
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
	return d, nil
}

// forDelivery returns a copy of a without its password hash and with the
// default quotas of its groups filled in.
func (s *Service) forDelivery(a *mailcluster.Account) *mailcluster.Account {
	c := a.Public()
	s.quotaGroups(c.Domain)(c)
	return c
}

// resolveList decides a post from sender to list l: the members (groups
// expanded, without duplicates, disabled accounts left out), or for a
// moderated list the owner for review.
func (s *Service) resolveList(r *mailcluster.Recipient, l *mailcluster.MailingList, sender string) (*mailcluster.Recipient, error) {
	r.List = l
	sender = strings.ToLower(strings.TrimSpace(sender))
	switch l.Policy {
	case mailcluster.ListPostAnyone:
	case mailcluster.ListPostModerated:
		if sender == "" || sender != strings.ToLower(l.Owner) {
			owner, err := s.lookupAccount(l.Owner)
			if err != nil {
				// A moderated list always has an owner; should the owner's
				// account be gone, the domain's postmaster reviews.
				d, derr := s.servedDomain(l.Domain)
				if derr != nil {
					return nil, derr
				}
				if owner, err = s.postmasterOf(d); err != nil {
					return nil, err
				}
			}
			r.Accounts, r.Review = []*mailcluster.Account{s.forDelivery(owner)}, true
			return r, nil
		}
	default:
		if !s.isListMember(l, sender) {
			return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only members may post to the mailing list %s.", l.Address())
		}
	}
	r.Accounts, r.External = s.listMembers(l)
	return r, nil
}

// isListMember reports whether sender is a member of l, directly, through
// a member group, or as an outside member.
func (s *Service) isListMember(l *mailcluster.MailingList, sender string) bool {
	mailbox, domain, err := mailcluster.SplitAddress(sender)
	if err != nil {
		return false
	}
	if domain != l.Domain {
		return s.has(schema.ListMemberExternal(l.Domain, l.Name, mailbox+"@"+domain))
	}
	if _, ok := s.store.Get(schema.ListMemberAccount(l.Domain, l.Name, mailbox)); ok {
		return true
	}
	for _, g := range s.listGroups(l) {
		if _, ok := s.store.Get(schema.GroupMember(l.Domain, g, mailbox)); ok {
			return true
		}
	}
	return false
}

// listGroups returns the member groups of l that are not being deleted.
func (s *Service) listGroups(l *mailcluster.MailingList) []string {
	prefix := schema.ListMemberPrefix(l.Domain, l.Name) + groupMemberTag
	var out []string
	for _, kv := range s.store.List(prefix, "", 0) {
		name := strings.TrimPrefix(kv.Key, prefix)
		if g, _, err := s.getGroup(l.Domain, name); err == nil && !g.Deleting {
			out = append(out, name)
		}
	}
	return out
}

// listMembers returns who receives a post to l: the accounts (members of
// l's domain, its groups' members, and the outside members in other
// domains served here that are accounts or aliases of accounts), enabled
// and without duplicates; and the outside members in domains not served
// here, for the outbound queue. An outside member in a served domain that
// is neither (a list, an unknown address) receives nothing: lists are not
// expanded into one another.
func (s *Service) listMembers(l *mailcluster.MailingList) ([]*mailcluster.Account, []string) {
	quotas := s.quotaGroups(l.Domain)
	seen := map[string]bool{}
	out := []*mailcluster.Account{}
	var external []string
	add := func(a *mailcluster.Account) {
		if seen[a.Address()] || a.Disabled {
			return
		}
		seen[a.Address()] = true
		if a.Domain == l.Domain {
			c := a.Public()
			quotas(c)
			out = append(out, c)
			return
		}
		out = append(out, s.forDelivery(a))
	}
	local := func(mailbox string) {
		if a, _, err := s.getAccount(l.Domain, mailbox); err == nil {
			add(a)
		}
	}
	prefix := schema.ListMemberPrefix(l.Domain, l.Name)
	for _, kv := range s.store.List(prefix, "", 0) {
		suffix := strings.TrimPrefix(kv.Key, prefix)
		switch addr, ext := strings.CutPrefix(suffix, externalMemberTag); {
		case ext:
			if a, served := s.servedOutsideMember(addr); a != nil {
				add(a)
			} else if !served && !seen[addr] {
				seen[addr] = true
				external = append(external, addr)
			}
		case !strings.HasPrefix(suffix, groupMemberTag):
			local(suffix)
		}
	}
	for _, g := range s.listGroups(l) {
		gp := schema.GroupMemberPrefix(l.Domain, g)
		for _, kv := range s.store.List(gp, "", 0) {
			local(strings.TrimPrefix(kv.Key, gp))
		}
	}
	return out, external
}

// servedOutsideMember resolves an outside member of a list: in a domain
// served here (served), the account it names directly or as an alias
// (nil for anything else); in another domain, nothing.
func (s *Service) servedOutsideMember(address string) (a *mailcluster.Account, served bool) {
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return nil, true // never stored: addresses are validated
	}
	if _, err := s.servedDomain(domain); err != nil {
		return nil, s.isLocalDomain(domain)
	}
	if a, _, err := s.getAccount(domain, mailbox); err == nil {
		return a, true
	}
	if al, _, err := s.getAlias(domain, mailbox); err == nil {
		if a, err := s.lookupAccount(al.Target); err == nil {
			return a, true
		}
	}
	return nil, true
}

// postmasterOf returns the account that receives postmaster@ and abuse@
// of d: its Postmaster setting while that account exists, is enabled and
// its domain in service, otherwise the first global administrator.
func (s *Service) postmasterOf(d *mailcluster.Domain) (*mailcluster.Account, error) {
	if d.Postmaster != "" {
		if a, err := s.lookupAccount(d.Postmaster); err == nil && !a.Disabled {
			return a, nil
		}
	}
	return s.firstGlobalAdmin()
}

// firstGlobalAdmin returns the first usable global administrator (in
// address order) outside the domains being deleted. Errors: ENOTFOUND.
func (s *Service) firstGlobalAdmin() (*mailcluster.Account, error) {
	if _, built := s.store.Get(schema.KeyAdminIndexBuilt); built {
		for _, kv := range s.store.List(schema.PrefixGlobalAdmins, "", 0) {
			if a, err := s.lookupAccount(strings.TrimPrefix(kv.Key, schema.PrefixGlobalAdmins)); err == nil && usableGlobalAdmin(a) {
				return a, nil
			}
		}
	} else {
		for _, kv := range s.store.List(schema.PrefixAccounts, "", 0) {
			var a mailcluster.Account
			if json.Unmarshal(kv.Value, &a) == nil && usableGlobalAdmin(&a) && !s.domainDeleting(a.Domain) {
				return &a, nil
			}
		}
	}
	return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "There is no postmaster: no usable global administrator.")
}
