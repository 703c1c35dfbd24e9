package api_test

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/internal/nodeauth"
	"mailcluster/mailstore"
)

var _ api.MailStore = (*mailstore.Store)(nil)

// traceHeader is what every test delivery prepends.
const traceHeader = "Return-Path: <a@b.c>\r\n"

// Message is the JSON form of a message summary.
type Message struct {
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
	From     string    `json:"from"`
	Subject  string    `json:"subject"`
}

// MessageList is one page of messages.
type MessageList struct {
	Messages   []Message `json:"messages"`
	NextCursor string    `json:"nextCursor"`
}

// Usage is the JSON form of an account's usage.
type Usage struct {
	Bytes         int64      `json:"bytes"`
	Messages      int64      `json:"messages"`
	UpdatedAt     *time.Time `json:"updatedAt"`
	RecountedAt   *time.Time `json:"recountedAt"`
	QuotaBytes    int64      `json:"quotaBytes"`
	QuotaMessages int64      `json:"quotaMessages"`
}

const aliceBase = "/api/v1/domains/example.com/accounts/alice"

// mustOpenMailEnv starts a node with domain example.com and account alice.
func mustOpenMailEnv(tb testing.TB, opts ...EnvOption) *Env {
	tb.Helper()
	env := MustOpenEnv(tb, opts...)
	env.Admin.MustCreateDomain(tb, "example.com")
	env.Admin.MustCreateAccount(tb, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1",
		"quotaBytes": 1 << 20, "quotaMessages": 100})
	return env
}

// MustDeliver delivers one message to address through the mail store and
// returns the text the mailbox then holds.
func (e *Env) MustDeliver(tb testing.TB, address, subject string) string {
	tb.Helper()
	acc, err := mustLocal(e.Svc).LookupAccount(address)
	if err != nil {
		tb.Fatal(err)
	}
	body := "From: x@y.z\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	if err := e.Mail.Deliver(context.Background(), []*mailcluster.Account{acc}, []byte(traceHeader), strings.NewReader(body), 1<<20); err != nil {
		tb.Fatal(err)
	}
	return traceHeader + body
}

// listAll follows the cursor through every page of size limit.
func listAll(tb testing.TB, c *Client, base string, limit int) (all []Message, pages int) {
	tb.Helper()
	cursor := ""
	for {
		path := base + "/messages?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page MessageList
		c.Get(tb, path).Expect(tb, http.StatusOK).JSON(tb, &page)
		pages++
		all = append(all, page.Messages...)
		if page.NextCursor == "" {
			return all, pages
		}
		if pages > 100 {
			tb.Fatal("paging does not end")
		}
		cursor = page.NextCursor
	}
}

