package client

import (
	"context"
	"net/http"

	"mailcluster/api"
)

type (
	// MailingList is a mailing list as the API shows it.
	MailingList = api.MailingList
	// MailingListPage is one page of a domain's mailing lists.
	MailingListPage = api.MailingListPage
	// ListMember is a member of a mailing list: an account of the list's
	// domain or an outside address (Address), or a group of that domain
	// (Group); answers give its Type (account, group, external).
	ListMember = api.ListMember
	// ListMemberPage is one page of a list's members.
	ListMemberPage = api.ListMemberPage
)

// ListCreate is a new mailing list; empty fields take the server's
// defaults (policy members, reply-to sender, no owner, no members).
type ListCreate struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Policy      string       `json:"policy,omitempty"`  // members, anyone or moderated
	ReplyTo     string       `json:"replyTo,omitempty"` // sender or list
	Owner       string       `json:"owner,omitempty"`   // an account's address; required when moderated
	Members     []ListMember `json:"members,omitempty"`
}

// ListPatch is a change to a mailing list: only the fields that are not
// nil or empty are sent and changed.
type ListPatch struct {
	Description   *string      `json:"description,omitempty"`
	Policy        *string      `json:"policy,omitempty"`
	ReplyTo       *string      `json:"replyTo,omitempty"`
	Owner         *string      `json:"owner,omitempty"` // "" removes the owner
	AddMembers    []ListMember `json:"addMembers,omitempty"`
	RemoveMembers []ListMember `json:"removeMembers,omitempty"`
}

// Lists returns one page of a domain's mailing lists (GET
// /api/v1/domains/{domain}/lists), in name order.
func (c *Client) Lists(ctx context.Context, domain, cursor string, limit int) (*MailingListPage, error) {
	var page MailingListPage
	if err := c.do(ctx, http.MethodGet, pageQuery(domainPath(domain, "lists"), cursor, limit), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllLists returns every mailing list of a domain, reading pages of
// PageSize.
func (c *Client) AllLists(ctx context.Context, domain string) ([]MailingList, error) {
	return allPages(func(cursor string) ([]MailingList, string, error) {
		p, err := c.Lists(ctx, domain, cursor, PageSize)
		if err != nil {
			return nil, "", err
		}
		return p.Lists, p.NextCursor, nil
	})
}

// ListMembers returns one page of a list's members (GET
// /api/v1/domains/{domain}/lists/{name}/members).
func (c *Client) ListMembers(ctx context.Context, domain, name, cursor string, limit int) (*ListMemberPage, error) {
	var page ListMemberPage
	if err := c.do(ctx, http.MethodGet, pageQuery(domainPath(domain, "lists", name, "members"), cursor, limit), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllListMembers returns every member of a list, reading pages of
// PageSize.
func (c *Client) AllListMembers(ctx context.Context, domain, name string) ([]ListMember, error) {
	return allPages(func(cursor string) ([]ListMember, string, error) {
		p, err := c.ListMembers(ctx, domain, name, cursor, PageSize)
		if err != nil {
			return nil, "", err
		}
		return p.Members, p.NextCursor, nil
	})
}

// MailingList returns a mailing list, with its member count (GET /api/v1/domains/{domain}/lists/{name}).
func (c *Client) MailingList(ctx context.Context, domain, name string) (*MailingList, error) {
	var v MailingList
	if err := c.do(ctx, http.MethodGet, domainPath(domain, "lists", name), nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// CreateList adds a mailing list to a domain (POST
// /api/v1/domains/{domain}/lists). Only the primary accepts it.
func (c *Client) CreateList(ctx context.Context, domain string, in ListCreate) (*MailingList, error) {
	var l MailingList
	if err := c.do(ctx, http.MethodPost, domainPath(domain, "lists"), in, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// PatchList changes a list and its membership in one transaction (PATCH
// /api/v1/domains/{domain}/lists/{name}). Only the primary accepts it.
func (c *Client) PatchList(ctx context.Context, domain, name string, p ListPatch) (*MailingList, error) {
	var l MailingList
	if err := c.do(ctx, http.MethodPatch, domainPath(domain, "lists", name), p, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// DeleteList removes a mailing list (DELETE
// /api/v1/domains/{domain}/lists/{name}). Only the primary accepts it.
func (c *Client) DeleteList(ctx context.Context, domain, name string) error {
	return c.do(ctx, http.MethodDelete, domainPath(domain, "lists", name), nil, nil)
}
