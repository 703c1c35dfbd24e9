package cluster

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"mailcluster"
	"mailcluster/internal/nodeauth"
)

// ScreeningKey derives the key that hashes failed passwords (so that the
// same wrong password counts once on every node) from the cluster secret.
func ScreeningKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "mailcluster screening v1", 32)
	if err != nil {
		return nil
	}
	return key
}

// InternalClient calls other nodes' internal API (/internal/v1/). Every
// request is signed (package nodeauth); with TLS set, a node that
// advertises its internal API over HTTPS is called there.
type InternalClient struct {
	// Signer signs every request: the key derived from the cluster secret
	// (nodeauth.Key) and this node's name. Without a key every call fails.
	Signer *nodeauth.Signer
	// HTTP is the client of plain HTTP calls; nil means one with a 10 s
	// timeout.
	HTTP *http.Client
	// TLS, when set, routes calls over HTTPS to the nodes that serve
	// their internal API there; nil calls every node over plain HTTP.
	TLS *InternalTLS
}

// SendUsage posts a usage report to the primary at baseURL and returns the
// index at which the primary applied it.
func (c *InternalClient) SendUsage(ctx context.Context, baseURL string, r mailcluster.UsageReport) (uint64, error) {
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := c.post(ctx, baseURL, "/internal/v1/usage", r, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// SendFailures posts failed logins to the primary at baseURL.
func (c *InternalClient) SendFailures(ctx context.Context, baseURL string, fs []mailcluster.LoginFailure) error {
	return c.post(ctx, baseURL, "/internal/v1/screening/failures", map[string]any{"failures": fs}, nil)
}

func (c *InternalClient) post(ctx context.Context, baseURL, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, baseURL, path, in, out)
}

func (c *InternalClient) do(ctx context.Context, method, baseURL, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", path, err)
		}
		body = b
	}
	base, hc := baseURL, c.HTTP
	if c.TLS != nil {
		if u, tc := c.TLS.route(ctx, baseURL); tc != nil {
			base, hc = u, tc
		}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.sign(req, body); err != nil {
		return fmt.Errorf("cluster: %s to %s: %w", path, base, err)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: %s to %s: %w", path, base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("cluster: %s to %s: %s: %s", path, base, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("cluster: %s to %s: bad answer: %w", path, base, err)
		}
	}
	return nil
}

// sign signs req, whose whole body is body, for the internal API: every
// call to /internal/v1/ goes through here.
func (c *InternalClient) sign(req *http.Request, body []byte) error {
	if c.Signer == nil {
		return errors.New("no signing key (is the cluster secret set?)")
	}
	return c.Signer.Sign(req, body)
}