// waitUsage polls the usage resource until it shows want messages and
// bytes; the outbox applies changes asynchronously.
func waitUsage(tb testing.TB, c *Client, base string, bytes, messages int64) Usage {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var u Usage
		c.Get(tb, base+"/usage").Expect(tb, http.StatusOK).JSON(tb, &u)
		if u.Bytes == bytes && u.Messages == messages {
			return u
		}
		if time.Now().After(deadline) {
			tb.Fatalf("usage = %d bytes, %d messages; want %d, %d", u.Bytes, u.Messages, bytes, messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMessageList(t *testing.T) {
	env := mustOpenMailEnv(t)
	c := env.Admin
	want := map[string]string{} // subject -> content
	for i := range 5 {
		subject := fmt.Sprintf("hi %d", i)
		want[subject] = env.MustDeliver(t, "alice@example.com", subject)
	}

	t.Run("Pages", func(t *testing.T) {
		all, pages := listAll(t, c, aliceBase, 2)
		if pages != 3 || len(all) != 5 {
			t.Fatalf("%d messages on %d pages, want 5 on 3", len(all), pages)
		}
		seen := map[string]bool{}
		for i, m := range all {
			if i > 0 && m.ID <= all[i-1].ID {
				t.Errorf("ids out of order: %q after %q", m.ID, all[i-1].ID)
			}
			content, ok := want[m.Subject]
			if !ok || seen[m.Subject] {
				t.Errorf("unexpected or repeated message %+v", m)
				continue
			}
			seen[m.Subject] = true
			if m.From != "x@y.z" || m.Size != int64(len(content)) || m.Received.IsZero() {
				t.Errorf("message %+v, want from x@y.z and size %d", m, len(content))
			}
		}
	})
	t.Run("OnePage", func(t *testing.T) {
		var page MessageList
		c.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &page)
		if len(page.Messages) != 5 || page.NextCursor != "" {
			t.Errorf("%d messages, next %q", len(page.Messages), page.NextCursor)
		}
	})
	t.Run("EmptyMailbox", func(t *testing.T) {
		var page MessageList
		c.Get(t, "/api/v1/domains/localhost/accounts/admin/messages").Expect(t, http.StatusOK).JSON(t, &page)
		if page.Messages == nil || len(page.Messages) != 0 || page.NextCursor != "" {
			t.Errorf("page = %+v", page)
		}
	})
	t.Run("ErrLimit", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=1001", "limit=ten"} {
			c.Do(t, Request{Method: http.MethodGet, Path: aliceBase + "/messages?" + q, Invalid: true}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
	})
	t.Run("ErrCursorTooLong", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodGet, Path: aliceBase + "/messages?cursor=" + strings.Repeat("1", 256), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/example.com/accounts/nobody/messages").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/nope.example/accounts/alice/messages").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		c.Anonymous().Get(t, aliceBase+"/messages").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
}

func TestMessageGetDelete(t *testing.T) {
	env := mustOpenMailEnv(t)
	c := env.Admin
	content := env.MustDeliver(t, "alice@example.com", "hello")
	env.MustDeliver(t, "alice@example.com", "other")
	var page MessageList
	c.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &page)
	var id string
	for _, m := range page.Messages {
		if m.Subject == "hello" {
			id = m.ID
		}
	}
	if id == "" {
		t.Fatalf("message not listed: %+v", page)
	}
	msgPath := aliceBase + "/messages/" + id

	t.Run("Get", func(t *testing.T) {
		res := c.Get(t, msgPath).Expect(t, http.StatusOK)
		if string(res.Body) != content {
			t.Errorf("body = %q, want %q", res.Body, content)
		}
		if ct := res.Header.Get("Content-Type"); ct != "message/rfc822" {
			t.Errorf("Content-Type = %q", ct)
		}
		if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(content)) {
			t.Errorf("Content-Length = %q, want %d", cl, len(content))
		}
	})
	t.Run("ErrBadID", func(t *testing.T) {
		for _, bad := range []string{"not-an-id", "..%2F..%2Fetc%2Fpasswd", "1.x%2F..,S=1", ".."} {
			c.Get(t, aliceBase+"/messages/"+bad).ExpectProblem(t, http.StatusBadRequest, "invalid")
			c.Delete(t, aliceBase+"/messages/"+bad).ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
		c.Do(t, Request{Method: http.MethodGet, Path: aliceBase + "/messages/" + strings.Repeat("1", 300), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, aliceBase+"/messages/1700000000.M1P1Q1Rabc.host,S=10").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Get(t, "/api/v1/domains/example.com/accounts/nobody/messages/"+id).ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, msgPath).Expect(t, http.StatusNoContent)
		c.Get(t, msgPath).ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, msgPath).ExpectProblem(t, http.StatusNotFound, "not-found")
		var after MessageList
		c.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &after)
		if len(after.Messages) != 1 || after.Messages[0].Subject != "other" {
			t.Errorf("left: %+v", after.Messages)
		}
	})
}

// TestMailDomainAdmin checks that a domain administrator reaches the mail
// of its own domain only.
func TestMailDomainAdmin(t *testing.T) {
	env := mustOpenMailEnv(t)
	env.Admin.MustCreateDomain(t, "other.example")
	env.Admin.MustCreateAccount(t, "other.example", map[string]any{"mailbox": "boss", "password": "boss-pass-1", "adminRights": "domain"})
	boss := env.Admin.As("boss@other.example", "boss-pass-1")
	env.MustDeliver(t, "alice@example.com", "private")
	var page MessageList
	env.Admin.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &page)
	msgPath := aliceBase + "/messages/" + page.Messages[0].ID

	t.Run("OwnDomain", func(t *testing.T) {
		boss.Get(t, "/api/v1/domains/other.example/accounts/boss/messages").Expect(t, http.StatusOK)
		boss.Get(t, "/api/v1/domains/other.example/accounts/boss/usage").Expect(t, http.StatusOK)
		boss.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains/other.example/accounts/boss/usage/recount"}).
			Expect(t, http.StatusOK)
	})
	for _, r := range []Request{
		{Method: http.MethodGet, Path: aliceBase + "/messages"},
		{Method: http.MethodGet, Path: msgPath},
		{Method: http.MethodDelete, Path: msgPath},
		{Method: http.MethodGet, Path: aliceBase + "/usage"},
		{Method: http.MethodPost, Path: aliceBase + "/usage/recount"},
	} {
		t.Run("Err"+r.Method+" "+strings.TrimPrefix(r.Path, aliceBase), func(t *testing.T) {
			res := boss.Do(t, r).Expect(t, http.StatusForbidden)
			if p := res.Problem(t); p.Type != api.ProblemTypePrefix+"forbidden" {
				t.Errorf("type %q", p.Type)
			}
			if strings.Contains(string(res.Body), "private") {
				t.Error("the answer shows the message")
			}
		})
	}
	t.Run("NothingChanged", func(t *testing.T) {
		env.Admin.Get(t, msgPath).Expect(t, http.StatusOK)
	})
}

