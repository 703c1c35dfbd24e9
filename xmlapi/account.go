package xmlapi

import (
	"context"
	"math"
	"strings"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/service"
)

const mib = 1 << 20

// handleUserInfo answers GetUserInfo. <Get> selects sections: Details,
// Quotas, Roles, Aliases, ListMembership, GroupMembership, or All (all
// six, also the default when <Get> is absent); other section names are
// accepted and answered with nothing.
func (h *Handler) handleUserInfo(ctx context.Context, p params, res *result) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	a, err := h.svc.FindAccount(ctx, domain, mailbox)
	if err != nil {
		return err
	}
	return h.answerUser(ctx, res, a, mailbox, userSections(p.find("Get")))
}

// handleUserCreate answers CreateUser with the new account, its id as the
// client wrote it. Its aliases, lists and groups are created or joined in
// the same service call as the account.
func (h *Handler) handleUserCreate(ctx context.Context, p params, res *result) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	f, err := accountFields(p, mailcluster.AdminNone, true)
	if err != nil {
		return err
	}
	in := mailcluster.AccountCreate{Domain: domain, Mailbox: mailbox,
		Aliases: f.AddAliases, Lists: f.AddLists, Groups: f.AddGroups}
	setIf(&in.FullName, f.FullName)
	setIf(&in.FirstName, f.FirstName)
	setIf(&in.LastName, f.LastName)
	setIf(&in.Password, f.Password)
	setIf(&in.PasswordHash, f.PasswordHash)
	setIf(&in.MailboxPath, f.MailboxPath)
	setIf(&in.Frozen, f.Frozen)
	setIf(&in.Disabled, f.Disabled)
	setIf(&in.QuotaBytes, f.QuotaBytes)
	setIf(&in.QuotaMessages, f.QuotaMessages)
	setIf(&in.AdminRights, f.AdminRights)
	setIf(&in.SendAs, f.SendAs)
	a, err := h.svc.CreateAccount(ctx, in)
	if err != nil {
		return err
	}
	return h.answerUser(ctx, res, a, mailbox, allSections)
}

// handleUserUpdate answers UpdateUser with the changed account, its id as
// the client wrote it. Only the elements present are changed; the entries
// of <Aliases>, <ListMembership> and <GroupMembership> are added, or
// removed with action="remove", in the same service call. <Roles> that
// name only one of IsGlobalAdmin and IsDomainAdmin are read against the
// account's current rights (see roleRights).
func (h *Handler) handleUserUpdate(ctx context.Context, p params, res *result) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	current := mailcluster.AdminNone
	if p.section("Roles") != "" {
		a, err := h.svc.FindAccount(ctx, domain, mailbox)
		if err != nil {
			return err
		}
		current = a.AdminRights
	}
	f, err := accountFields(p, current, false)
	if err != nil {
		return err
	}
	a, err := h.svc.UpdateAccount(ctx, domain, mailbox, f)
	if err != nil {
		return err
	}
	return h.answerUser(ctx, res, a, mailbox, allSections)
}

// handleUserDelete answers DeleteUser. Every Remove* element (RemoveMailbox,
// RemoveFromLists, ...) must be a valid flag; the account record is
// deleted, and mail on disk is left for the mail service (see
// docs/xml-api.md).
func (h *Handler) handleUserDelete(ctx context.Context, p params, _ *etree.Element) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	removeMailbox := false
	for _, e := range p.el.ChildElements() {
		if !strings.HasPrefix(e.Tag, "Remove") {
			continue
		}
		v := strings.TrimSpace(textOf(e))
		if v == "" {
			continue // empty: the default, No
		}
		b, err := parseFlag(e.Tag, v)
		if err != nil {
			return err
		}
		if e.Tag == "RemoveMailbox" {
			removeMailbox = b
		}
	}
	if err := h.svc.DeleteAccount(ctx, domain, mailbox); err != nil {
		return err
	}
	if removeMailbox {
		h.log.Info("xmlapi: account deleted; its mail files stay on disk until the mail service removes them",
			"domain", domain, "mailbox", mailbox)
	}
	return nil
}

