package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// apiClient is the CLI's client of a node's REST API, as an administrator
// whose password comes from MAILCLUSTER_ADMIN_PASSWORD.
type apiClient struct {
	base, user, password string
	http                 *http.Client
}

func newAPIClient(url, user string) (*apiClient, error) {
	pw := os.Getenv("MAILCLUSTER_ADMIN_PASSWORD")
	if pw == "" {
		return nil, usagef("set MAILCLUSTER_ADMIN_PASSWORD to the password of %s", user)
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, usagef("--url %q must start with http:// or https://", url)
	}
	return &apiClient{base: strings.TrimSuffix(url, "/"), user: user, password: pw, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// do sends a request and decodes a JSON answer into out (when not nil);
// a problem answer becomes an error carrying its detail.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.password)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var p struct{ Detail string }
		_ = json.Unmarshal(b, &p)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}