func TestUsage(t *testing.T) {
	env := mustOpenMailEnv(t)
	c := env.Admin

	t.Run("Empty", func(t *testing.T) {
		var u Usage
		c.Get(t, aliceBase+"/usage").Expect(t, http.StatusOK).JSON(t, &u)
		if u.Bytes != 0 || u.Messages != 0 || u.UpdatedAt != nil || u.RecountedAt != nil ||
			u.QuotaBytes != 1<<20 || u.QuotaMessages != 100 {
			t.Errorf("usage = %+v", u)
		}
	})
	var total int64
	for i := range 3 {
		total += int64(len(env.MustDeliver(t, "alice@example.com", fmt.Sprintf("m%d", i))))
	}
	t.Run("AfterDeliveries", func(t *testing.T) {
		u := waitUsage(t, c, aliceBase, total, 3)
		if u.UpdatedAt == nil || u.RecountedAt != nil {
			t.Errorf("usage = %+v", u)
		}
		var a Account
		c.Get(t, aliceBase).Expect(t, http.StatusOK).JSON(t, &a)
		if a.Usage.Bytes != total || a.Usage.Messages != 3 {
			t.Errorf("account usage = %+v", a.Usage)
		}
		var l struct{ Accounts []Account }
		c.Get(t, "/api/v1/domains/example.com/accounts").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Accounts) != 1 || l.Accounts[0].Usage.Messages != 3 {
			t.Errorf("accounts = %+v", l.Accounts)
		}
	})
	var page MessageList
	c.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &page)
	t.Run("AfterDelete", func(t *testing.T) {
		c.Delete(t, aliceBase+"/messages/"+page.Messages[0].ID).Expect(t, http.StatusNoContent)
		total -= page.Messages[0].Size
		waitUsage(t, c, aliceBase, total, 2)
	})
	t.Run("Recount", func(t *testing.T) {
		acc, err := mustLocal(env.Svc).LookupAccount("alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		gone := page.Messages[1]
		if err := os.Remove(filepath.Join(acc.MailboxPath, "new", gone.ID)); err != nil {
			t.Fatal(err)
		}
		var before Usage
		c.Get(t, aliceBase+"/usage").Expect(t, http.StatusOK).JSON(t, &before)
		if before.Messages != 2 {
			t.Fatalf("usage noticed the removal by itself: %+v", before)
		}
		start := time.Now().Add(-time.Second)
		var u Usage
		c.Do(t, Request{Method: http.MethodPost, Path: aliceBase + "/usage/recount"}).Expect(t, http.StatusOK).JSON(t, &u)
		total -= gone.Size
		if u.Bytes != total || u.Messages != 1 || u.RecountedAt == nil || u.RecountedAt.Before(start) ||
			u.UpdatedAt == nil || u.UpdatedAt.Before(start) || u.QuotaMessages != 100 {
			t.Errorf("recount = %+v, want %d bytes, 1 message", u, total)
		}
		after := waitUsage(t, c, aliceBase, total, 1)
		if after.RecountedAt == nil || !after.RecountedAt.Equal(*u.RecountedAt) {
			t.Errorf("published usage = %+v", after)
		}
	})
	t.Run("DeliveryAfterRecount", func(t *testing.T) {
		total += int64(len(env.MustDeliver(t, "alice@example.com", "late")))
		waitUsage(t, c, aliceBase, total, 2)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Get(t, "/api/v1/domains/example.com/accounts/nobody/usage").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/domains/example.com/accounts/nobody/usage/recount"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
	})
}

