package cluster

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"mailcluster"
)

// InternalToken derives the bearer token of the internal node-to-node API
// (/internal/v1/) from the cluster secret with HKDF-SHA256; the secret
// itself never travels.
func InternalToken(secret string) string {
	if secret == "" {
		return ""
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "mailcluster internal api v1", 32)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(key)
}

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

// InternalClient calls other nodes' internal API.
type InternalClient struct {
	Token string
	// HTTP is the client; nil means one with a 10 s timeout.
	HTTP *http.Client
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
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(baseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: %s to %s: %w", path, baseURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("cluster: %s to %s: %s: %s", path, baseURL, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("cluster: %s to %s: bad answer: %w", path, baseURL, err)
		}
	}
	return nil
}
