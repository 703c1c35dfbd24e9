package xmlapi

import (
	"context"
	"strconv"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleDomainList answers GetDomainList: the domains the caller may see,
// with their users when <Get> holds <Users/> (or <All/>).
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
		found, err := h.addUsers(ctx, de, d.Name)
		if err != nil {
			return err
		}
		if !found { // deleted since FindDomains
			list.RemoveChild(de)
		}
	}
	return nil
}

// addUsers appends <User id="mailbox"/> for every account of domain, page
// by page; found is false when the domain no longer exists.
func (h *Handler) addUsers(ctx context.Context, parent *etree.Element, domain string) (found bool, err error) {
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
			parent.CreateElement("User").CreateAttr("id", a.Mailbox)
		}
		if next == "" {
			return true, nil
		}
		cursor = next
	}
}

// handleDomainInfo answers GetDomainInfo.
func (h *Handler) handleDomainInfo(ctx context.Context, p params, result *etree.Element) error {
	name, err := p.required("Domain")
	if err != nil {
		return err
	}
	d, err := h.svc.FindDomain(ctx, name)
	if err != nil {
		return err
	}
	addDomain(result, d)
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

// domainFields decodes the optional <Description> and <MaxAccounts>.
func domainFields(p params) (mailcluster.DomainUpdate, error) {
	var upd mailcluster.DomainUpdate
	upd.Description = p.str("Description")
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

// addDomain appends the <Domain id="..."> answer element.
func addDomain(parent *etree.Element, d *mailcluster.Domain) {
	e := parent.CreateElement("Domain")
	e.CreateAttr("id", d.Name)
	addText(e, "Name", d.Name)
	addText(e, "Description", d.Description)
	addText(e, "MaxAccounts", strconv.Itoa(d.MaxAccounts))
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
