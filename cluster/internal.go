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

// InternalClient calls other nodes' internal API.
type InternalClient struct {
	Token string
	// HTTP is the client; nil means one with a 10 s timeout.
	HTTP *http.Client
}

// SendUsage posts a usage report to the primary at baseURL and returns the
// index at which the primary applied it.
func (c *InternalClient) SendUsage(ctx context.Context, baseURL string, r mailcluster.UsageReport) (uint64, error) {
	body, _ := json.Marshal(r)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+"/internal/v1/usage", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cluster: send usage to %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("cluster: send usage to %s: %s: %s", baseURL, resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("cluster: send usage to %s: bad answer: %w", baseURL, err)
	}
	return out.Index, nil
}
