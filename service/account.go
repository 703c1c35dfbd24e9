package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
)

func (s *Service) getAccount(domain, mailbox string) (*mailcluster.Account, uint64, error) {
	kv, ok := s.getShared(schema.Account(domain, mailbox))
	if !ok {
		return nil, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Account %s@%s does not exist.", mailbox, domain)
	}
	var a mailcluster.Account
	if !s.decodeCached(kv, &a) {
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, 0, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored account record is damaged.", Err: err}
		}
		s.storeDecoded(kv, a)
	}
	return &a, kv.ModifyIndex, nil
}

func normalizeAccountName(domain, mailbox string) (string, string, error) {
	domain, mailbox = mailcluster.NormalizeDomain(domain), mailcluster.NormalizeMailbox(mailbox)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return "", "", err
	}
	if err := mailcluster.ValidateMailbox(mailbox); err != nil {
		return "", "", err
	}
	return domain, mailbox, nil
}

// FindAccount returns one account without its password hash.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error) {
	domain, mailbox, err := s.readName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	a, _, err := s.getAccount(domain, mailbox)
	if err != nil {
		return nil, err
	}
	return a.Public(), nil
}

// FindAccounts returns one page of a domain's accounts and the cursor of
// the next page ("" on the last page).
func (s *Service) FindAccounts(ctx context.Context, f mailcluster.AccountFilter) ([]*mailcluster.Account, string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, "", err
	}
	if err := s.checkServing(); err != nil {
		return nil, "", err
	}
	domain := mailcluster.NormalizeDomain(f.Domain)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return nil, "", err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, "", err
	}
	if err := s.checkDomain(domain); err != nil {
		return nil, "", err
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	after := ""
	if f.Cursor != "" {
		after = schema.Account(domain, mailcluster.NormalizeMailbox(f.Cursor))
	}
	search := strings.ToLower(f.Search)
	var out []*mailcluster.Account
	next := ""
	for after != "\xff" {
		batch := s.store.List(schema.AccountPrefix(domain), after, 256)
		if len(batch) == 0 {
			break
		}
		for _, kv := range batch {
			after = kv.Key
			var a mailcluster.Account
			if err := json.Unmarshal(kv.Value, &a); err != nil {
				return nil, "", &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored account record is damaged.", Err: err}
			}
			if search != "" && !accountMatches(&a, search) {
				continue
			}
			if len(out) == f.Limit {
				next = out[len(out)-1].Mailbox
				after = "\xff"
				break
			}
			out = append(out, a.Public())
		}
	}
	return out, next, nil
}

func accountMatches(a *mailcluster.Account, search string) bool {
	for _, s := range []string{a.Mailbox, a.FullName, a.FirstName, a.LastName} {
		if strings.Contains(strings.ToLower(s), search) {
			return true
		}
	}
	return false
}

func validateAccountFields(a *mailcluster.Account) error {
	for name, v := range map[string]string{"FullName": a.FullName, "FirstName": a.FirstName, "LastName": a.LastName} {
		if len(v) > 256 || strings.ContainsAny(v, "\r\n\x00") {
			return mailcluster.Errorf(mailcluster.EINVALID, "%s must be one line of at most 256 bytes.", name)
		}
	}
	if a.QuotaBytes < 0 || a.QuotaMessages < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "Quotas must be 0 (unlimited) or more.")
	}
	rights, err := mailcluster.ParseAdminRights(string(a.AdminRights))
	if err != nil {
		return err
	}
	a.AdminRights = rights
	if a.MailboxPath != "" && (!strings.HasPrefix(a.MailboxPath, "/") || strings.Contains(a.MailboxPath, "..") ||
		strings.ContainsAny(a.MailboxPath, "\r\n\x00") || len(a.MailboxPath) > 1024) {
		return mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path must be an absolute path without '..'.")
	}
	sendAs, err := normalizeSendAs(a.SendAs)
	if err != nil {
		return err
	}
	a.SendAs = sendAs
	return nil
}

// MinImportedHashCost is the least bcrypt cost a password hash given
// instead of a password (PasswordHash) may have.
const MinImportedHashCost = 10