// accountName returns the required <Domain> and <Mailbox>.
func accountName(p params) (domain, mailbox string, err error) {
	if domain, err = p.required("Domain"); err != nil {
		return "", "", err
	}
	if mailbox, err = p.required("Mailbox"); err != nil {
		return "", "", err
	}
	return domain, mailbox, nil
}

// accountFields decodes the optional elements of CreateUser and
// UpdateUser: <Details>, and the sections <Quotas>, <Roles>, <Aliases>,
// <ListMembership> and <GroupMembership> (directly in <Parameters> or
// inside <Details>). The password is taken as sent (not trimmed); a
// password hash (a bcrypt hash given instead of a password, checked by
// the service) is trimmed. current is the account's admin rights
// (AdminNone for a new account), for <Roles>; create refuses entries to
// remove. Known elements of the classic XML-API that mailcluster does not
// support are refused first (see unsupported), so nothing is changed.
func accountFields(p params, current mailcluster.AdminRights, create bool) (mailcluster.AccountUpdate, error) {
	if err := unsupported(p); err != nil {
		return mailcluster.AccountUpdate{}, err
	}
	f := mailcluster.AccountUpdate{
		FullName:     p.str("Details/FullName"),
		FirstName:    p.str("Details/FirstName"),
		LastName:     p.str("Details/LastName"),
		Password:     p.raw("Details/Password"),
		PasswordHash: p.str("Details/PasswordHash"),
		MailboxPath:  p.str("Details/MailDir"),
	}
	if dn := p.str("Details/DisplayName"); dn != nil {
		if f.FullName != nil && *f.FullName != *dn {
			return f, mailcluster.Errorf(mailcluster.EINVALID,
				"Parameters Details/DisplayName and Details/FullName name the same field: give one, or the same value.")
		}
		f.FullName = dn
	}
	var err error
	if f.Frozen, err = p.flag("Details/Frozen"); err != nil {
		return f, err
	}
	if f.Disabled, err = p.flag("Details/Disabled"); err != nil {
		return f, err
	}
	if s := p.str("Details/AdminRights"); s != nil && *s != "" {
		r, err := mailcluster.ParseAdminRights(*s)
		if err != nil {
			return f, mailcluster.Errorf(mailcluster.EINVALID, "Parameter Details/AdminRights: %q is not one of None, Domain, Global.", clip(*s))
		}
		f.AdminRights = &r
	}
	if path := p.section("Roles"); path != "" {
		r, err := roleRights(p, path, current)
		if err != nil {
			return f, err
		}
		if r != nil && f.AdminRights != nil && *f.AdminRights != *r {
			return f, mailcluster.Errorf(mailcluster.EINVALID,
				"Parameters %s and Details/AdminRights disagree: give one of them.", path)
		}
		if r != nil {
			f.AdminRights = r
		}
	}
	if f.QuotaBytes, f.QuotaMessages, err = quotas(p); err != nil {
		return f, err
	}
	if f.SendAs, err = sendAs(p); err != nil {
		return f, err
	}
	if err := memberships(p, &f, create); err != nil {
		return f, err
	}
	return f, nil
}

// memberships decodes <Aliases><Alias>, <ListMembership><List> and
// <GroupMembership><Group> (each directly in <Parameters> or inside
// <Details>) into the Add and Remove lists of f: an alias is a local part
// or a full address, a list its name or address, a group its name; the
// service checks them. An entry with action="remove" (or "delete") is
// removed; on create (a new account) it is refused.
func memberships(p params, f *mailcluster.AccountUpdate, create bool) error {
	for _, s := range []struct {
		section, entry string
		add, remove    *[]string
	}{
		{"Aliases", "Alias", &f.AddAliases, &f.RemoveAliases},
		{"ListMembership", "List", &f.AddLists, &f.RemoveLists},
		{"GroupMembership", "Group", &f.AddGroups, &f.RemoveGroups},
	} {
		path := p.section(s.section)
		if path == "" {
			continue
		}
		if p.has(s.section) && p.has("Details/"+s.section) {
			return mailcluster.Errorf(mailcluster.EINVALID,
				"Parameters %s and Details/%s: give the section once; nothing was changed.", s.section, s.section)
		}
		add, remove, err := p.entries(path, s.entry)
		if err != nil {
			return err
		}
		if create && len(remove) > 0 {
			return errNothingToRemove(path+"/"+s.entry, "account", "UpdateUser")
		}
		*s.add, *s.remove = add, remove
	}
	return nil
}

