package client_test

import (
	"context"
	"net/http"
	"testing"

	"mailcluster/client"
)

func TestDKIMKey(t *testing.T) {
	key := `{"domain":"example.com","selector":"s1","algorithm":"ed25519-sha256","created":"2026-12-02T10:00:00Z",` +
		`"dnsName":"s1._domainkey.example.com","dnsValue":"v=DKIM1; k=ed25519; p=AAAA"}`
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/domains/example.com/dkim":    {body: key},
		"PUT /api/v1/domains/example.com/dkim":    {status: http.StatusCreated, body: key},
		"DELETE /api/v1/domains/example.com/dkim": {status: http.StatusNoContent},
		"GET /api/v1/domains/none.example/dkim": {status: http.StatusNotFound, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:not-found","title":"Not found","status":404,"detail":"Domain none.example has no DKIM key."}`},
	})
	ctx := context.Background()
	k, err := c.DKIMKey(ctx, "example.com")
	if err != nil || k.DNSName != "s1._domainkey.example.com" || k.DNSValue != "v=DKIM1; k=ed25519; p=AAAA" || k.Created.IsZero() {
		t.Fatalf("DKIMKey = %+v, %v", k, err)
	}
	if _, err := c.CreateDKIMKey(ctx, "example.com", "s1", "ed25519-sha256"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportDKIMKey(ctx, "example.com", "s1", "PEM"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDKIMKey(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DKIMKey(ctx, "none.example"); client.ErrorCode(err) != "not_found" {
		t.Fatalf("missing key: %v (%s)", err, client.ErrorCode(err))
	}
	want := []string{`{"algorithm":"ed25519-sha256","selector":"s1"}`, `{"privateKey":"PEM","selector":"s1"}`}
	if got := []string{f.requests[1].Body, f.requests[2].Body}; got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("bodies %q, want %q", got, want)
	}
}
