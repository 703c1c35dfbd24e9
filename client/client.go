// Package client is a typed client of a node's REST management API
// (/api/v1, see openapi/openapi.yaml), used by the command line tools
// (status, recount-usage, migrate-mailboxes). It authenticates with HTTP
// Basic as an administrator, sends and decodes the API's JSON shapes, and
// returns a problem answer (RFC 9457, application/problem+json) as an
// *Error whose Code tells, for example, a read-only node from a missing
// object.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"mailcluster"
)

// DefaultTimeout bounds one request when Options.HTTPClient is nil.
const DefaultTimeout = 60 * time.Second

// maxAnswer is the largest answer body read.
const maxAnswer = 16 << 20

// Options are the optional settings of a Client. The zero value is
// ready to use.
type Options struct {
	// HTTPClient sends the requests; nil: a client with DefaultTimeout.
	HTTPClient *http.Client
}

// Client calls one node's REST API as one user.
type Client struct {
	base, user, password string
	http                 *http.Client
}

// New returns a client of the node whose API is at baseURL
// ("http://host:port" or "https://..."; a trailing slash is dropped),
// authenticating as user (a full address) with password. It fails only
// when baseURL does not start with http:// or https://.
func New(baseURL, user, password string, opts Options) (*Client, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("client: base URL %q must start with http:// or https://", baseURL)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), user: user, password: password, http: hc}, nil
}

// BaseURL returns the node's API URL the client calls, without a
// trailing slash.
func (c *Client) BaseURL() string { return c.base }

// ProblemTypePrefix starts the type URI of every problem document of the
// API; the rest is the error code with '_' written as '-'.
const ProblemTypePrefix = "urn:mailcluster:problem:"

// Error is an answer of the API with a status of 300 or more. When the
// answer is a problem document its fields are filled in; otherwise only
// the request and Status are.
type Error struct {
	Method string // the request's method
	Path   string // the request's path and query
	Status int    // the HTTP status
	// Type is the problem type URI (ProblemTypePrefix + code).
	Type  string
	Title string
	// Detail is the server's explanation, meant for people.
	Detail string
	// Primary is, for a read-only answer, the primary's API URL when the
	// node knows it.
	Primary string
}

// Error returns "client: METHOD PATH: STATUS TEXT: detail".
func (e *Error) Error() string {
	return fmt.Sprintf("client: %s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Detail)
}

// Code returns the API's error code of a problem answer (a
// mailcluster.E* constant such as mailcluster.EREADONLY), or "" when the
// answer was no problem document of the API.
func (e *Error) Code() string {
	code, ok := strings.CutPrefix(e.Type, ProblemTypePrefix)
	if !ok {
		return ""
	}
	return strings.ReplaceAll(code, "-", "_")
}

// ErrorCode returns the API error code carried by err (see Error.Code),
// or "" when err is no *Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return ""
}

// do sends a request with in as its JSON body (when not nil) and decodes
// a JSON answer into out (when not nil). An answer with a status of 300
// or more becomes an *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(c.user, c.password)
	req.Header.Set("Accept", "application/json, application/problem+json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("client: %s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode}
		var p struct {
			Type, Title, Detail, Primary string
		}
		if json.Unmarshal(b, &p) == nil {
			e.Type, e.Title, e.Detail, e.Primary = p.Type, p.Title, p.Detail, p.Primary
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("client: %s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}

// Node returns the node's own view of itself (GET /api/v1/node).
func (c *Client) Node(ctx context.Context) (*mailcluster.NodeInfo, error) {
	var n mailcluster.NodeInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/node", nil, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// ClusterStatus returns every node as the answering node sees the
// cluster (GET /api/v1/cluster); any node answers.
func (c *Client) ClusterStatus(ctx context.Context) (*mailcluster.ClusterStatus, error) {
	var st mailcluster.ClusterStatus
	if err := c.do(ctx, http.MethodGet, "/api/v1/cluster", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// settingPath returns the path of a settings file, section or key.
func settingPath(parts ...string) string {
	p := "/api/v1/settings"
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Settings returns one settings file (GET /api/v1/settings/{file}), for
// example mailcluster.MainSettingsFile.
func (c *Client) Settings(ctx context.Context, file string) (*mailcluster.SettingsFile, error) {
	var f mailcluster.SettingsFile
	if err := c.do(ctx, http.MethodGet, settingPath(file), nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// PutSetting sets one key (PUT /api/v1/settings/{file}/{section}/{key}).
// Only the primary accepts it: a secondary answers with EREADONLY.
func (c *Client) PutSetting(ctx context.Context, file, section, key, value string) error {
	return c.do(ctx, http.MethodPut, settingPath(file, section, key), map[string]string{"value": value}, nil)
}

// DeleteSetting removes one key (DELETE
// /api/v1/settings/{file}/{section}/{key}). Only the primary accepts it.
func (c *Client) DeleteSetting(ctx context.Context, file, section, key string) error {
	return c.do(ctx, http.MethodDelete, settingPath(file, section, key), nil, nil)
}