// notSupported is the StatusNotSupported error naming a parameter.
func notSupported(path, detail string) error {
	return errorf(StatusNotSupported, "Parameter %s is not supported yet%s; nothing was changed.", path, detail)
}

// unsupported refuses the known elements of the classic CreateUser and
// UpdateUser that mailcluster cannot honour: a MustChangePassword of Yes
// and the per-account limits mailcluster does not keep. Empty elements
// ask for nothing and pass.
func unsupported(p params) error {
	if v, err := p.flag("Details/MustChangePassword"); err != nil {
		return err
	} else if v != nil && *v {
		return notSupported("Details/MustChangePassword", " (Yes)")
	}
	if _, err := p.flag("Details/DontExpirePassword"); err != nil {
		return err // Yes or No: passwords never expire, which both allow
	}
	if q := p.section("Quotas"); q != "" {
		for _, name := range []string{"MaxUIDLCount", "MaxSentPerDay"} {
			n, err := p.int(q + "/" + name)
			if err != nil {
				return err
			}
			if n != nil && *n != 0 {
				return notSupported(q+"/"+name, " (only 0, no limit)")
			}
		}
	}
	return nil
}

// roleRights maps <Roles><IsGlobalAdmin>..</IsGlobalAdmin><IsDomainAdmin
// domain="..">..</IsDomainAdmin></Roles> at path to admin rights, nil
// when it asks for no change. IsGlobalAdmin Yes is Global; IsDomainAdmin
// Yes is Domain (a global administrator stays one unless IsGlobalAdmin
// is No); No for both is None; a role left out or empty keeps what the
// account has (current). IsDomainAdmin may name the account's own domain
// only (the domain attribute, or none). Whether the caller may grant the
// rights is the service's decision.
func roleRights(p params, path string, current mailcluster.AdminRights) (*mailcluster.AdminRights, error) {
	global, err := p.flag(path + "/IsGlobalAdmin")
	if err != nil {
		return nil, err
	}
	var domainAdmin *bool
	if e := p.find(path + "/IsDomainAdmin"); e != nil {
		own := strings.TrimSpace(p.strOr("Domain", ""))
		if d := strings.TrimSpace(e.SelectAttrValue("domain", "")); d != "" && !strings.EqualFold(d, own) {
			return nil, notSupported(path+"/IsDomainAdmin", " for another domain than the account's ("+clip(d)+")")
		}
		if domainAdmin, err = p.flag(path + "/IsDomainAdmin"); err != nil {
			return nil, err
		}
	}
	r := current
	switch {
	case global != nil && *global:
		r = mailcluster.AdminGlobal
	case domainAdmin != nil && *domainAdmin:
		if global != nil || current != mailcluster.AdminGlobal {
			r = mailcluster.AdminDomain
		}
	case domainAdmin != nil: // IsDomainAdmin No
		if global != nil || current == mailcluster.AdminDomain {
			r = mailcluster.AdminNone
		}
	case global != nil: // IsGlobalAdmin No, IsDomainAdmin not given
		if current == mailcluster.AdminGlobal {
			r = mailcluster.AdminNone
		}
	default:
		return nil, nil
	}
	return &r, nil
}