// validatePasswordHash accepts a bcrypt hash ($2a$, $2b$ or $2y$, the cost,
// 22 characters of salt and 31 of hash) of cost MinImportedHashCost or
// more. The messages never repeat the hash, nor a bcrypt prefix or the
// field's name in one word, so that no answer looks like a leaked hash.
func validatePasswordHash(h string) error {
	malformed := mailcluster.Errorf(mailcluster.EINVALID,
		"The password hash is not a bcrypt hash of version 2a, 2b or 2y: 60 characters, the version, a two-digit cost and 53 characters of ./A-Za-z0-9, separated by $.")
	if len(h) != 60 || !(strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) || h[6] != '$' {
		return malformed
	}
	for _, r := range h[7:] {
		if !(r == '.' || r == '/' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return malformed
		}
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return malformed
	}
	if cost < MinImportedHashCost {
		return mailcluster.Errorf(mailcluster.EINVALID, "The password hash has bcrypt cost %d; the least accepted is %d.", cost, MinImportedHashCost)
	}
	return nil
}

// MaxSendAs is the most entries an account's SendAs list may hold.
const MaxSendAs = 100

// normalizeSendAs lower-cases and checks a SendAs list: addresses or
// "@domain" entries, no duplicates.
func normalizeSendAs(list []string) ([]string, error) {
	if len(list) > MaxSendAs {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs may list at most %d addresses.", MaxSendAs)
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		if rest, ok := strings.CutPrefix(e, "@"); ok {
			if err := mailcluster.ValidateDomainName(rest); err != nil {
				return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs entry %q is neither an address nor @domain.", e)
			}
		} else if mailbox, domain, err := mailcluster.SplitAddress(e); err != nil {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs entry %q is neither an address nor @domain.", e)
		} else {
			e = mailbox + "@" + domain
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// sendAsDomain returns the domain an SendAs entry belongs to.
func sendAsDomain(e string) string { return e[strings.LastIndexByte(e, '@')+1:] }

// authorizeAccountFields refuses the fields that only a global
// administrator may set: global rights, a mailbox path (it names files on
// the host), and sender addresses outside the caller's own domain.
// pathChanged tells whether the request sets a mailbox path other than the
// one the account has (or would get from the template), sendAsSet whether
// it sets the SendAs list.
func authorizeAccountFields(ctx context.Context, a *mailcluster.Account, pathChanged, sendAsSet bool) error {
	c := CallerFromContext(ctx)
	if c == nil || c.AdminRights == mailcluster.AdminGlobal {
		return nil
	}
	if a.AdminRights == mailcluster.AdminGlobal {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may grant global admin rights.")
	}
	if pathChanged {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may set a mailbox path.")
	}
	for _, e := range a.SendAs {
		if sendAsSet && sendAsDomain(e) != c.Domain {
			return mailcluster.Errorf(mailcluster.EFORBIDDEN, "You may only allow sender addresses of your own domain %s.", c.Domain)
		}
	}
	return nil
}

// confineMailboxPath resolves an account's mailbox path and refuses one
// outside the mailbox roots (EINVALID, as bad input of a global
// administrator, the only caller who can choose a path).
func (s *Service) confineMailboxPath(p string) error {
	if _, err := mailcluster.ConfineMailboxPath(p, mailcluster.MailboxRoots(s.setting)...); err != nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path %q must lie below the mailbox root %s.", p,
			s.stringSetting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, mailcluster.DefaultMailboxRoot))
	}
	return nil
}

