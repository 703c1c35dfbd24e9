package harness

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// AdminUser is the administrator that a new cluster or standalone node
// creates; its password comes from MAILCLUSTER_ADMIN_PASSWORD.
const AdminUser = "admin@localhost"

var (
	healthClient = &http.Client{Timeout: time.Second}
	doClient     = &http.Client{Timeout: 10 * time.Second}
)

// Health is a node's /health answer.
type Health struct {
	Status string `json:"status"`
	Role   string `json:"role"` // primary, secondary, pending, standalone, ...
	Name   string `json:"name"`
	Index  uint64 `json:"index"` // the last applied index of the replicated state
}

// ReadHealth reads base+"/health" whatever its status code, which it
// returns; ok is false when the node does not answer or the body is not
// the JSON of Health. A nil client times out after a second.
func ReadHealth(client *http.Client, base string) (h Health, code int, ok bool) {
	if client == nil {
		client = healthClient
	}
	resp, err := client.Get(base + "/health")
	if err != nil {
		return Health{}, 0, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return Health{}, resp.StatusCode, false
	}
	return h, resp.StatusCode, true
}

// Do sends one HTTP request, with basic auth when user is not empty and a
// Content-Type when contentType is not empty, and returns the status and
// body. A nil client times out after 10 s.
func Do(client *http.Client, method, url, user, pass, contentType, body string) (int, string, error) {
	if client == nil {
		client = doClient
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Eventually polls cond every 5 ms until it holds and returns how long
// that took; not holding within timeout fails the test with what.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// WaitFor polls cond every 5 ms until it holds (true) or timeout passes
// (false).
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