// usageReport is a one-delta report for alice.
func usageReport(node, epoch string, seqs ...uint64) mailcluster.UsageReport {
	r := mailcluster.UsageReport{Node: node, Epoch: epoch}
	for _, s := range seqs {
		r.Deltas = append(r.Deltas, mailcluster.UsageDelta{Seq: s, Domain: "example.com", Mailbox: "alice",
			Bytes: 100, Messages: 1, At: time.Now().UTC()})
	}
	return r
}

// postReport sends a report to the internal API with the given
// Authorization header ("" for none).
// postReport posts r to /internal/v1/usage, signed as another node when
// signed is set, else with the given header (nil: none).
func postReport(tb testing.TB, c *Client, signed bool, h http.Header, r any, invalid bool) *Response {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return c.Do(tb, Request{Method: http.MethodPost, Path: "/internal/v1/usage", Body: b, Invalid: invalid, Signed: signed, Header: h})
}

func TestInternalUsage(t *testing.T) {
	env := mustOpenMailEnv(t)
	anon := env.Admin.Anonymous()
	const signed = true

	expect401 := func(t *testing.T, res *Response) {
		t.Helper()
		res.ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		if got := res.Header.Get("WWW-Authenticate"); got != `MC-HMAC-SHA256 realm="mailcluster-internal"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	}
	report := usageReport("node9", "e1", 1)
	body, _ := json.Marshal(report)
	auth := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	t.Run("ErrUnsigned", func(t *testing.T) {
		expect401(t, postReport(t, anon, false, nil, report, false))
	})
	t.Run("ErrBearer", func(t *testing.T) {
		// The token of the former bearer scheme, and the signing key itself.
		old, err := hkdf.Key(sha256.New, []byte("test-cluster-secret"), nil, "mailcluster internal api v1", 32)
		if err != nil {
			t.Fatal(err)
		}
		expect401(t, postReport(t, anon, false, auth("Bearer "+hex.EncodeToString(old)), report, false))
		expect401(t, postReport(t, anon, false, auth("Bearer "+hex.EncodeToString(internalKey)), report, false))
		expect401(t, postReport(t, anon, false, auth("Basic "+hex.EncodeToString(internalKey)), report, false))
	})
	t.Run("ErrWrongKey", func(t *testing.T) {
		other := &nodeauth.Signer{Key: nodeauth.Key("another-cluster-secret"), Node: "node3"}
		expect401(t, postReport(t, anon, false, signedHeader(t, other, http.MethodPost, "/internal/v1/usage", body), report, false))
	})
	t.Run("ErrOtherBody", func(t *testing.T) {
		h := signedHeader(t, peerSigner, http.MethodPost, "/internal/v1/usage", body)
		expect401(t, postReport(t, anon, false, h, usageReport("node9", "e1", 1, 2), false))
	})
	t.Run("ErrAdminCredentials", func(t *testing.T) {
		expect401(t, postReport(t, env.Admin, false, nil, report, false))
	})
	t.Run("NothingApplied", func(t *testing.T) {
		waitUsage(t, env.Admin, aliceBase, 0, 0)
	})
	var first uint64
	t.Run("OK", func(t *testing.T) {
		var out struct{ Index uint64 }
		postReport(t, anon, signed, nil, usageReport("node9", "e1", 1, 2), false).Expect(t, http.StatusOK).JSON(t, &out)
		if out.Index == 0 {
			t.Error("index 0")
		}
		first = out.Index
		waitUsage(t, env.Admin, aliceBase, 200, 2)
	})
	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		r := usageReport("node9", "e1", 3)
		b, _ := json.Marshal(r)
		h := signedHeader(t, peerSigner, http.MethodPost, "/internal/v1/usage", b)
		h.Set("Authorization", strings.ToLower(h.Get("Authorization")))
		postReport(t, anon, false, h, r, false).Expect(t, http.StatusOK)
		waitUsage(t, env.Admin, aliceBase, 300, 3)
	})
	t.Run("ErrRequestReplayed", func(t *testing.T) {
		r := usageReport("node8", "e1", 1)
		b, _ := json.Marshal(r)
		h := signedHeader(t, peerSigner, http.MethodPost, "/internal/v1/usage", b)
		postReport(t, anon, false, h, r, false).Expect(t, http.StatusOK)
		waitUsage(t, env.Admin, aliceBase, 400, 4)
		expect401(t, postReport(t, anon, false, h, r, false))
	})
	t.Run("ReplayNotCounted", func(t *testing.T) {
		var out struct{ Index uint64 }
		postReport(t, anon, signed, nil, usageReport("node9", "e1", 1, 2), false).Expect(t, http.StatusOK).JSON(t, &out)
		if out.Index < first {
			t.Errorf("index %d went back from %d", out.Index, first)
		}
		postReport(t, anon, signed, nil, usageReport("node9", "e1", 1, 2, 3), false).Expect(t, http.StatusOK)
		waitUsage(t, env.Admin, aliceBase, 400, 4)
	})
	t.Run("PartlyNew", func(t *testing.T) {
		postReport(t, anon, signed, nil, usageReport("node9", "e1", 3, 4), false).Expect(t, http.StatusOK)
		waitUsage(t, env.Admin, aliceBase, 500, 5)
	})
	t.Run("NewEpoch", func(t *testing.T) {
		postReport(t, anon, signed, nil, usageReport("node9", "e2", 1), false).Expect(t, http.StatusOK)
		waitUsage(t, env.Admin, aliceBase, 600, 6)
	})
	t.Run("Empty", func(t *testing.T) {
		var out struct{ Index uint64 }
		postReport(t, anon, signed, nil, mailcluster.UsageReport{Node: "node9", Epoch: "e2", Deltas: []mailcluster.UsageDelta{}}, false).
			Expect(t, http.StatusOK).JSON(t, &out)
		if out.Index == 0 {
			t.Error("index 0")
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		postReport(t, anon, signed, nil, usageReport("bad node!", "e1", 5), false).ExpectProblem(t, http.StatusBadRequest, "invalid")
		postReport(t, anon, signed, nil, usageReport("node9", "e1", 0), true).ExpectProblem(t, http.StatusBadRequest, "invalid")
		postReport(t, anon, signed, nil, usageReport("node9", "", 5), false).ExpectProblem(t, http.StatusBadRequest, "invalid")
		postReport(t, anon, signed, nil, map[string]any{"node": "node9", "epoch": "e1", "deltas": []any{}, "extra": 1}, true).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		anon.Do(t, Request{Method: http.MethodPost, Path: "/internal/v1/usage", Body: []byte(`{"node":`), Invalid: true,
			Signed: true}).ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrContentType", func(t *testing.T) {
		anon.Do(t, Request{Method: http.MethodPost, Path: "/internal/v1/usage", Body: []byte(`node=node9`),
			ContentType: "application/x-www-form-urlencoded", Invalid: true, Signed: true}).
			ExpectProblem(t, http.StatusUnsupportedMediaType, "unsupported-media-type")
	})
	t.Run("ErrTooManyDeltas", func(t *testing.T) {
		seqs := make([]uint64, mailcluster.MaxReportDeltas+1)
		for i := range seqs {
			seqs[i] = uint64(100 + i)
		}
		postReport(t, anon, signed, nil, usageReport("node9", "e2", seqs...), true).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
	})
	t.Run("ErrMethod", func(t *testing.T) {
		anon.Get(t, "/internal/v1/usage").ExpectProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
	})
	t.Run("NothingMoreApplied", func(t *testing.T) {
		waitUsage(t, env.Admin, aliceBase, 600, 6)
	})
	t.Run("ErrBodyTooLarge", func(t *testing.T) {
		small := mustOpenMailEnv(t, WithBodyLimit(1024))
		seqs := make([]uint64, 20)
		for i := range seqs {
			seqs[i] = uint64(1 + i)
		}
		r := usageReport("node9", "e1", seqs...)
		b, _ := json.Marshal(r)
		small.Admin.Anonymous().Do(t, Request{Method: http.MethodPost, Path: "/internal/v1/usage", Body: b, Chunked: true,
			Signed: true}).ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
		waitUsage(t, small.Admin, aliceBase, 0, 0)
	})
	t.Run("ErrNoKeyConfigured", func(t *testing.T) {
		off := mustOpenMailEnv(t, WithoutInternalKey())
		expect401(t, postReport(t, off.Admin.Anonymous(), signed, nil, report, false))
		expect401(t, postReport(t, off.Admin.Anonymous(), false, auth("Bearer "), report, false))
		waitUsage(t, off.Admin, aliceBase, 0, 0)
	})
	t.Run("NoSecretLogged", func(t *testing.T) {
		h := signedHeader(t, &nodeauth.Signer{Key: nodeauth.Key("another-cluster-secret"), Node: "node3"},
			http.MethodPost, "/internal/v1/usage", body)
		expect401(t, postReport(t, anon, false, h, report, false))
		logs := env.Log.String()
		if !strings.Contains(logs, "internal request refused") || !strings.Contains(logs, "bad signature") ||
			!strings.Contains(logs, "nonce replayed") {
			t.Errorf("the refusals and their reasons are not logged:\n%s", logs)
		}
		_, sig, _ := strings.Cut(h.Get("Authorization"), " ")
		for _, secret := range []string{hex.EncodeToString(internalKey), sig, "test-cluster-secret"} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log contains %q", secret)
			}
		}
	})
}

func TestMailNotRunning(t *testing.T) {
	env := mustOpenMailEnv(t, WithoutMail())
	c := env.Admin
	for _, r := range []Request{
		{Method: http.MethodGet, Path: aliceBase + "/messages"},
		{Method: http.MethodGet, Path: aliceBase + "/messages/1700000000.M1P1Q1Rabc.host,S=10"},
		{Method: http.MethodDelete, Path: aliceBase + "/messages/1700000000.M1P1Q1Rabc.host,S=10"},
		{Method: http.MethodPost, Path: aliceBase + "/usage/recount"},
	} {
		t.Run(r.Method+" "+strings.TrimPrefix(r.Path, aliceBase), func(t *testing.T) {
			p := c.Do(t, r).ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
			if !strings.Contains(p.Detail, "mail service is not running") {
				t.Errorf("detail = %q", p.Detail)
			}
		})
	}
	t.Run("UsageStillServed", func(t *testing.T) {
		c.Get(t, aliceBase+"/usage").Expect(t, http.StatusOK)
	})
	t.Run("StillAuthenticated", func(t *testing.T) {
		c.Anonymous().Get(t, aliceBase+"/messages").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
}

// TestSecondaryMail checks that a secondary serves and deletes mail (a
// change to mail, not to the configuration) and carries the usage change
// to the primary's internal API, but refuses to publish a recount.
func TestSecondaryMail(t *testing.T) {
	primary := mustOpenMailEnv(t)
	var total int64
	for i := range 2 {
		total += int64(len(primary.MustDeliver(t, "alice@example.com", fmt.Sprintf("m%d", i))))
	}
	waitUsage(t, primary.Admin, aliceBase, total, 2)

	secondary := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true})
	c := secondary.Admin
	var page MessageList
	c.Get(t, aliceBase+"/messages").Expect(t, http.StatusOK).JSON(t, &page)
	if len(page.Messages) != 2 {
		t.Fatalf("secondary lists %d messages", len(page.Messages))
	}

	t.Run("Get", func(t *testing.T) {
		c.Get(t, aliceBase+"/messages/"+page.Messages[0].ID).Expect(t, http.StatusOK)
	})
	t.Run("DeleteAllowed", func(t *testing.T) {
		c.Delete(t, aliceBase+"/messages/"+page.Messages[0].ID).Expect(t, http.StatusNoContent)
		c.Get(t, aliceBase+"/messages/"+page.Messages[0].ID).ExpectProblem(t, http.StatusNotFound, "not-found")
		total -= page.Messages[0].Size
		// The secondary's outbox reports to the primary's internal API;
		// both nodes then read the new usage.
		waitUsage(t, c, aliceBase, total, 1)
		waitUsage(t, primary.Admin, aliceBase, total, 1)
		// The usage is published before the outbox removes what it sent.
		deadline := time.Now().Add(3 * time.Second)
		for secondary.Outbox.Queued() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := secondary.Outbox.Queued(); n != 0 {
			t.Errorf("%d changes still queued", n)
		}
	})
	t.Run("ErrRecountReadOnly", func(t *testing.T) {
		p := c.Do(t, Request{Method: http.MethodPost, Path: aliceBase + "/usage/recount"}).
			ExpectProblem(t, http.StatusForbidden, "read-only")
		if p.Primary != primaryURL {
			t.Errorf("primary = %q", p.Primary)
		}
	})
	t.Run("ErrReportReadOnly", func(t *testing.T) {
		postReport(t, c.Anonymous(), true, nil, usageReport("node9", "e1", 1), false).
			ExpectProblem(t, http.StatusForbidden, "read-only")
		waitUsage(t, c, aliceBase, total, 1)
	})
}
