package api_test

import (
	"bytes"
	"net/http"
	"sort"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/openapi"
)

// fakeLeadership is a fixed role, as a cluster election would report it.
type fakeLeadership struct {
	role    mailcluster.Role
	primary mailcluster.PrimaryRef
	known   bool
}

func (l fakeLeadership) Role() mailcluster.Role { return l.role }

func (l fakeLeadership) Primary() (mailcluster.PrimaryRef, bool) { return l.primary, l.known }

// writeRequests holds one valid request for every write operation of the
// spec (every operation but GET and HEAD), aimed at objects that exist, so
// that only the node's role can refuse it. The list of operations comes
// from openapi.yaml: TestSecondaryReadOnly fails when the spec gains a
// write operation that is missing here, or loses one that is still here.
var writeRequests = map[string]Request{
	"POST /api/v1/domains": {Body: []byte(`{"name":"new.example"}`)},
	"PATCH /api/v1/domains/{domain}": {Path: "/api/v1/domains/example.com",
		Body: []byte(`{"description":"changed"}`)},
	"DELETE /api/v1/domains/{domain}": {Path: "/api/v1/domains/example.com?force=true"},
	"POST /api/v1/domains/{domain}/accounts": {Path: "/api/v1/domains/example.com/accounts",
		Body: []byte(`{"mailbox":"new","password":"new-pass-123"}`)},
	"PATCH /api/v1/domains/{domain}/accounts/{mailbox}": {Path: "/api/v1/domains/example.com/accounts/alice",
		Body: []byte(`{"fullName":"Changed","password":"changed-pass-1"}`)},
	"DELETE /api/v1/domains/{domain}/accounts/{mailbox}": {Path: "/api/v1/domains/example.com/accounts/alice"},
	"POST /api/v1/domains/{domain}/aliases": {Path: "/api/v1/domains/example.com/aliases",
		Body: []byte(`{"name":"new-alias","target":"alice@example.com"}`)},
	"PATCH /api/v1/domains/{domain}/aliases/{name}": {Path: "/api/v1/domains/example.com/aliases/sales",
		Body: []byte(`{"target":"bob@example.com"}`)},
	"DELETE /api/v1/domains/{domain}/aliases/{name}": {Path: "/api/v1/domains/example.com/aliases/sales"},
	"PUT /api/v1/domains/{domain}/dkim": {Path: "/api/v1/domains/example.com/dkim",
		Body: []byte(`{"selector":"new","algorithm":"ed25519-sha256"}`)},
	"POST /api/v1/domains/{domain}/dkim": {Path: "/api/v1/domains/example.com/dkim",
		Body: []byte(`{"selector":"new","algorithm":"ed25519-sha256"}`)},
	"DELETE /api/v1/domains/{domain}/dkim": {Path: "/api/v1/domains/example.com/dkim"},
	"POST /api/v1/queue/{id}/retry":        {Path: "/api/v1/queue/" + queueID1 + "/retry"},
	"DELETE /api/v1/queue/{id}":            {Path: "/api/v1/queue/" + queueID1},
	"POST /api/v1/domains/{domain}/lists": {Path: "/api/v1/domains/example.com/lists",
		Body: []byte(`{"name":"new-list","members":[{"address":"alice@example.com"},{"group":"staff"}]}`)},
	"PATCH /api/v1/domains/{domain}/lists/{name}": {Path: "/api/v1/domains/example.com/lists/team",
		Body: []byte(`{"description":"changed","policy":"anyone","addMembers":[{"address":"bob@example.com"}]}`)},
	"DELETE /api/v1/domains/{domain}/lists/{name}": {Path: "/api/v1/domains/example.com/lists/team"},
	"POST /api/v1/domains/{domain}/groups": {Path: "/api/v1/domains/example.com/groups",
		Body: []byte(`{"name":"new-group","members":["alice"]}`)},
	"PATCH /api/v1/domains/{domain}/groups/{name}": {Path: "/api/v1/domains/example.com/groups/staff",
		Body: []byte(`{"quotaBytes":1000,"addMembers":["bob"]}`)},
	"DELETE /api/v1/domains/{domain}/groups/{name}": {Path: "/api/v1/domains/example.com/groups/staff"},
	"PUT /api/v1/settings/{file}": {Path: "/api/v1/settings/mailcluster",
		Body: []byte("[Passwords]\nMinLength=9\n"), ContentType: "text/plain"},
	"PUT /api/v1/settings/{file}/{section}/{key}": {Path: "/api/v1/settings/mailcluster/Passwords/MinLength",
		Body: []byte(`{"value":"9"}`)},
	"DELETE /api/v1/settings/{file}/{section}/{key}": {Path: "/api/v1/settings/mailcluster/Passwords/MinLength"},
	"POST /api/v1/cluster/switchover":                {Body: []byte(`{"target":"node1"}`)},
	"POST /api/v1/cluster/servers":                   {Body: []byte(`{"node":"node2"}`)},
	"DELETE /api/v1/cluster/servers/{name}":          {Path: "/api/v1/cluster/servers/node3"},
	"POST /api/v1/domains/{domain}/accounts/{mailbox}/usage/recount": {
		Path: "/api/v1/domains/example.com/accounts/alice/usage/recount"},
	"POST /api/v1/screening/ips":                  {Body: []byte(`{"ip":"203.0.113.9","durationSeconds":600,"reason":"test"}`)},
	"DELETE /api/v1/screening/ips/{ip}":           {Path: "/api/v1/screening/ips/198.51.100.1"},
	"POST /api/v1/screening/accounts":             {Body: []byte(`{"address":"alice@example.com","reason":"test"}`)},
	"DELETE /api/v1/screening/accounts/{address}": {Path: "/api/v1/screening/accounts/bob@example.com"},
	"PUT /api/v1/certificates/{name}": {Path: "/api/v1/certificates/mail",
		Body: []byte(`{"chainPem":` + jsonString(pki.Leaf2.ChainPEM) + `,"keyPem":` + jsonString(pki.Leaf2.KeyPEM) + `,"default":true}`)},
	"DELETE /api/v1/certificates/{name}": {Path: "/api/v1/certificates/mail"},
	"POST /api/v1/screening/thaw":        {Body: []byte(`{"address":"bob@example.com","token":"WRONGTOKEN"}`)},
	"POST /internal/v1/screening/failures": {Signed: true,
		Body: []byte(`{"failures":[{"time":"2025-01-02T03:04:05Z","ip":"203.0.113.50","address":"alice@example.com",` +
			`"hash":"0123456789abcdef","node":"node3","proto":"smtp"}]}`)},
	"POST /internal/v1/usage": {Signed: true,
		Body: []byte(`{"node":"node3","epoch":"e1","deltas":[{"seq":1,"domain":"example.com","mailbox":"alice",` +
			`"bytes":100,"messages":1,"at":"2025-01-02T03:04:05Z"}]}`)},
}

