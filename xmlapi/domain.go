package xmlapi

import (
	"context"
	"strconv"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleDomainList answers GetDomainList: <Domains count="N"> with a
// <Domain id=".."> for every domain the caller may see and, when <Get>
// holds <Users/> (or <All/>), its users as <Users count="N"><User
// id=".."/></Users>.
func (h *Handler) handleDomainList(ctx context.Context, p params, result *etree.Element) error {
	withUsers := p.has("Get/Users") || p.has("Get/All")
	domains, err := h.svc.FindDomains(ctx)
	if err != nil {
		return err
	}
	list := result.CreateElement("Domains")
	for _, d := range domains {
		de := list.CreateElement("Domain")
		de.CreateAttr("id", d.Name)
		if d.Deleting != nil {
			addDeleting(de, d.Deleting) // its users are going: none listed
			continue
		}
		if !withUsers {
			continue
		}
		found, err := h.addAccounts(ctx, de, d.Name, true, false)
		if err != nil {
			return err
		}
		if !found { // deleted since FindDomains
			list.RemoveChild(de)
		}
	}
	list.CreateAttr("count", strconv.Itoa(len(list.ChildElements())))
	return nil
}

// addAccounts appends to parent, from one pass over the accounts of
// domain (page by page), <Users count="N"><User id="mailbox"/></Users>
// when users is set and <Administrators count="N"><Administrator
// id="mailbox" rights="Domain|Global"/></Administrators> (its accounts
// with admin rights) when admins is set; found is false when the domain
// no longer exists.
func (h *Handler) addAccounts(ctx context.Context, parent *etree.Element, domain string, users, admins bool) (found bool, err error) {
	var ue, ae *etree.Element
	if users {
		ue = etree.NewElement("Users")
	}
	if admins {
		ae = etree.NewElement("Administrators")
	}
	cursor := ""
	for {
		page, next, err := h.svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: domain, Limit: 1000, Cursor: cursor})
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, a := range page {
			if ue != nil {
				ue.CreateElement("User").CreateAttr("id", a.Mailbox)
			}
			if ae != nil && a.AdminRights != mailcluster.AdminNone {
				ad := ae.CreateElement("Administrator")
				ad.CreateAttr("id", a.Mailbox)
				ad.CreateAttr("rights", formatAdminRights(a.AdminRights))
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for _, e := range []*etree.Element{ue, ae} {
		if e != nil {
			e.CreateAttr("count", strconv.Itoa(len(e.ChildElements())))
			parent.AddChild(e)
		}
	}
	return true, nil
}

// handleDomainInfo answers GetDomainInfo. Without <Get> (or with <All/>
// in it) the answer has every section; otherwise the sections named in
// <Get>: Details (the domain's fields), Pruning (empty: mailcluster keeps
// no pruning settings), Administrators and Users. Other section names
// are accepted and answered with nothing.
func (h *Handler) handleDomainInfo(ctx context.Context, p params, result *etree.Element) error {
	name, err := p.required("Domain")
	if err != nil {
		return err
	}
	d, err := h.svc.FindDomain(ctx, name)
	if err != nil {
		return err
	}
	get := p.find("Get")
	all := get == nil || get.SelectElement("All") != nil
	want := func(section string) bool { return all || get.SelectElement(section) != nil }
	e := result.CreateElement("Domain")
	e.CreateAttr("id", d.Name)
	if want("Details") {
		addDomainDetails(e, d)
	}
	if want("Pruning") {
		e.CreateElement("Pruning")
	}
	users, admins := want("Users"), want("Administrators")
	if d.Deleting == nil && (users || admins) {
		found, err := h.addAccounts(ctx, e, d.Name, users, admins)
		if err != nil {
			return err
		}
		if !found {
			return mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s does not exist.", d.Name)
		}
	}
	return nil
}

// handleDomainCreate answers CreateDomain with the new domain.
func (h *Handler) handleDomainCreate(ctx context.Context, p params, result *etree.Element) error {
	name, err := p.required("Domain")
	if err != nil {
		return err
	}
	d := &mailcluster.Domain{Name: name}
	upd, err := domainFields(p)
	if err != nil {
		return err
	}
	if upd.Description != nil {
		d.Description = *upd.Description
	}
	if upd.MaxAccounts != nil {
		d.MaxAccounts = *upd.MaxAccounts
	}
	if upd.Postmaster != nil {
		d.Postmaster = *upd.Postmaster
	}
	created, err := h.svc.CreateDomain(ctx, d)
	if err != nil {
		return err
	}
	addDomain(result, created)
	return nil
}

// handleDomainUpdate answers UpdateDomain with the changed domain.
func (h *Handler) handleDomainUpdate(ctx context.Context, p params, result *etree.Element) error {
	name, err := p.required("Domain")
	if err != nil {
		return err
	}
	upd, err := domainFields(p)
	if err != nil {
		return err
	}
	d, err := h.svc.UpdateDomain(ctx, name, upd)
	if err != nil {
		return err
	}
	addDomain(result, d)
	return nil
}

// handleDomainDelete answers DeleteDomain; <Force>Yes</Force> also
// deletes the domain's accounts, however many. The answer comes once the
// domain is gone; a call for a domain being deleted joins that deletion.
func (h *Handler) handleDomainDelete(ctx context.Context, p params, _ *etree.Element) error {
	name, err := p.required("Domain")
	if err != nil {
		return err
	}
	force, err := p.flag("Force")
	if err != nil {
		return err
	}
	return h.svc.DeleteDomain(ctx, name, force != nil && *force)
}

// domainFields decodes the optional <Description>, <MaxAccounts> and
// <Postmaster> (the address of the account that receives mail to
// postmaster@ and abuse@ of the domain; empty: the first global
// administrator).
func domainFields(p params) (mailcluster.DomainUpdate, error) {
	var upd mailcluster.DomainUpdate
	upd.Description = p.str("Description")
	upd.Postmaster = p.str("Postmaster")
	n, err := p.int("MaxAccounts")
	if err != nil {
		return upd, err
	}
	if n != nil {
		if int64(int(*n)) != *n {
			return upd, mailcluster.Errorf(mailcluster.EINVALID, "Parameter MaxAccounts: %d is out of range.", *n)
		}
		m := int(*n)
		upd.MaxAccounts = &m
	}
	return upd, nil
}

// addDomain appends the <Domain id="..."> answer element with the
// domain's fields.
func addDomain(parent *etree.Element, d *mailcluster.Domain) {
	e := parent.CreateElement("Domain")
	e.CreateAttr("id", d.Name)
	addDomainDetails(e, d)
}

// addDomainDetails appends the domain's fields to its <Domain> element.
func addDomainDetails(e *etree.Element, d *mailcluster.Domain) {
	addText(e, "Name", d.Name)
	addText(e, "Description", d.Description)
	addText(e, "MaxAccounts", strconv.Itoa(d.MaxAccounts))
	addText(e, "Postmaster", d.Postmaster)
	addText(e, "AccountCount", strconv.Itoa(d.AccountCount))
	addText(e, "Created", formatTime(d.CreatedAt))
	addText(e, "Updated", formatTime(d.UpdatedAt))
	if d.Deleting != nil {
		addDeleting(e, d.Deleting)
	}
}

// addDeleting appends <Deleting since=".." by=".." accounts=".."/>, the
// mark of a domain being deleted.
func addDeleting(parent *etree.Element, del *mailcluster.DomainDeletion) {
	e := parent.CreateElement("Deleting")
	e.CreateAttr("since", formatTime(del.Since))
	e.CreateAttr("by", del.By)
	e.CreateAttr("accounts", strconv.Itoa(del.Accounts))
}

// formatTime renders a timestamp as RFC 3339 in UTC ("" for the zero time).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