// CreateAccount adds an account to an existing domain. The mailbox path
// comes from [NewAccounts] MailboxPath unless given.
// Errors: EINVALID, ENOTFOUND (domain), ECONFLICT (exists or domain full),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateAccount(ctx context.Context, in mailcluster.AccountCreate) (*mailcluster.Account, error) {
	domain, mailbox, err := authorizeName(ctx, in.Domain, in.Mailbox)
	if err != nil {
		return nil, err
	}
	a := &mailcluster.Account{Domain: domain, Mailbox: mailbox, FullName: in.FullName, FirstName: in.FirstName, LastName: in.LastName,
		MailboxPath: in.MailboxPath, Frozen: in.Frozen, Disabled: in.Disabled, QuotaBytes: in.QuotaBytes,
		QuotaMessages: in.QuotaMessages, AdminRights: in.AdminRights, SendAs: in.SendAs}
	if err := validateAccountFields(a); err != nil {
		return nil, err
	}
	if err := authorizeAccountFields(ctx, a, in.MailboxPath != "" && in.MailboxPath != s.mailboxPathFor(domain, mailbox), true); err != nil {
		return nil, err
	}
	switch {
	case in.Password != "" && in.PasswordHash != "":
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Password and password hash: give one, not both.")
	case in.PasswordHash != "":
		if err := validatePasswordHash(in.PasswordHash); err != nil {
			return nil, err
		}
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	d, didx, err := s.getDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.checkAddressFree(domain, mailbox); err != nil {
		return nil, err
	}
	if d.MaxAccounts > 0 && d.AccountCount >= d.MaxAccounts {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s already has its maximum of %d accounts.", domain, d.MaxAccounts)
	}
	if a.MailboxPath == "" {
		a.MailboxPath = s.mailboxPathFor(domain, mailbox)
	}
	if err := s.confineMailboxPath(a.MailboxPath); err != nil {
		return nil, err
	}
	if a.PasswordHash = in.PasswordHash; in.Password != "" {
		if a.PasswordHash, err = s.hashPassword(in.Password); err != nil {
			return nil, err
		}
	}
	a.CreatedAt, a.UpdatedAt = s.now(), s.now()
	b, _ := json.Marshal(a)
	var o opSet
	o.check(schema.Domain(domain), didx)
	key := schema.Account(domain, mailbox)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: b, Index: 0})
	checkAddressFreeOps(&o, domain, mailbox, key)
	for _, op := range s.adminIndexOps(a.Address(), a) {
		o.add(op)
	}
	if err := s.accountRefChanges(ctx, &o, a, accountRefs{addAliases: in.Aliases, addLists: in.Lists, addGroups: in.Groups}); err != nil {
		return nil, err
	}
	if err := o.tooLarge("Creating the account with its aliases, lists and groups"); err != nil {
		return nil, err
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Account %s@%s already exists, or its domain, one of its aliases, lists or groups changed; try again.", mailbox, domain)
	}
	s.log.Info("account created", "address", a.Address())
	return a.Public(), nil
}

// mailboxPathFor expands the new-account template for an address.
func (s *Service) mailboxPathFor(domain, mailbox string) string {
	tmpl := s.stringSetting(mailcluster.SectionNewAccounts, mailcluster.KeyMailboxPath, mailcluster.DefaultMailboxPathTemplate)
	root := s.stringSetting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, mailcluster.DefaultMailboxRoot)
	return mailcluster.ExpandMailboxPath(tmpl, root, domain, mailbox)
}