// sendAs decodes Details/SendAs, one <Address> element per entry (an
// address or "@domain"): nil when <SendAs> is absent (no change), an empty
// list for an empty <SendAs/> (clears the list). Text directly inside
// <SendAs> (a comma-separated list, say) is refused rather than read as
// an empty list; other child elements are ignored. The service checks the
// entries and their number.
func sendAs(p params) (*[]string, error) {
	e := p.find("Details/SendAs")
	if e == nil {
		return nil, nil
	}
	if strings.TrimSpace(textOf(e)) != "" {
		return nil, mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter Details/SendAs: give each address in its own <Address> element.")
	}
	list := []string{}
	for _, c := range e.SelectElements("Address") {
		v := strings.TrimSpace(textOf(c))
		if v == "" {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "Parameter Details/SendAs/Address: an address or @domain is required.")
		}
		list = append(list, v)
	}
	return &list, nil
}

// quotas decodes the <Quotas> section (in <Parameters> or <Details>):
// the disk quota as MaxDiskSpace or MaxDiskSpaceMB (MiB) or
// MaxDiskSpaceBytes (one of them), MaxMessageCount, and ApplyQuotas: No
// sets both quotas to 0 (no limit) whatever else is given, Yes or empty
// takes the values given.
func quotas(p params) (bytes, messages *int64, err error) {
	q := p.section("Quotas")
	if q == "" {
		return nil, nil, nil
	}
	apply, err := p.flag(q + "/ApplyQuotas")
	if err != nil {
		return nil, nil, err
	}
	var given []string
	for _, name := range []string{"MaxDiskSpace", "MaxDiskSpaceMB", "MaxDiskSpaceBytes"} {
		n, err := p.int(q + "/" + name)
		if err != nil {
			return nil, nil, err
		}
		if n == nil {
			continue
		}
		given = append(given, name)
		if name == "MaxDiskSpaceBytes" {
			bytes = n
			continue
		}
		if *n > math.MaxInt64/mib || *n < math.MinInt64/mib {
			return nil, nil, mailcluster.Errorf(mailcluster.EINVALID, "Parameter %s/%s: %d is out of range.", q, name, *n)
		}
		b := *n * mib
		bytes = &b
	}
	if len(given) > 1 {
		return nil, nil, mailcluster.Errorf(mailcluster.EINVALID,
			"Give one of %s/MaxDiskSpace, MaxDiskSpaceMB or MaxDiskSpaceBytes, not %s.", q, strings.Join(given, " and "))
	}
	if messages, err = p.int(q + "/MaxMessageCount"); err != nil {
		return nil, nil, err
	}
	if apply != nil && !*apply {
		var zb, zm int64
		return &zb, &zm, nil
	}
	return bytes, messages, nil
}

// Sections of the User element in GetUserInfo, CreateUser and UpdateUser.
type sections struct{ details, quotas, roles, aliases, lists, groups bool }

var allSections = sections{true, true, true, true, true, true}

// userSections reads <Get>: nil or <All/> is every section.
func userSections(get *etree.Element) sections {
	if get == nil || get.SelectElement("All") != nil {
		return allSections
	}
	return sections{
		details: get.SelectElement("Details") != nil,
		quotas:  get.SelectElement("Quotas") != nil,
		roles:   get.SelectElement("Roles") != nil,
		aliases: get.SelectElement("Aliases") != nil,
		lists:   get.SelectElement("ListMembership") != nil,
		groups:  get.SelectElement("GroupMembership") != nil,
	}
}

// user is an account with what the User element shows besides its
// record: the aliases that point at it, the lists and the groups it is a
// member of (each read only when its section is asked for).
type user struct {
	*mailcluster.Account
	aliases []*mailcluster.Alias
	lists   []*mailcluster.MailingList
	groups  []*mailcluster.Group
}

// answerUser reads the memberships the sections s ask for and makes the
// User element the operation's answer (see writeUser).
func (h *Handler) answerUser(ctx context.Context, res *result, a *mailcluster.Account, id string, s sections) error {
	u := user{Account: a}
	if s.aliases || s.lists || s.groups {
		m, err := h.svc.AccountMemberships(ctx, a.Domain, a.Mailbox,
			service.MembershipQuery{Aliases: s.aliases, Lists: s.lists, Groups: s.groups})
		if err != nil {
			return err
		}
		u.aliases, u.lists, u.groups = m.Aliases, m.Lists, m.Groups
	}
	res.user, res.userID, res.userSections = u, id, s
	return nil
}

