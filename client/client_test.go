package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/client"
)

// request is what the fake server was asked.
type request struct {
	Method, Path, Query, User, Password, ContentType, Body string
}

// fakeAPI answers each "METHOD /path" with a fixed status and body and
// records the requests it was given.
type fakeAPI struct {
	mu       sync.Mutex
	answers  map[string]answer
	requests []request
}

type answer struct {
	status      int
	contentType string
	body        string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pw, _ := r.BasicAuth()
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, request{r.Method, r.URL.Path, r.URL.RawQuery, user, pw, r.Header.Get("Content-Type"), string(b)})
	a, ok := f.answers[r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery]
	if !ok {
		a, ok = f.answers[r.Method+" "+r.URL.Path]
	}
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	ct := a.contentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// mustOpen starts the fake API on 127.0.0.1 and returns a client of it.
func mustOpen(t *testing.T, answers map[string]answer) (*client.Client, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{answers: answers}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL+"/", "admin@localhost", "secret-pass", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != srv.URL {
		t.Fatalf("BaseURL = %q, want %q", c.BaseURL(), srv.URL)
	}
	return c, f
}

func TestNew(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8080", "ftp://x", ""} {
		if _, err := client.New(u, "a@b", "pw", client.Options{}); err == nil || !strings.HasPrefix(err.Error(), "client: ") {
			t.Errorf("New(%q): err = %v, want a refusal", u, err)
		}
	}
}

func TestNode(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{"GET /api/v1/node": {body: `{"name":"n1","mode":"cluster","role":"secondary","version":"1.2","primary":{"name":"n0","apiUrl":"http://10.0.0.1:8080"},"index":7,"lagMs":-1,"problems":[]}`}})
	n, err := c.Node(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := mailcluster.NodeInfo{Name: "n1", Mode: mailcluster.ModeCluster, Role: mailcluster.RoleSecondary, Version: "1.2",
		Primary: &mailcluster.PrimaryRef{Name: "n0", APIURL: "http://10.0.0.1:8080"}, Index: 7, LagMS: -1, Problems: []string{}}
	if !reflect.DeepEqual(*n, want) {
		t.Fatalf("node %+v, want %+v", *n, want)
	}
	if r := f.requests[0]; r.User != "admin@localhost" || r.Password != "secret-pass" {
		t.Fatalf("credentials sent: %q %q", r.User, r.Password)
	}
}

func TestClusterStatus(t *testing.T) {
	c, _ := mustOpen(t, map[string]answer{"GET /api/v1/cluster": {body: `{"mode":"cluster","cluster":"c1","primary":null,"nodes":[{"name":"n1","role":"primary","healthy":true,"lagMs":3,"self":true}]}`}})
	st, err := c.ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Cluster != "c1" || st.Primary != nil || len(st.Nodes) != 1 || st.Nodes[0].Name != "n1" || !st.Nodes[0].Healthy || st.Nodes[0].LagMS != 3 || !st.Nodes[0].Self {
		t.Fatalf("status %+v", st)
	}
}

func TestSettings(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/settings/mailcluster":                                {body: `{"name":"mailcluster","sections":{"Directories":{"MailboxRoot":"/srv/mail"}}}`},
		"PUT /api/v1/settings/mailcluster/Directories/MailboxRootNext":    {body: `{"value":"/srv/new"}`},
		"DELETE /api/v1/settings/mailcluster/Directories/MailboxRootNext": {status: http.StatusNoContent},
	})
	ctx := context.Background()
	s, err := c.Settings(ctx, mailcluster.MainSettingsFile)
	if err != nil || s.Sections["Directories"]["MailboxRoot"] != "/srv/mail" {
		t.Fatalf("settings %+v, %v", s, err)
	}
	if err := c.PutSetting(ctx, mailcluster.MainSettingsFile, "Directories", "MailboxRootNext", "/srv/new"); err != nil {
		t.Fatal(err)
	}
	if r := f.requests[1]; r.ContentType != "application/json" || r.Body != `{"value":"/srv/new"}` {
		t.Fatalf("PUT sent %q as %q", r.Body, r.ContentType)
	}
	if err := c.DeleteSetting(ctx, mailcluster.MainSettingsFile, "Directories", "MailboxRootNext"); err != nil {
		t.Fatal(err)
	}
	if r := f.requests[2]; r.Method != "DELETE" || r.Body != "" {
		t.Fatalf("DELETE sent %+v", r)
	}
}