// UpdateAccount changes an account. Errors as CreateAccount.
func (s *Service) UpdateAccount(ctx context.Context, domain, mailbox string, upd mailcluster.AccountUpdate) (*mailcluster.Account, error) {
	domain, mailbox, err := authorizeName(ctx, domain, mailbox)
	if err != nil {
		return nil, err
	}
	caller := CallerFromContext(ctx)
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if s.domainDeleting(domain) {
		return nil, errDomainDeleting(domain)
	}
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return nil, err
	}
	if caller != nil && caller.AdminRights != mailcluster.AdminGlobal && a.AdminRights == mailcluster.AdminGlobal {
		return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may change a global administrator.")
	}
	wasGlobal := a.AdminRights == mailcluster.AdminGlobal && !a.Disabled && !a.Frozen
	oldPath := a.MailboxPath
	setIf(&a.FullName, upd.FullName)
	setIf(&a.FirstName, upd.FirstName)
	setIf(&a.LastName, upd.LastName)
	setIf(&a.MailboxPath, upd.MailboxPath)
	setIf(&a.Frozen, upd.Frozen)
	setIf(&a.Disabled, upd.Disabled)
	setIf(&a.QuotaBytes, upd.QuotaBytes)
	setIf(&a.QuotaMessages, upd.QuotaMessages)
	setIf(&a.AdminRights, upd.AdminRights)
	setIf(&a.SendAs, upd.SendAs)
	if upd.MailboxPath != nil && *upd.MailboxPath == "" {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path may not be empty.")
	}
	if err := validateAccountFields(a); err != nil {
		return nil, err
	}
	if err := authorizeAccountFields(ctx, a, a.MailboxPath != oldPath, upd.SendAs != nil); err != nil {
		return nil, err
	}
	if a.MailboxPath != oldPath {
		if err := s.confineMailboxPath(a.MailboxPath); err != nil {
			return nil, err
		}
	}
	if wasGlobal && (a.AdminRights != mailcluster.AdminGlobal || a.Disabled || a.Frozen) {
		if err := s.checkLastAdmin("", a.Address()); err != nil {
			return nil, err
		}
	}
	switch {
	case upd.Password != nil && upd.PasswordHash != nil:
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Password and password hash: give one, not both.")
	case upd.PasswordHash != nil:
		if err := validatePasswordHash(*upd.PasswordHash); err != nil {
			return nil, err
		}
		a.PasswordHash = *upd.PasswordHash
	case upd.Password != nil:
		if a.PasswordHash, err = s.hashPassword(*upd.Password); err != nil {
			return nil, err
		}
	}
	a.UpdatedAt = s.now()
	b, _ := json.Marshal(a)
	var o opSet
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Account(domain, mailbox), Value: b, Index: idx})
	for _, op := range s.adminIndexOps(a.Address(), a) {
		o.add(op)
	}
	if !a.Frozen {
		// Thawing by hand also ends a freeze by dynamic screening.
		if rec, ok := s.store.Get(schema.FrozenAccount(a.Address())); ok {
			o.add(mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: rec.Key, Index: rec.ModifyIndex})
		}
	}
	if err := s.accountRefChanges(ctx, &o, a, accountRefs{addAliases: upd.AddAliases, removeAliases: upd.RemoveAliases,
		addLists: upd.AddLists, removeLists: upd.RemoveLists, addGroups: upd.AddGroups, removeGroups: upd.RemoveGroups}); err != nil {
		return nil, err
	}
	if err := o.tooLarge("This change of the account with its aliases, lists and groups"); err != nil {
		return nil, err
	}
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "Account %s@%s, one of its aliases, lists or groups was changed concurrently; try again.", mailbox, domain)
	}
	s.log.Info("account updated", "address", a.Address())
	return a.Public(), nil
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// DeleteAccount removes an account. Its mail on disk is left in place; the
// mail service removes it when asked to (RemoveMailbox).
// Errors: EINVALID, ENOTFOUND, ECONFLICT (last global admin, own account),
// EFORBIDDEN, EREADONLY.
func (s *Service) DeleteAccount(ctx context.Context, domain, mailbox string) error {
	domain, mailbox, err := authorizeName(ctx, domain, mailbox)
	if err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return err
	}
	caller := CallerFromContext(ctx)
	if caller != nil && caller.AdminRights != mailcluster.AdminGlobal && a.AdminRights == mailcluster.AdminGlobal {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may delete a global administrator.")
	}
	if caller != nil && caller.Address() == a.Address() {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot delete your own account.")
	}
	if a.AdminRights == mailcluster.AdminGlobal {
		if err := s.checkLastAdmin("", a.Address()); err != nil {
			return err
		}
	}
	ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Account(domain, mailbox), Index: idx}}
	for _, k := range []string{schema.Usage(domain, mailbox), schema.FrozenAccount(a.Address()), schema.GlobalAdmin(a.Address())} {
		if _, ok := s.store.Get(k); ok {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
		}
	}
	refs, err := s.accountDeleteRefs(a, len(ops))
	if err != nil {
		return err
	}
	ops = append(ops, refs...)
	if err := s.txn(ctx, ops); err != nil {
		return conflictAs(err, "Account %s@%s, one of its aliases, lists or groups was changed concurrently; try again.", mailbox, domain)
	}
	s.log.Info("account deleted", "address", a.Address())
	return nil
}

// accountRefs are the aliases, lists and groups an account create or
// update adds and removes.
type accountRefs struct {
	addAliases, removeAliases []string
	addLists, removeLists     []string
	addGroups, removeGroups   []string
}

// accountRefChanges adds to o the aliases, list and group memberships an
// account create or update adds and removes; o writes the account's
// record already.
func (s *Service) accountRefChanges(ctx context.Context, o *opSet, a *mailcluster.Account, r accountRefs) error {
	if err := s.accountAliasChanges(ctx, o, a, r.addAliases, r.removeAliases, a.UpdatedAt); err != nil {
		return err
	}
	if err := s.accountListChanges(o, a, r.addLists, r.removeLists); err != nil {
		return err
	}
	return s.accountGroupChanges(o, a, r.addGroups, r.removeGroups)
}