// mailChanges are the write operations that change mail, not the
// configuration: every node accepts them (TestSecondaryMail).
var mailChanges = map[string]bool{
	"DELETE /api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}": true,
}

// extraWriteRequests are further variants of the same operations.
var extraWriteRequests = map[string]Request{
	"PUT /api/v1/settings/{file} (JSON)": {Method: http.MethodPut, Path: "/api/v1/settings/mailcluster",
		Body: []byte(`{"sections":{"Passwords":{"MinLength":"9"}}}`)},
	"PUT /api/v1/settings/{file}/{section}/{key} (new)": {Method: http.MethodPut, Path: "/api/v1/settings/other/S/K",
		Body: []byte(`{"value":"1"}`)},
	"DELETE /api/v1/domains/{domain} (no force)": {Method: http.MethodDelete, Path: "/api/v1/domains/empty.example"},
	"PATCH /api/v1/domains/{domain} (postmaster)": {Method: http.MethodPatch, Path: "/api/v1/domains/example.com",
		Body: []byte(`{"postmaster":"bob@example.com"}`)},
	"POST /api/v1/domains/{domain}/accounts (addresses)": {Method: http.MethodPost, Path: "/api/v1/domains/example.com/accounts",
		Body: []byte(`{"mailbox":"new","password":"new-pass-123","aliases":["new-alias"],"lists":["team"],"groups":["staff"]}`)},
	"PATCH /api/v1/domains/{domain}/accounts/{mailbox} (addresses)": {Method: http.MethodPatch, Path: "/api/v1/domains/example.com/accounts/bob",
		Body: []byte(`{"addAliases":["new-alias"],"removeAliases":["sales"],"addLists":["team"],"addGroups":["staff"]}`)},
	"PUT /api/v1/certificates/{name} (new)": {Method: http.MethodPut, Path: "/api/v1/certificates/other",
		Body: []byte(`{"chainPem":` + jsonString(pki.Inter.ChainPEM) + `,"keyPem":` + jsonString(pki.Inter.KeyPEM) + `}`)},
}

