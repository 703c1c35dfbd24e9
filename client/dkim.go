package client

import (
	"context"
	"net/http"

	"mailcluster/api"
)

// DKIMKey is a domain's DKIM key as the API shows it: the TXT record to
// publish, never the private key.
type DKIMKey = api.DKIMKey

// DKIMKey returns a domain's DKIM key (GET /api/v1/domains/{domain}/dkim).
func (c *Client) DKIMKey(ctx context.Context, domain string) (*DKIMKey, error) {
	var k DKIMKey
	if err := c.do(ctx, http.MethodGet, domainPath(domain, "dkim"), nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// CreateDKIMKey generates a DKIM key for a domain under selector,
// replacing its key (PUT /api/v1/domains/{domain}/dkim): algorithm is
// "rsa-sha256" ("" means it) or "ed25519-sha256". Only the primary
// accepts it.
func (c *Client) CreateDKIMKey(ctx context.Context, domain, selector, algorithm string) (*DKIMKey, error) {
	in := map[string]string{"selector": selector}
	if algorithm != "" {
		in["algorithm"] = algorithm
	}
	return c.putDKIMKey(ctx, domain, in)
}

// ImportDKIMKey stores a PEM private key as a domain's DKIM key under
// selector, replacing its key (PUT /api/v1/domains/{domain}/dkim). Only
// the primary accepts it.
func (c *Client) ImportDKIMKey(ctx context.Context, domain, selector, keyPEM string) (*DKIMKey, error) {
	return c.putDKIMKey(ctx, domain, map[string]string{"selector": selector, "privateKey": keyPEM})
}

func (c *Client) putDKIMKey(ctx context.Context, domain string, in map[string]string) (*DKIMKey, error) {
	var k DKIMKey
	if err := c.do(ctx, http.MethodPut, domainPath(domain, "dkim"), in, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// DeleteDKIMKey removes a domain's DKIM key (DELETE
// /api/v1/domains/{domain}/dkim). Only the primary accepts it.
func (c *Client) DeleteDKIMKey(ctx context.Context, domain string) error {
	return c.do(ctx, http.MethodDelete, domainPath(domain, "dkim"), nil, nil)
}
