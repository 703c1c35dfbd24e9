package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"mailcluster/api"
)

// The answers of the address resources are the REST API's own JSON types.
type (
	// Alias is an alias as the API shows it.
	Alias = api.Alias
	// AliasPage is one page of a domain's aliases.
	AliasPage = api.AliasPage
)

// domainPath returns the path of a resource of a domain:
// /api/v1/domains/{domain}/{rest...}, each part escaped.
func domainPath(domain string, rest ...string) string {
	p := "/api/v1/domains/" + url.PathEscape(domain)
	for _, s := range rest {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// pageQuery returns path with the query of a paged read: at most limit
// (0: the server's default), starting at cursor ("" for the first page).
func pageQuery(path, cursor string, limit int) string {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("cursor", cursor)
	return path + "?" + q.Encode()
}

// allPages reads page after page with next until a page has no next
// cursor, and returns every item.
func allPages[T any](next func(cursor string) ([]T, string, error)) ([]T, error) {
	var out []T
	cursor := ""
	for {
		items, c, err := next(cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if c == "" {
			return out, nil
		}
		cursor = c
	}
}

// Aliases returns one page of a domain's aliases (GET
// /api/v1/domains/{domain}/aliases), in name order.
func (c *Client) Aliases(ctx context.Context, domain, cursor string, limit int) (*AliasPage, error) {
	var page AliasPage
	if err := c.do(ctx, http.MethodGet, pageQuery(domainPath(domain, "aliases"), cursor, limit), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllAliases returns every alias of a domain, reading pages of PageSize.
func (c *Client) AllAliases(ctx context.Context, domain string) ([]Alias, error) {
	return allPages(func(cursor string) ([]Alias, string, error) {
		p, err := c.Aliases(ctx, domain, cursor, PageSize)
		if err != nil {
			return nil, "", err
		}
		return p.Aliases, p.NextCursor, nil
	})
}

// Alias returns an alias (GET /api/v1/domains/{domain}/aliases/{name}).
func (c *Client) Alias(ctx context.Context, domain, name string) (*Alias, error) {
	var v Alias
	if err := c.do(ctx, http.MethodGet, domainPath(domain, "aliases", name), nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// CreateAlias adds name@domain delivering to target, the full address of
// a local account (POST /api/v1/domains/{domain}/aliases). Only the
// primary accepts it.
func (c *Client) CreateAlias(ctx context.Context, domain, name, target string) (*Alias, error) {
	var a Alias
	in := map[string]string{"name": name, "target": target}
	if err := c.do(ctx, http.MethodPost, domainPath(domain, "aliases"), in, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UpdateAlias points an alias at another account (PATCH
// /api/v1/domains/{domain}/aliases/{name}). Only the primary accepts it.
func (c *Client) UpdateAlias(ctx context.Context, domain, name, target string) (*Alias, error) {
	var a Alias
	if err := c.do(ctx, http.MethodPatch, domainPath(domain, "aliases", name), map[string]string{"target": target}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteAlias removes an alias (DELETE
// /api/v1/domains/{domain}/aliases/{name}). Only the primary accepts it.
func (c *Client) DeleteAlias(ctx context.Context, domain, name string) error {
	return c.do(ctx, http.MethodDelete, domainPath(domain, "aliases", name), nil, nil)
}
