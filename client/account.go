package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"mailcluster/api"
)

// The answers are the REST API's own JSON types.
type (
	// Domain is a mail domain as the API shows it.
	Domain = api.Domain
	// Account is an account as the API shows it.
	Account = api.Account
	// AccountUsage is the usage summary inside an Account.
	AccountUsage = api.AccountUsage
	// AccountPage is one page of a domain's accounts.
	AccountPage = api.AccountPage
	// Usage is an account's mailbox usage with its quotas.
	Usage = api.Usage
)

// AccountPatch is a change to an account: only the fields that are not
// nil are sent and changed.
type AccountPatch struct {
	// MailboxPath is the account's mailbox directory; only a global
	// administrator may change it, to a path below the mailbox roots.
	MailboxPath *string `json:"mailboxPath,omitempty"`
}

// PageSize is the page size AllAccounts asks for.
const PageSize = 1000

// accountPath returns the path of a domain's accounts, or of one account
// and what lies below it.
func accountPath(domain string, rest ...string) string {
	p := "/api/v1/domains/" + url.PathEscape(domain) + "/accounts"
	for _, s := range rest {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Domains returns the domains the user may see (GET /api/v1/domains).
func (c *Client) Domains(ctx context.Context) ([]Domain, error) {
	var ds struct {
		Domains []Domain `json:"domains"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/domains", nil, &ds); err != nil {
		return nil, err
	}
	return ds.Domains, nil
}

// Accounts returns one page of a domain's accounts (GET
// /api/v1/domains/{domain}/accounts): at most limit (0: the server's
// default), starting at cursor ("" for the first page).
func (c *Client) Accounts(ctx context.Context, domain, cursor string, limit int) (*AccountPage, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("cursor", cursor)
	var page AccountPage
	if err := c.do(ctx, http.MethodGet, accountPath(domain)+"?"+q.Encode(), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllAccounts returns every account of a domain, reading page after page
// of PageSize.
func (c *Client) AllAccounts(ctx context.Context, domain string) ([]Account, error) {
	var out []Account
	cursor := ""
	for {
		page, err := c.Accounts(ctx, domain, cursor, PageSize)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Accounts...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// PatchAccount changes the fields of p that are set (PATCH
// /api/v1/domains/{domain}/accounts/{mailbox}) and returns the account
// as changed. Only the primary accepts it.
func (c *Client) PatchAccount(ctx context.Context, domain, mailbox string, p AccountPatch) (*Account, error) {
	var a Account
	if err := c.do(ctx, http.MethodPatch, accountPath(domain, mailbox), p, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// RecountUsage has the primary count an account's mail on disk and
// publish the result (POST
// /api/v1/domains/{domain}/accounts/{mailbox}/usage/recount).
func (c *Client) RecountUsage(ctx context.Context, domain, mailbox string) (*Usage, error) {
	var u Usage
	if err := c.do(ctx, http.MethodPost, accountPath(domain, mailbox, "usage", "recount"), nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}