// accountDeleteRefs returns the deletion of what refers to account a: the
// aliases pointing at it (with their index entries) and its list and
// group memberships. It refuses (ECONFLICT) when a owns a list, or when
// with the base operations of the deletion they are more than one
// transaction holds.
func (s *Service) accountDeleteRefs(a *mailcluster.Account, base int) ([]mailcluster.Op, error) {
	aliases := s.accountAliasEntries(a.Address())
	ops := s.aliasEntryOps(aliases)
	memberships := 0
	for _, kv := range s.store.List(schema.ListPrefix(a.Domain), "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.ListPrefix(a.Domain))
		var l mailcluster.MailingList
		if err := json.Unmarshal(kv.Value, &l); err == nil && strings.EqualFold(l.Owner, a.Address()) {
			return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Account %s owns the mailing list %s@%s: give the list another owner or delete it first.",
				a.Address(), name, a.Domain)
		}
		if k := schema.ListMemberAccount(a.Domain, name, a.Mailbox); s.has(k) {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
			memberships++
		}
	}
	for _, name := range s.setsWith(groupKind, a.Domain, a.Mailbox) {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: groupKind.of(a.Domain, name).accountKey(a.Mailbox)})
		memberships++
	}
	if over := base + len(ops) - MaxWriteOps; over > 0 {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT,
			"Account %s has %d aliases and %d list and group memberships, more than one deletion can remove: remove at least %d of its memberships (or %d of its aliases) first.",
			a.Address(), len(aliases), memberships, over, (over+1)/2)
	}
	return ops, nil
}

// has reports whether key exists.
func (s *Service) has(key string) bool {
	_, ok := s.store.Get(key)
	return ok
}

// checkLastAdmin refuses a change that would leave no usable global
// administrator: excluding the accounts of domain exceptDomain, of the
// domains being deleted, and the account exceptAddress, one must remain. It reads the global-administrator
// index and then only the accounts it lists; a state whose index is not
// built yet (no schema.KeyAdminIndexBuilt) is scanned whole.
func (s *Service) checkLastAdmin(exceptDomain, exceptAddress string) error {
	if _, built := s.store.Get(schema.KeyAdminIndexBuilt); !built {
		return s.checkLastAdminScan(exceptDomain, exceptAddress)
	}
	for _, kv := range s.store.List(schema.PrefixGlobalAdmins, "", 0) {
		address := strings.TrimPrefix(kv.Key, schema.PrefixGlobalAdmins)
		mailbox, domain, err := mailcluster.SplitAddress(address)
		if err != nil || domain == exceptDomain || address == exceptAddress {
			continue
		}
		if a, _, err := s.getAccount(domain, mailbox); err == nil && usableGlobalAdmin(a) && !s.domainDeleting(domain) {
			return nil
		}
	}
	return errNoAdminLeft()
}

// checkLastAdminScan is checkLastAdmin over every account.
func (s *Service) checkLastAdminScan(exceptDomain, exceptAddress string) error {
	for _, kv := range s.store.List(schema.PrefixAccounts, "", 0) {
		var a mailcluster.Account
		if json.Unmarshal(kv.Value, &a) != nil {
			continue
		}
		if usableGlobalAdmin(&a) && a.Domain != exceptDomain && a.Address() != exceptAddress && !s.domainDeleting(a.Domain) {
			return nil
		}
	}
	return errNoAdminLeft()
}

func errNoAdminLeft() error {
	return mailcluster.Errorf(mailcluster.ECONFLICT, "This would leave no usable global administrator.")
}

// usableGlobalAdmin reports whether a is a global administrator who can
// log in (neither disabled nor frozen, and it has a password).
func usableGlobalAdmin(a *mailcluster.Account) bool {
	return a.AdminRights == mailcluster.AdminGlobal && !a.Disabled && !a.Frozen && a.PasswordHash != ""
}

// adminIndexOps returns the operations that bring the global-administrator
// index entry of address in line with the account a being written (nil:
// the account is deleted): the entry exists exactly while the account's
// rights are global, whether or not it is frozen or disabled. They go into
// the same transaction as the account record; none when the entry is
// right already.
func (s *Service) adminIndexOps(address string, a *mailcluster.Account) []mailcluster.Op {
	key := schema.GlobalAdmin(address)
	_, indexed := s.store.Get(key)
	switch global := a != nil && a.AdminRights == mailcluster.AdminGlobal; {
	case global && !indexed:
		return []mailcluster.Op{{Verb: mailcluster.OpSet, Key: key, Value: []byte("{}")}}
	case !global && indexed:
		return []mailcluster.Op{{Verb: mailcluster.OpDelete, Key: key}}
	}
	return nil
}

// ---- settings ----