// allWriteRequests returns the write requests by name, checking that
// every write operation of the spec has one.
func allWriteRequests(t *testing.T) map[string]Request {
	t.Helper()
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Request{}
	inSpec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if path == "/MdMgmtWS" {
			continue // the XML-API enforces the rule itself
		}
		for method := range item.Operations() {
			if method == http.MethodGet || method == http.MethodHead {
				continue
			}
			key := method + " " + path
			inSpec[key] = true
			if mailChanges[key] {
				continue
			}
			r, ok := writeRequests[key]
			if !ok {
				t.Errorf("no read-only test request for %s", key)
				continue
			}
			r.Method = method
			if r.Path == "" {
				r.Path = path
			}
			out[key] = r
		}
	}
	// The hand-written requests and exemptions must name operations of
	// the spec: a renamed or removed operation leaves none of them behind.
	for k := range writeRequests {
		if !inSpec[k] {
			t.Errorf("writeRequests has %s, which is not a write operation of the spec", k)
		}
	}
	for k := range mailChanges {
		if !inSpec[k] {
			t.Errorf("mailChanges has %s, which is not a write operation of the spec", k)
		}
	}
	for k, r := range extraWriteRequests {
		if op, _, _ := strings.Cut(k, " ("); !inSpec[op] {
			t.Errorf("extraWriteRequests has %s, which is not a variant of a write operation of the spec", k)
		}
		out[k] = r
	}
	return out
}

// snapshot reads everything the write requests could change.
func snapshot(t *testing.T, c *Client) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, r := range []Request{
		{Method: http.MethodGet, Path: "/api/v1/domains"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/accounts"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/accounts/alice"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/aliases"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/lists"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/lists/team/members"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/groups"},
		{Method: http.MethodGet, Path: "/api/v1/domains/example.com/groups/staff/members"},
		{Method: http.MethodGet, Path: "/api/v1/settings"},
		{Method: http.MethodGet, Path: "/api/v1/settings/mailcluster", Accept: "text/plain"},
		{Method: http.MethodGet, Path: "/api/v1/screening/ips"},
		{Method: http.MethodGet, Path: "/api/v1/screening/accounts"},
		{Method: http.MethodGet, Path: "/api/v1/certificates"},
		{Method: http.MethodGet, Path: "/api/v1/cluster/servers"},
	} {
		out[r.Path+" "+r.Accept] = c.Do(t, r).Expect(t, http.StatusOK).Body
	}
	return out
}