func TestAccounts(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/domains": {body: `{"domains":[{"name":"ex.com","accountCount":3}]}`},
		"GET /api/v1/domains/ex.com/accounts?cursor=&limit=1000": {body: `{"accounts":[{"address":"a@ex.com","domain":"ex.com","mailbox":"a","mailboxPath":"/m/a/"},` +
			`{"address":"b@ex.com","domain":"ex.com","mailbox":"b","mailboxPath":"/m/b/"}],"nextCursor":"b"}`},
		"GET /api/v1/domains/ex.com/accounts?cursor=b&limit=1000": {body: `{"accounts":[{"address":"c@ex.com","domain":"ex.com","mailbox":"c","mailboxPath":"/m/c/","usage":{"bytes":5,"messages":1}}],"nextCursor":""}`},
	})
	ctx := context.Background()
	ds, err := c.Domains(ctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "ex.com" || ds[0].AccountCount != 3 {
		t.Fatalf("domains %+v, %v", ds, err)
	}
	as, err := c.AllAccounts(ctx, "ex.com")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		got = append(got, a.Address+" "+a.MailboxPath)
	}
	if want := []string{"a@ex.com /m/a/", "b@ex.com /m/b/", "c@ex.com /m/c/"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("accounts %v, want %v", got, want)
	}
	if as[2].Usage != (client.AccountUsage{Bytes: 5, Messages: 1}) {
		t.Fatalf("usage %+v", as[2].Usage)
	}
	if n := len(f.requests); n != 3 {
		t.Fatalf("%d requests, want 3 (one per page)", n)
	}
}

func TestPatchAccount(t *testing.T) {
	c, f := mustOpen(t, map[string]answer{"PATCH /api/v1/domains/ex.com/accounts/a": {body: `{"address":"a@ex.com","mailboxPath":"/new/a/"}`}})
	p := "/new/a/"
	a, err := c.PatchAccount(context.Background(), "ex.com", "a", client.AccountPatch{MailboxPath: &p})
	if err != nil || a.MailboxPath != "/new/a/" {
		t.Fatalf("patch: %+v %v", a, err)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(f.requests[0].Body), &sent); err != nil || !reflect.DeepEqual(sent, map[string]any{"mailboxPath": "/new/a/"}) {
		t.Fatalf("sent %q, want only the mailbox path", f.requests[0].Body)
	}
}

func TestRecountUsage(t *testing.T) {
	c, _ := mustOpen(t, map[string]answer{"POST /api/v1/domains/ex.com/accounts/a/usage/recount": {body: `{"bytes":12,"messages":2,"quotaBytes":100}`}})
	u, err := c.RecountUsage(context.Background(), "ex.com", "a")
	if err != nil || u.Bytes != 12 || u.Messages != 2 || u.QuotaBytes != 100 {
		t.Fatalf("usage %+v, %v", u, err)
	}
}

func TestError(t *testing.T) {
	c, _ := mustOpen(t, map[string]answer{
		"PUT /api/v1/settings/mailcluster/Directories/MailboxRoot": {status: http.StatusForbidden, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:read-only","title":"Read-only node","status":403,"detail":"This node is not the primary.","primary":"http://10.0.0.1:8080"}`},
		"GET /api/v1/domains/gone.com/accounts": {status: http.StatusNotFound, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:not-found","title":"Not found","status":404,"detail":"Domain gone.com does not exist."}`},
	})
	ctx := context.Background()
	t.Run("ReadOnly", func(t *testing.T) {
		err := c.PutSetting(ctx, mailcluster.MainSettingsFile, "Directories", "MailboxRoot", "/x")
		var e *client.Error
		if !errors.As(err, &e) {
			t.Fatalf("err = %T %v, want *client.Error", err, err)
		}
		if e.Status != http.StatusForbidden || e.Code() != mailcluster.EREADONLY || e.Primary != "http://10.0.0.1:8080" || e.Detail != "This node is not the primary." {
			t.Fatalf("error %+v", e)
		}
		if want := "client: PUT /api/v1/settings/mailcluster/Directories/MailboxRoot: 403 Forbidden: This node is not the primary."; err.Error() != want {
			t.Fatalf("text %q, want %q", err, want)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		_, err := c.AllAccounts(ctx, "gone.com")
		if client.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("err = %v, code %q", err, client.ErrorCode(err))
		}
	})
	t.Run("NotAProblem", func(t *testing.T) {
		// A plain-text 404 (no route): the status, no code.
		_, err := c.RecountUsage(ctx, "ex.com", "zz")
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusNotFound || e.Code() != "" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("BadAnswer", func(t *testing.T) {
		c, _ := mustOpen(t, map[string]answer{"GET /api/v1/node": {body: `not json`}})
		if _, err := c.Node(ctx); err == nil || !strings.Contains(err.Error(), "bad answer") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		c, _ := client.New(srv.URL, "a@b", "pw", client.Options{})
		_, err := c.Node(ctx)
		var e *client.Error
		if err == nil || errors.As(err, &e) || client.ErrorCode(err) != "" {
			t.Fatalf("err = %v, want a transport error", err)
		}
	})
}