// displayName is the account's full name, or its first and last names.
func displayName(a *mailcluster.Account) string {
	if a.FullName != "" {
		return a.FullName
	}
	return strings.TrimSpace(a.FirstName + " " + a.LastName)
}

// writeUser writes <User id=".." displayname=".." domain=".."> with the
// sections asked for; id is the mailbox as the client wrote it. The
// password and its hash are never written: <Password note="unavailable"/>
// stands for them, as classic clients expect the element.
func writeUser(w *xmlWriter, uv user, id string, s sections) {
	a := uv.Account
	name := displayName(a)
	w.start("User")
	w.attr("id", id)
	w.attr("displayname", name)
	w.attr("domain", a.Domain)
	if s.details {
		w.start("Details")
		w.address("Email", a.Mailbox, a.Domain)
		w.text("FullName", a.FullName)
		w.text("DisplayName", name)
		w.text("FirstName", a.FirstName)
		w.text("LastName", a.LastName)
		w.start("Password")
		w.attr("note", "unavailable")
		w.end("Password")
		w.text("MustChangePassword", "No")
		w.text("DontExpirePassword", "Yes")
		w.text("MailDir", a.MailboxPath)
		w.text("Frozen", mailcluster.FormatFlag(a.Frozen))
		w.text("Disabled", mailcluster.FormatFlag(a.Disabled))
		w.text("AdminRights", formatAdminRights(a.AdminRights))
		w.start("SendAs")
		for _, addr := range a.SendAs {
			w.text("Address", addr)
		}
		w.end("SendAs")
		w.start("Quotas")
		w.number("MaxDiskSpaceMB", ceilDiv(a.QuotaBytes, mib))
		w.number("MaxDiskSpaceBytes", a.QuotaBytes)
		w.number("MaxMessageCount", a.QuotaMessages)
		w.end("Quotas")
		w.timestamp("Created", a.CreatedAt)
		w.timestamp("Updated", a.UpdatedAt)
		w.end("Details")
	}
	if s.quotas {
		w.start("Quotas")
		w.text("ApplyQuotas", mailcluster.FormatFlag(a.QuotaBytes != 0 || a.QuotaMessages != 0))
		w.number("MaxDiskSpace", ceilDiv(a.QuotaBytes, mib))
		w.number("MaxDiskSpaceMB", ceilDiv(a.QuotaBytes, mib))
		w.number("MaxDiskSpaceBytes", a.QuotaBytes)
		w.number("MaxMessageCount", a.QuotaMessages)
		w.end("Quotas")
	}
	if s.roles {
		w.start("Roles")
		w.text("IsGlobalAdmin", mailcluster.FormatFlag(a.AdminRights == mailcluster.AdminGlobal))
		w.start("IsDomainAdmin")
		w.attr("domain", a.Domain)
		w.endText("IsDomainAdmin", mailcluster.FormatFlag(a.AdminRights == mailcluster.AdminDomain))
		w.end("Roles")
	}
	if s.aliases {
		w.start("Aliases")
		for _, al := range uv.aliases {
			w.address("Alias", al.Name, al.Domain)
		}
		w.end("Aliases")
	}
	if s.lists {
		w.start("ListMembership")
		for _, l := range uv.lists {
			w.address("List", l.Name, l.Domain)
		}
		w.end("ListMembership")
	}
	if s.groups {
		w.start("GroupMembership")
		for _, g := range uv.groups {
			w.text("Group", g.Name)
		}
		w.end("GroupMembership")
	}
	w.end("User")
}

// formatAdminRights renders none/domain/global as None/Domain/Global.
func formatAdminRights(r mailcluster.AdminRights) string {
	switch r {
	case mailcluster.AdminDomain:
		return "Domain"
	case mailcluster.AdminGlobal:
		return "Global"
	}
	return "None"
}

// ceilDiv rounds up, so that a small non-zero quota never reads as 0
// (unlimited).
func ceilDiv(n, d int64) int64 {
	q := n / d
	if n > 0 && n%d != 0 {
		q++
	}
	return q
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}