func TestSecondaryReadOnly(t *testing.T) {
	primary := MustOpenEnv(t, WithAdmission(newFakeAdmission()))
	primary.Admin.MustCreateDomain(t, "example.com")
	primary.Admin.MustCreateDomain(t, "empty.example")
	primary.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1", "fullName": "Alice"})
	// The screening writes aim at a blocked address and a frozen account.
	primary.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "bob", "password": "bob-pass-12"})
	primary.Admin.Send(t, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "198.51.100.1"}).Expect(t, http.StatusCreated)
	primary.Admin.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "bob@example.com"}).
		Expect(t, http.StatusCreated)
	// The certificate writes aim at an existing certificate.
	primary.Admin.MustImportCertificate(t, "mail", pki.Leaf, false)
	// The server writes aim at a registered node and at one that would pass.
	primary.Admin.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node3"}).Expect(t, http.StatusCreated)
	// The address writes aim at alias sales, list team and group staff.
	mustSeedAddresses(t, primary.Admin, "example.com", "alice")

	secondary := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true}, WithAdmission(newFakeAdmission()))
	c := secondary.Admin
	c.Secret("new-pass-123")
	c.Secret("changed-pass-1")
	keySecrets(c)

	t.Run("Reads", func(t *testing.T) {
		var n struct {
			Name, Role string
			Primary    struct{ Name, APIURL string }
		}
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK).JSON(t, &n)
		if n.Name != "node2" || n.Role != "secondary" || n.Primary.Name != "node1" {
			t.Errorf("node = %+v", n)
		}
		var h struct{ Status, Role, Name string }
		c.Anonymous().Get(t, "/health").Expect(t, http.StatusOK).JSON(t, &h)
		if h.Role != "secondary" || h.Name != "node2" {
			t.Errorf("health = %+v", h)
		}
		// The primary's registered servers are listed on every node.
		if got := servers(t, c); len(got) != 1 || got[0] != "node3" {
			t.Errorf("servers %v", got)
		}
	})

	before := snapshot(t, c)
	index := primary.Store.Index()
	reqs := allWriteRequests(t)
	names := make([]string, 0, len(reqs))
	for k := range reqs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p := c.Do(t, reqs[name]).ExpectProblem(t, http.StatusForbidden, "read-only")
			if p.Primary != primaryURL {
				t.Errorf("primary = %q, want %q", p.Primary, primaryURL)
			}
			if p.Detail == "" {
				t.Error("no detail")
			}
		})
	}
	t.Run("NothingChanged", func(t *testing.T) {
		if got := primary.Store.Index(); got != index {
			t.Errorf("store index moved from %d to %d", index, got)
		}
		after := snapshot(t, c)
		for k, b := range before {
			if !bytes.Equal(b, after[k]) {
				t.Errorf("%s changed:\n%s\nwant\n%s", k, after[k], b)
			}
		}
		c.Get(t, "/api/v1/domains/new.example").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("PrimaryStillWrites", func(t *testing.T) {
		primary.Admin.Send(t, http.MethodPatch, "/api/v1/domains/example.com", map[string]any{"description": "from primary"}).
			Expect(t, http.StatusOK)
		var d Domain
		c.Get(t, "/api/v1/domains/example.com").Expect(t, http.StatusOK).JSON(t, &d)
		if d.Description != "from primary" {
			t.Errorf("secondary reads %q", d.Description)
		}
	})
}

func TestNoPrimaryUnavailable(t *testing.T) {
	primary := MustOpenEnv(t, WithAdmission(newFakeAdmission()))
	primary.Admin.MustCreateDomain(t, "example.com")
	primary.Admin.MustCreateDomain(t, "empty.example")
	primary.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "alice", "password": "alice-pass-1"})
	primary.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "bob", "password": "bob-pass-12"})
	primary.Admin.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node3"}).Expect(t, http.StatusCreated)
	mustSeedAddresses(t, primary.Admin, "example.com", "alice")

	orphan := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary}, WithAdmission(newFakeAdmission()))
	c := orphan.Admin
	c.Secret("new-pass-123")
	c.Secret("changed-pass-1")
	before := snapshot(t, c)
	index := primary.Store.Index()

	var n struct {
		Role    string
		Primary *struct{ Name string }
	}
	c.Get(t, "/api/v1/node").Expect(t, http.StatusOK).JSON(t, &n)
	if n.Role != "secondary" || n.Primary != nil {
		t.Errorf("node = %+v", n)
	}
	for name, r := range allWriteRequests(t) {
		t.Run(name, func(t *testing.T) {
			res := c.Do(t, r)
			p := res.ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
			if p.Primary != "" {
				t.Errorf("primary = %q", p.Primary)
			}
			if res.Header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
	if got := primary.Store.Index(); got != index {
		t.Errorf("store index moved from %d to %d", index, got)
	}
	after := snapshot(t, c)
	for k, b := range before {
		if !bytes.Equal(b, after[k]) {
			t.Errorf("%s changed", k)
		}
	}
}
