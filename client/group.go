package client

import (
	"context"
	"net/http"

	"mailcluster/api"
)

type (
	// Group is a group as the API shows it.
	Group = api.Group
	// GroupPage is one page of a domain's groups.
	GroupPage = api.GroupPage
	// GroupMemberPage is one page of a group's members (full addresses).
	GroupMemberPage = api.GroupMemberPage
)

// GroupCreate is a new group. Members are mailboxes or full addresses of
// accounts of the group's domain.
type GroupCreate struct {
	Name          string   `json:"name"`
	Description   string   `json:"description,omitempty"`
	QuotaBytes    int64    `json:"quotaBytes,omitempty"`
	QuotaMessages int64    `json:"quotaMessages,omitempty"`
	Members       []string `json:"members,omitempty"`
}

// GroupPatch is a change to a group: only the fields that are not nil or
// empty are sent and changed.
type GroupPatch struct {
	Description   *string  `json:"description,omitempty"`
	QuotaBytes    *int64   `json:"quotaBytes,omitempty"`
	QuotaMessages *int64   `json:"quotaMessages,omitempty"`
	AddMembers    []string `json:"addMembers,omitempty"`
	RemoveMembers []string `json:"removeMembers,omitempty"`
}

// Groups returns one page of a domain's groups (GET
// /api/v1/domains/{domain}/groups), in name order.
func (c *Client) Groups(ctx context.Context, domain, cursor string, limit int) (*GroupPage, error) {
	var page GroupPage
	if err := c.do(ctx, http.MethodGet, pageQuery(domainPath(domain, "groups"), cursor, limit), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllGroups returns every group of a domain, reading pages of PageSize.
func (c *Client) AllGroups(ctx context.Context, domain string) ([]Group, error) {
	return allPages(func(cursor string) ([]Group, string, error) {
		p, err := c.Groups(ctx, domain, cursor, PageSize)
		if err != nil {
			return nil, "", err
		}
		return p.Groups, p.NextCursor, nil
	})
}

// GroupMembers returns one page of a group's members (GET
// /api/v1/domains/{domain}/groups/{name}/members).
func (c *Client) GroupMembers(ctx context.Context, domain, name, cursor string, limit int) (*GroupMemberPage, error) {
	var page GroupMemberPage
	if err := c.do(ctx, http.MethodGet, pageQuery(domainPath(domain, "groups", name, "members"), cursor, limit), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllGroupMembers returns the addresses of every member of a group,
// reading pages of PageSize.
func (c *Client) AllGroupMembers(ctx context.Context, domain, name string) ([]string, error) {
	return allPages(func(cursor string) ([]string, string, error) {
		p, err := c.GroupMembers(ctx, domain, name, cursor, PageSize)
		if err != nil {
			return nil, "", err
		}
		return p.Members, p.NextCursor, nil
	})
}

// Group returns a group, with its member count (GET /api/v1/domains/{domain}/groups/{name}).
func (c *Client) Group(ctx context.Context, domain, name string) (*Group, error) {
	var v Group
	if err := c.do(ctx, http.MethodGet, domainPath(domain, "groups", name), nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// CreateGroup adds a group to a domain (POST
// /api/v1/domains/{domain}/groups). Only the primary accepts it.
func (c *Client) CreateGroup(ctx context.Context, domain string, in GroupCreate) (*Group, error) {
	var g Group
	if err := c.do(ctx, http.MethodPost, domainPath(domain, "groups"), in, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// PatchGroup changes a group and its membership in one transaction
// (PATCH /api/v1/domains/{domain}/groups/{name}). Only the primary
// accepts it.
func (c *Client) PatchGroup(ctx context.Context, domain, name string, p GroupPatch) (*Group, error) {
	var g Group
	if err := c.do(ctx, http.MethodPatch, domainPath(domain, "groups", name), p, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// DeleteGroup removes a group (DELETE
// /api/v1/domains/{domain}/groups/{name}). Only the primary accepts it.
func (c *Client) DeleteGroup(ctx context.Context, domain, name string) error {
	return c.do(ctx, http.MethodDelete, domainPath(domain, "groups", name), nil, nil)
}
