package xmlapi

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"mailcluster"
)

const mib = 1 << 20

// handleUserInfo answers GetUserInfo. <Get> selects sections: <All/> or
// <Details/> (the default when <Get> is absent); other section names are
// accepted and answered with nothing.
func (h *Handler) handleUserInfo(ctx context.Context, p params, result *etree.Element) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	a, err := h.svc.FindAccount(ctx, domain, mailbox)
	if err != nil {
		return err
	}
	get := p.find("Get")
	details := get == nil || get.SelectElement("All") != nil || get.SelectElement("Details") != nil
	addUser(result, a, details)
	return nil
}

// handleUserCreate answers CreateUser with the new account's details.
func (h *Handler) handleUserCreate(ctx context.Context, p params, result *etree.Element) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	f, err := accountFields(p)
	if err != nil {
		return err
	}
	in := mailcluster.AccountCreate{Domain: domain, Mailbox: mailbox}
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
	addUser(result, a, true)
	return nil
}

// handleUserUpdate answers UpdateUser with the changed account's details.
// Only the elements present are changed.
func (h *Handler) handleUserUpdate(ctx context.Context, p params, result *etree.Element) error {
	domain, mailbox, err := accountName(p)
	if err != nil {
		return err
	}
	f, err := accountFields(p)
	if err != nil {
		return err
	}
	a, err := h.svc.UpdateAccount(ctx, domain, mailbox, f)
	if err != nil {
		return err
	}
	addUser(result, a, true)
	return nil
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
		b, err := parseFlag(e.Tag, strings.TrimSpace(textOf(e)))
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

// accountFields decodes the optional elements of <Details>. The password
// is taken as sent (not trimmed); a password hash (a bcrypt hash given
// instead of a password, checked by the service) is trimmed.
func accountFields(p params) (mailcluster.AccountUpdate, error) {
	f := mailcluster.AccountUpdate{
		FullName:     p.str("Details/FullName"),
		FirstName:    p.str("Details/FirstName"),
		LastName:     p.str("Details/LastName"),
		Password:     p.raw("Details/Password"),
		PasswordHash: p.str("Details/PasswordHash"),
		MailboxPath:  p.str("Details/MailDir"),
	}
	var err error
	if f.Frozen, err = p.flag("Details/Frozen"); err != nil {
		return f, err
	}
	if f.Disabled, err = p.flag("Details/Disabled"); err != nil {
		return f, err
	}
	if s := p.str("Details/AdminRights"); s != nil {
		r, err := mailcluster.ParseAdminRights(*s)
		if err != nil {
			return f, mailcluster.Errorf(mailcluster.EINVALID, "Parameter Details/AdminRights: %q is not one of None, Domain, Global.", clip(*s))
		}
		f.AdminRights = &r
	}
	if f.QuotaBytes, err = quotaBytes(p); err != nil {
		return f, err
	}
	if f.QuotaMessages, err = p.int("Details/Quotas/MaxMessageCount"); err != nil {
		return f, err
	}
	if f.SendAs, err = sendAs(p); err != nil {
		return f, err
	}
	return f, nil
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

// quotaBytes decodes MaxDiskSpaceMB (mebibytes) or MaxDiskSpaceBytes.
func quotaBytes(p params) (*int64, error) {
	mb, err := p.int("Details/Quotas/MaxDiskSpaceMB")
	if err != nil {
		return nil, err
	}
	b, err := p.int("Details/Quotas/MaxDiskSpaceBytes")
	if err != nil {
		return nil, err
	}
	switch {
	case mb != nil && b != nil:
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Give Details/Quotas/MaxDiskSpaceMB or MaxDiskSpaceBytes, not both.")
	case mb != nil:
		if *mb > math.MaxInt64/mib || *mb < math.MinInt64/mib {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "Parameter Details/Quotas/MaxDiskSpaceMB: %d is out of range.", *mb)
		}
		n := *mb * mib
		return &n, nil
	}
	return b, nil
}

// addUser appends <User id="mailbox">, with <Details> when asked. The
// password hash is never written.
func addUser(parent *etree.Element, a *mailcluster.Account, details bool) {
	u := parent.CreateElement("User")
	u.CreateAttr("id", a.Mailbox)
	if !details {
		return
	}
	d := u.CreateElement("Details")
	addText(d, "Email", a.Mailbox+"@"+a.Domain)
	addText(d, "FullName", a.FullName)
	addText(d, "FirstName", a.FirstName)
	addText(d, "LastName", a.LastName)
	addText(d, "MailDir", a.MailboxPath)
	addText(d, "Frozen", mailcluster.FormatFlag(a.Frozen))
	addText(d, "Disabled", mailcluster.FormatFlag(a.Disabled))
	addText(d, "AdminRights", formatAdminRights(a.AdminRights))
	sa := d.CreateElement("SendAs")
	for _, addr := range a.SendAs {
		addText(sa, "Address", addr)
	}
	q := d.CreateElement("Quotas")
	addText(q, "MaxDiskSpaceMB", strconv.FormatInt(ceilDiv(a.QuotaBytes, mib), 10))
	addText(q, "MaxDiskSpaceBytes", strconv.FormatInt(a.QuotaBytes, 10))
	addText(q, "MaxMessageCount", strconv.FormatInt(a.QuotaMessages, 10))
	addText(d, "Created", formatTime(a.CreatedAt))
	addText(d, "Updated", formatTime(a.UpdatedAt))
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
