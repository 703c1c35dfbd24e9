package api_test

import (
	"bytes"
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// The authorization walk: every operation of openapi.yaml is sent, aimed
// at another tenant's objects, by a domain administrator of attacker.test
// and by a plain user of attacker.test, and must be refused; nothing may
// change. Each request is one that its rightful caller gets a 2xx for
// (checked on fresh nodes), so a refusal proves the authorization and
// not a malformed request.

// Domains of the authorization tests.
const (
	attackerDomain = "attacker.test"
	victimDomain   = "victim.test"
	absentDomain   = "absent.test" // never created
)

// authzRule says who besides a global administrator may use an operation.
type authzRule string

const (
	// authzOpen needs no credentials: credentials change nothing.
	authzOpen authzRule = "open"
	// authzToken needs no credentials but a secret in the body (the thaw
	// token): Basic credentials do not stand in for it.
	authzToken authzRule = "token"
	// authzInternal takes the nodes' credentials only: Basic credentials
	// of any account are 401.
	authzInternal authzRule = "internal"
	// authzGlobal is reserved to global administrators: a domain
	// administrator gets 403, whatever domain the request names.
	authzGlobal authzRule = "global"
	// authzDomain works on one domain's objects: the administrator of
	// another domain gets 403, for an existing domain and an absent one
	// alike (no existence oracle).
	authzDomain authzRule = "domain"
	// authzFiltered answers every administrator, a domain administrator
	// with its own domain's objects only.
	authzFiltered authzRule = "filtered"
	// authzAnyAdmin answers every administrator the same node facts.
	authzAnyAdmin authzRule = "any-admin"
	// authzXMLAPI is the XML-API endpoint (xmlapi/authz_test.go walks its
	// operations); a global write answers status 9 to a domain
	// administrator.
	authzXMLAPI authzRule = "xml-api"
)

// authzCase is one operation's request and rule.
type authzCase struct {
	rule authzRule
	req  Request // Method and (when empty) Path come from the spec
}

// authzTarget names the objects a table aims at: a domain with a mail
// account alice holding message MsgID, a frozen account bob and the
// other accounts seedAuthz creates.
type authzTarget struct {
	Domain string
	MsgID  string
}

// authzTable returns one request for every operation of openapi.yaml,
// keyed "METHOD /path" as in the spec, aimed at the objects of t.
// TestAuthzEveryOperation fails when the spec has an operation missing
// here: a new route cannot be added without deciding who may use it.
func authzTable(t authzTarget) map[string]authzCase {
	dom := "/api/v1/domains/" + t.Domain
	alice := dom + "/accounts/alice"
	body := func(s string) []byte { return []byte(s) }
	xml := `<MDaemon><API><Request><Operation>CreateDomain</Operation><Parameters><Domain>new.test</Domain>` +
		`</Parameters></Request></API></MDaemon>`
	return map[string]authzCase{
		"GET /health":            {rule: authzOpen},
		"HEAD /health":           {rule: authzOpen},
		"GET /health/primary":    {rule: authzOpen},
		"HEAD /health/primary":   {rule: authzOpen},
		"GET /health/secondary":  {rule: authzOpen},
		"HEAD /health/secondary": {rule: authzOpen},
		"GET /openapi.yaml":      {rule: authzOpen},
		"GET /metrics":           {rule: authzOpen},
		"POST /api/v1/screening/thaw": {rule: authzToken,
			req: Request{Body: body(`{"address":"bob@` + t.Domain + `","token":"WRONGTOKEN"}`)}},

		"POST /internal/v1/usage": {rule: authzInternal, req: Request{
			Body: body(`{"node":"node3","epoch":"e1","deltas":[{"seq":1,"domain":"` + t.Domain + `","mailbox":"alice",` +
				`"bytes":100,"messages":1,"at":"2025-01-02T03:04:05Z"}]}`)}},
		"POST /internal/v1/screening/failures": {rule: authzInternal, req: Request{
			Body: body(`{"failures":[{"time":"2025-01-02T03:04:05Z","ip":"203.0.113.50","address":"alice@` + t.Domain + `",` +
				`"hash":"0123456789abcdef","node":"node3","proto":"smtp"}]}`)}},
		"GET /internal/v1/info": {rule: authzInternal},
		"GET /internal/v1/time": {rule: authzInternal},
		"GET /internal/v1/log":  {rule: authzInternal},

		"POST /MdMgmtWS": {rule: authzXMLAPI, req: Request{Body: body(xml), ContentType: "text/xml"}},

		"GET /api/v1/node":             {rule: authzAnyAdmin},
		"GET /api/v1/domains":          {rule: authzFiltered},
		"POST /api/v1/domains":         {rule: authzGlobal, req: Request{Body: body(`{"name":"new.test"}`)}},
		"GET /api/v1/domains/{domain}": {rule: authzDomain, req: Request{Path: dom}},
		"PATCH /api/v1/domains/{domain}": {rule: authzGlobal, req: Request{Path: dom,
			Body: body(`{"description":"changed","maxAccounts":50}`)}},
		"DELETE /api/v1/domains/{domain}": {rule: authzGlobal, req: Request{Path: dom + "?force=true"}},

		"GET /api/v1/domains/{domain}/accounts": {rule: authzDomain, req: Request{Path: dom + "/accounts"}},
		"POST /api/v1/domains/{domain}/accounts": {rule: authzDomain, req: Request{Path: dom + "/accounts",
			Body: body(`{"mailbox":"new","password":"new-pass-123"}`)}},
		"GET /api/v1/domains/{domain}/accounts/{mailbox}": {rule: authzDomain, req: Request{Path: alice}},
		"PATCH /api/v1/domains/{domain}/accounts/{mailbox}": {rule: authzDomain, req: Request{Path: alice,
			Body: body(`{"fullName":"Changed","password":"changed-pass-1","disabled":true}`)}},
		"DELETE /api/v1/domains/{domain}/accounts/{mailbox}":               {rule: authzDomain, req: Request{Path: alice}},
		"GET /api/v1/domains/{domain}/accounts/{mailbox}/messages":         {rule: authzDomain, req: Request{Path: alice + "/messages"}},
		"GET /api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}":    {rule: authzDomain, req: Request{Path: alice + "/messages/" + t.MsgID}},
		"DELETE /api/v1/domains/{domain}/accounts/{mailbox}/messages/{id}": {rule: authzDomain, req: Request{Path: alice + "/messages/" + t.MsgID}},
		"GET /api/v1/domains/{domain}/accounts/{mailbox}/usage":            {rule: authzDomain, req: Request{Path: alice + "/usage"}},
		"POST /api/v1/domains/{domain}/accounts/{mailbox}/usage/recount":   {rule: authzDomain, req: Request{Path: alice + "/usage/recount"}},

		"GET /api/v1/domains/{domain}/aliases": {rule: authzDomain, req: Request{Path: dom + "/aliases"}},
		"POST /api/v1/domains/{domain}/aliases": {rule: authzDomain, req: Request{Path: dom + "/aliases",
			Body: body(`{"name":"new-alias","target":"user@` + t.Domain + `"}`)}},
		"GET /api/v1/domains/{domain}/aliases/{name}": {rule: authzDomain, req: Request{Path: dom + "/aliases/sales"}},
		"PATCH /api/v1/domains/{domain}/aliases/{name}": {rule: authzDomain, req: Request{Path: dom + "/aliases/sales",
			Body: body(`{"target":"bob@` + t.Domain + `"}`)}},
		"DELETE /api/v1/domains/{domain}/aliases/{name}": {rule: authzDomain, req: Request{Path: dom + "/aliases/sales"}},
		"GET /api/v1/domains/{domain}/dkim":              {rule: authzDomain, req: Request{Path: dom + "/dkim"}},
		"PUT /api/v1/domains/{domain}/dkim": {rule: authzDomain, req: Request{Path: dom + "/dkim",
			Body: body(`{"selector":"new","algorithm":"ed25519-sha256"}`)}},
		"POST /api/v1/domains/{domain}/dkim": {rule: authzDomain, req: Request{Path: dom + "/dkim",
			Body: body(`{"selector":"new","algorithm":"ed25519-sha256"}`)}},
		"DELETE /api/v1/domains/{domain}/dkim": {rule: authzDomain, req: Request{Path: dom + "/dkim"}},
		"GET /api/v1/domains/{domain}/lists":   {rule: authzDomain, req: Request{Path: dom + "/lists"}},
		"POST /api/v1/domains/{domain}/lists": {rule: authzDomain, req: Request{Path: dom + "/lists",
			Body: body(`{"name":"new-list","members":[{"address":"user@` + t.Domain + `"},{"group":"staff"}]}`)}},
		"GET /api/v1/domains/{domain}/lists/{name}": {rule: authzDomain, req: Request{Path: dom + "/lists/team"}},
		"PATCH /api/v1/domains/{domain}/lists/{name}": {rule: authzDomain, req: Request{Path: dom + "/lists/team",
			Body: body(`{"description":"changed","addMembers":[{"address":"bob@` + t.Domain + `"}]}`)}},
		"DELETE /api/v1/domains/{domain}/lists/{name}":      {rule: authzDomain, req: Request{Path: dom + "/lists/team"}},
		"GET /api/v1/domains/{domain}/lists/{name}/members": {rule: authzDomain, req: Request{Path: dom + "/lists/team/members"}},
		"GET /api/v1/domains/{domain}/groups":               {rule: authzDomain, req: Request{Path: dom + "/groups"}},
		"POST /api/v1/domains/{domain}/groups": {rule: authzDomain, req: Request{Path: dom + "/groups",
			Body: body(`{"name":"new-group","members":["user@` + t.Domain + `"]}`)}},
		"GET /api/v1/domains/{domain}/groups/{name}": {rule: authzDomain, req: Request{Path: dom + "/groups/staff"}},
		"PATCH /api/v1/domains/{domain}/groups/{name}": {rule: authzDomain, req: Request{Path: dom + "/groups/staff",
			Body: body(`{"quotaBytes":1000,"addMembers":["bob@` + t.Domain + `"]}`)}},
		"DELETE /api/v1/domains/{domain}/groups/{name}":      {rule: authzDomain, req: Request{Path: dom + "/groups/staff"}},
		"GET /api/v1/domains/{domain}/groups/{name}/members": {rule: authzDomain, req: Request{Path: dom + "/groups/staff/members"}},

		"GET /api/v1/settings":        {rule: authzGlobal},
		"GET /api/v1/settings/{file}": {rule: authzGlobal, req: Request{Path: "/api/v1/settings/mailcluster"}},
		"PUT /api/v1/settings/{file}": {rule: authzGlobal, req: Request{Path: "/api/v1/settings/mailcluster",
			Body: body("[Passwords]\nMinLength=9\n"), ContentType: "text/plain"}},
		"GET /api/v1/settings/{file}/{section}/{key}": {rule: authzGlobal, req: Request{Path: "/api/v1/settings/mailcluster/Passwords/MinLength"}},
		"PUT /api/v1/settings/{file}/{section}/{key}": {rule: authzGlobal, req: Request{Path: "/api/v1/settings/mailcluster/Passwords/MinLength",
			Body: body(`{"value":"9"}`)}},
		"DELETE /api/v1/settings/{file}/{section}/{key}": {rule: authzGlobal, req: Request{Path: "/api/v1/settings/mailcluster/Passwords/MinLength"}},

		"GET /api/v1/cluster":                   {rule: authzGlobal},
		"POST /api/v1/cluster/switchover":       {rule: authzGlobal, req: Request{Body: body(`{"target":"node2"}`)}},
		"GET /api/v1/cluster/servers":           {rule: authzGlobal},
		"POST /api/v1/cluster/servers":          {rule: authzGlobal, req: Request{Body: body(`{"node":"node2"}`)}},
		"DELETE /api/v1/cluster/servers/{name}": {rule: authzGlobal, req: Request{Path: "/api/v1/cluster/servers/node3"}},
		"GET /api/v1/cluster/log":               {rule: authzGlobal},

		"GET /api/v1/screening/ips": {rule: authzGlobal},
		"POST /api/v1/screening/ips": {rule: authzGlobal,
			req: Request{Body: body(`{"ip":"203.0.113.9","durationSeconds":600,"reason":"test"}`)}},
		"DELETE /api/v1/screening/ips/{ip}": {rule: authzGlobal, req: Request{Path: "/api/v1/screening/ips/198.51.100.1"}},
		"GET /api/v1/screening/accounts":    {rule: authzFiltered},
		"POST /api/v1/screening/accounts": {rule: authzDomain,
			req: Request{Body: body(`{"address":"alice@` + t.Domain + `","reason":"test"}`)}},
		"DELETE /api/v1/screening/accounts/{address}": {rule: authzDomain,
			req: Request{Path: "/api/v1/screening/accounts/bob@" + t.Domain}},

		"GET /api/v1/certificates":        {rule: authzGlobal},
		"GET /api/v1/certificates/{name}": {rule: authzGlobal, req: Request{Path: "/api/v1/certificates/mail"}},
		"PUT /api/v1/certificates/{name}": {rule: authzGlobal, req: Request{Path: "/api/v1/certificates/mail",
			Body: body(`{"chainPem":` + jsonString(pki.Leaf2.ChainPEM) + `,"keyPem":` + jsonString(pki.Leaf2.KeyPEM) + `,"default":true}`)}},
		"DELETE /api/v1/certificates/{name}": {rule: authzGlobal, req: Request{Path: "/api/v1/certificates/mail"}},

		"GET /api/v1/queue":             {rule: authzGlobal},
		"GET /api/v1/queue/stats":       {rule: authzGlobal},
		"GET /api/v1/queue/{id}":        {rule: authzGlobal, req: Request{Path: "/api/v1/queue/" + queueID1}},
		"POST /api/v1/queue/{id}/retry": {rule: authzGlobal, req: Request{Path: "/api/v1/queue/" + queueID1 + "/retry"}},
		"DELETE /api/v1/queue/{id}":     {rule: authzGlobal, req: Request{Path: "/api/v1/queue/" + queueID1}},
	}
}

// authzOperations returns the table's requests for every operation of
// the spec, sorted by name, with method and path filled in. It fails the
// test for an operation of the spec that has no entry, and for an entry
// that names no operation of the spec.
func authzOperations(t *testing.T, target authzTarget) ([]string, map[string]authzCase) {
	t.Helper()
	table := authzTable(target)
	out := map[string]authzCase{}
	for _, op := range specOperations(t) {
		key := op.method + " " + op.path
		c, ok := table[key]
		if !ok {
			t.Errorf("%s has no authorization rule in authzTable: decide who may use it", key)
			continue
		}
		open := c.rule == authzOpen || c.rule == authzToken
		internal := c.rule == authzInternal
		if (op.scheme == "") != open || strings.HasPrefix(op.path, "/internal/") != internal ||
			!open && !internal && op.scheme != "basicAuth" {
			t.Errorf("%s: rule %s does not fit the spec's security scheme %q", key, c.rule, op.scheme)
		}
		c.req.Method = op.method
		if c.req.Path == "" {
			c.req.Path = op.path
		}
		out[key] = c
	}
	for key := range table {
		if _, ok := out[key]; !ok {
			t.Errorf("authzTable has %s, which is no operation of the spec", key)
		}
	}
	names := make([]string, 0, len(out))
	for k := range out {
		names = append(names, k)
	}
	sort.Strings(names)
	return names, out
}

// authzPassword is the password of every account the tests create.
func authzPassword(address string) string { return "pw-" + address }

// switchCounter is a cluster whose switchovers are counted.
type switchCounter struct {
	fakeCluster
	mu sync.Mutex
	n  int
}

func (c *switchCounter) Switchover(context.Context, string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return nil
}

func (c *switchCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// authzEnv is a node seeded for the authorization tests.
type authzEnv struct {
	*Env
	Own, Victim authzTarget
	Switches    *switchCounter
	Admission   *fakeAdmission
	Failures    *countingSink
	Queue       *fakeQueue
}

// client returns a validating client logged in as address.
func (e *authzEnv) client(address string) *Client {
	return e.Admin.As(address, authzPassword(address))
}

// mustOpenAuthzEnv starts a node (with the real XML-API and metrics)
// where attacker.test and victim.test each have:
//
//	alice  a mail user with one message
//	bob    a mail user, frozen
//	user   a mail user
//	dadmin a domain administrator
//	gadmin a global administrator
//
// plus a blocked address 198.51.100.1, a certificate "mail", a registered
// server node3, a cluster whose switchovers are counted and an admission
// check that would admit node2. Failed logins go to a counting sink, so
// that screening decides nothing.
func mustOpenAuthzEnv(tb testing.TB) *authzEnv {
	tb.Helper()
	e := &authzEnv{Switches: &switchCounter{}, Admission: newFakeAdmission(), Failures: &countingSink{}, Queue: newFakeQueue(queueID1)}
	e.Switches.st = mailcluster.ClusterStatus{Mode: mailcluster.ModeCluster, Cluster: "c1",
		Primary: &mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL},
		Nodes: []mailcluster.NodeStatus{
			{Name: "node1", APIURL: primaryURL, Role: mailcluster.RolePrimary, Version: mailcluster.Version, Healthy: true, Registered: true, Self: true},
			{Name: "node2", APIURL: "http://127.0.0.2:8080", Role: mailcluster.RoleSecondary, Version: mailcluster.Version, Healthy: true, Registered: true},
		}}
	env := MustOpenEnv(tb,
		WithXMLAPI(func(s *service.Service) http.Handler { return xmlapi.NewHandler(s, nil) }),
		WithMetrics(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})),
		WithClusterControl(e.Switches), WithAdmission(e.Admission), WithFailures(e.Failures),
		WithQueue(e.Queue))
	e.Env = env
	admin := env.Admin
	keySecrets(admin)
	admin.Secret("new-pass-123")
	admin.Secret("changed-pass-1")
	for _, d := range []string{attackerDomain, victimDomain} {
		admin.MustCreateDomain(tb, d)
		for _, a := range []struct{ mailbox, rights string }{
			{"alice", "none"}, {"bob", "none"}, {"user", "none"}, {"dadmin", "domain"}, {"gadmin", "global"},
		} {
			admin.MustCreateAccount(tb, d, map[string]any{"mailbox": a.mailbox, "password": authzPassword(a.mailbox + "@" + d),
				"adminRights": a.rights, "fullName": a.mailbox + " of " + d})
		}
		env.MustDeliver(tb, "alice@"+d, "mail of "+d)
		mustSeedAddresses(tb, admin, d, "user")
		admin.Send(tb, http.MethodPut, "/api/v1/domains/"+d+"/dkim", map[string]any{"selector": "mail", "algorithm": "ed25519-sha256"}).
			Expect(tb, http.StatusCreated)
		admin.Send(tb, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "bob@" + d}).
			Expect(tb, http.StatusCreated)
		var page MessageList
		admin.Get(tb, "/api/v1/domains/"+d+"/accounts/alice/messages").Expect(tb, http.StatusOK).JSON(tb, &page)
		if len(page.Messages) != 1 {
			tb.Fatalf("alice@%s has %d messages", d, len(page.Messages))
		}
		target := authzTarget{Domain: d, MsgID: page.Messages[0].ID}
		if d == victimDomain {
			e.Victim = target
		} else {
			e.Own = target
		}
	}
	admin.Send(tb, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "198.51.100.1"}).Expect(tb, http.StatusCreated)
	admin.MustImportCertificate(tb, "mail", pki.Leaf, false)
	admin.Send(tb, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node3"}).Expect(tb, http.StatusCreated)
	// The deliveries' usage reaches the store before any test reads it.
	mustOutboxSent(tb, env.Outbox)
	return e
}

// mustOutboxSent waits until the outbox has sent (and the primary
// applied) every change reported so far.
func mustOutboxSent(tb testing.TB, ob *cluster.Outbox) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ob.Queued() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := ob.Queued(); n != 0 {
		tb.Fatalf("%d changes to mail still queued", n)
	}
}

// authzSnapshot reads, as the global administrator, everything the walk
// could change: domains, both domains' accounts (rights, mailbox paths,
// frozen and disabled flags, usage), the victim's mail, settings,
// screening, certificates and servers.
func authzSnapshot(t *testing.T, e *authzEnv) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var reqs []Request
	get := func(path, accept string) {
		reqs = append(reqs, Request{Method: http.MethodGet, Path: path, Accept: accept})
	}
	get("/api/v1/domains", "")
	for _, tg := range []authzTarget{e.Own, e.Victim} {
		dom := "/api/v1/domains/" + tg.Domain
		get(dom, "")
		get(dom+"/accounts", "")
		for _, m := range []string{"alice", "bob", "user", "dadmin", "gadmin"} {
			get(dom+"/accounts/"+m, "")
		}
		get(dom+"/accounts/alice/messages", "")
		get(dom+"/accounts/alice/messages/"+tg.MsgID, "")
		get(dom+"/accounts/alice/usage", "")
		for _, p := range []string{"/aliases", "/aliases/sales", "/lists", "/lists/team", "/lists/team/members",
			"/groups", "/groups/staff", "/groups/staff/members", "/dkim"} {
			get(dom+p, "")
		}
	}
	get("/api/v1/settings", "")
	get("/api/v1/settings/mailcluster", "text/plain")
	get("/api/v1/screening/ips", "")
	get("/api/v1/screening/accounts", "")
	get("/api/v1/certificates", "")
	get("/api/v1/cluster/servers", "")
	get("/api/v1/queue", "")
	for _, r := range reqs {
		out[r.Path+" "+r.Accept] = e.Admin.Do(t, r).Expect(t, http.StatusOK).Body
	}
	for _, p := range []string{"/api/v1/domains/new.test", "/api/v1/domains/" + victimDomain + "/accounts/new",
		"/api/v1/domains/" + attackerDomain + "/accounts/new"} {
		e.Admin.Get(t, p).ExpectProblem(t, http.StatusNotFound, "not-found")
	}
	return out
}

// withDomain returns r aimed at domain instead of the victim's.
func withDomain(r Request, domain string) Request {
	r.Path = strings.ReplaceAll(r.Path, victimDomain, domain)
	if r.Body != nil {
		r.Body = bytes.ReplaceAll(r.Body, []byte(victimDomain), []byte(domain))
	}
	return r
}

// TestAuthzEveryOperation walks every operation of openapi.yaml, aimed at
// victim.test and at the node's global objects, as the domain
// administrator of attacker.test and as a plain user of attacker.test:
//   - the plain user gets 401 wherever credentials are needed (mail users
//     have no API access), and the XML-API status 8;
//   - the domain administrator gets 403 for every global operation and
//     for every operation on victim.test's objects, and the same 403 for
//     an absent domain (the answer does not tell whether a domain
//     exists); lists answer with attacker.test's objects only; the
//     XML-API answers status 9;
//   - Basic credentials never open the internal API or stand in for a
//     thaw token, and change nothing on the open operations;
//   - afterwards nothing changed: the store index, and everything the
//     global administrator reads, victim's mail included; no switchover
//     ran and no node was asked to join.
func TestAuthzEveryOperation(t *testing.T) {
	e := mustOpenAuthzEnv(t)
	names, ops := authzOperations(t, e.Victim)
	dadmin := e.client("dadmin@" + attackerDomain)
	user := e.client("user@" + attackerDomain)
	anon := e.Admin.Anonymous()
	before := authzSnapshot(t, e)
	index := e.Store.Index()
	asked, _ := e.Admission.Calls()

	for _, name := range names {
		c := ops[name]
		t.Run(name, func(t *testing.T) {
			t.Run("User", func(t *testing.T) {
				authzExpectUser(t, c, user, anon)
			})
			t.Run("DomainAdmin", func(t *testing.T) {
				authzExpectDomainAdmin(t, c, dadmin, anon)
			})
		})
	}

	t.Run("NothingChanged", func(t *testing.T) {
		if got := e.Store.Index(); got != index {
			t.Errorf("store index moved from %d to %d", index, got)
		}
		after := authzSnapshot(t, e)
		for k, b := range before {
			if !bytes.Equal(b, after[k]) {
				t.Errorf("%s changed:\n%s\nwas\n%s", k, after[k], b)
			}
		}
		if n := e.Switches.count(); n != 0 {
			t.Errorf("%d switchovers ran", n)
		}
		if now, _ := e.Admission.Calls(); len(now) != len(asked) {
			t.Errorf("admission was asked about %v", now[len(asked):])
		}
	})
}

// authzExpectUser checks what a plain user gets from one operation.
func authzExpectUser(t *testing.T, c authzCase, user, anon *Client) {
	t.Helper()
	switch c.rule {
	case authzOpen:
		authzExpectAsAnonymous(t, c.req, user, anon)
	case authzToken:
		user.Do(t, c.req).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	case authzInternal:
		authzExpectNotBasic(t, user.Do(t, c.req))
	case authzXMLAPI:
		res := user.Do(t, c.req).Expect(t, http.StatusUnauthorized)
		if !bytes.Contains(res.Body, []byte(`<Status id="8" value="0x8007052E"`)) {
			t.Errorf("XML-API answer without status 8:\n%s", res.Body)
		}
	default:
		user.Do(t, c.req).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	}
}

// authzExpectDomainAdmin checks what the domain administrator of
// attacker.test gets from one operation aimed at victim.test.
func authzExpectDomainAdmin(t *testing.T, c authzCase, dadmin, anon *Client) {
	t.Helper()
	switch c.rule {
	case authzOpen:
		authzExpectAsAnonymous(t, c.req, dadmin, anon)
	case authzToken:
		dadmin.Do(t, c.req).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	case authzInternal:
		authzExpectNotBasic(t, dadmin.Do(t, c.req))
	case authzXMLAPI:
		res := dadmin.Do(t, c.req).Expect(t, http.StatusOK)
		if !bytes.Contains(res.Body, []byte(`<Status id="9" value="0x80070005"`)) {
			t.Errorf("XML-API answer without status 9:\n%s", res.Body)
		}
	case authzGlobal:
		dadmin.Do(t, c.req).ExpectProblem(t, http.StatusForbidden, "forbidden")
	case authzDomain:
		if !strings.Contains(c.req.Path+string(c.req.Body), victimDomain) {
			t.Fatalf("the request does not aim at %s", victimDomain)
		}
		dadmin.Do(t, c.req).ExpectProblem(t, http.StatusForbidden, "forbidden")
		dadmin.Do(t, withDomain(c.req, absentDomain)).ExpectProblem(t, http.StatusForbidden, "forbidden")
	case authzFiltered:
		res := dadmin.Do(t, c.req).Expect(t, http.StatusOK)
		if bytes.Contains(res.Body, []byte(victimDomain)) {
			t.Errorf("a domain administrator sees %s:\n%s", victimDomain, res.Body)
		}
		if !bytes.Contains(res.Body, []byte(attackerDomain)) {
			t.Errorf("a domain administrator does not see its own domain:\n%s", res.Body)
		}
	case authzAnyAdmin:
		res := dadmin.Do(t, c.req).Expect(t, http.StatusOK)
		if bytes.Contains(res.Body, []byte(victimDomain)) {
			t.Errorf("the answer names %s:\n%s", victimDomain, res.Body)
		}
	default:
		t.Fatalf("unknown rule %q", c.rule)
	}
}

// authzExpectAsAnonymous checks that credentials change nothing on an
// open operation.
func authzExpectAsAnonymous(t *testing.T, r Request, c, anon *Client) {
	t.Helper()
	want := anon.Do(t, r).Status
	if got := c.Do(t, r).Status; got != want {
		t.Errorf("status %d with credentials, %d without", got, want)
	}
}

// authzExpectNotBasic checks the internal API's refusal of an account's
// Basic credentials: 401, and no invitation to send Basic credentials.
func authzExpectNotBasic(t *testing.T, res *Response) {
	t.Helper()
	res.ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	if got := res.Header.Get("WWW-Authenticate"); strings.HasPrefix(got, "Basic") {
		t.Errorf("WWW-Authenticate %q asks an account for its password", got)
	}
}

// TestAuthzRequestsAreValid proves that the walk's refusals come from
// authorization: on fresh nodes (one for the reads, one per write) the
// global administrator gets a 2xx for every request of the table (the
// XML-API: status 0), and the domain administrator of attacker.test gets
// a 2xx for every domain operation when it names attacker.test instead.
// The open, token and internal operations are left out: their callers
// are not administrators.
func TestAuthzRequestsAreValid(t *testing.T) {
	probe := mustOpenAuthzEnv(t)
	names, _ := authzOperations(t, probe.Victim)
	envFor := func(method string) *authzEnv {
		if method == http.MethodGet || method == http.MethodHead {
			return probe
		}
		return mustOpenAuthzEnv(t)
	}
	expect2xx := func(t *testing.T, res *Response) {
		t.Helper()
		if res.Status < 200 || res.Status > 299 {
			t.Fatalf("status %d, want 2xx: %s", res.Status, res.Body)
		}
	}
	for _, name := range names {
		method, _, _ := strings.Cut(name, " ")
		// One node serves both checks: the victim's and the global
		// objects a write changes are not the ones attacker.test's
		// administrator then works on.
		e := envFor(method)
		t.Run(name, func(t *testing.T) {
			_, ops := authzOperations(t, e.Victim)
			c := ops[name]
			switch c.rule {
			case authzOpen, authzToken, authzInternal:
				t.Skipf("rule %s: no administrator is its caller", c.rule)
			case authzXMLAPI:
				res := e.Admin.Do(t, c.req).Expect(t, http.StatusOK)
				if !bytes.Contains(res.Body, []byte(`<Status id="0"`)) {
					t.Fatalf("the global administrator gets:\n%s", res.Body)
				}
			default:
				expect2xx(t, e.Admin.Do(t, c.req))
			}
		})
		t.Run(name+" (own domain)", func(t *testing.T) {
			_, ops := authzOperations(t, e.Own)
			c := ops[name]
			if c.rule != authzDomain {
				t.Skipf("rule %s", c.rule)
			}
			expect2xx(t, e.client("dadmin@"+attackerDomain).Do(t, c.req))
		})
	}
}

// TestAuthzOwnDomainLimits checks what a domain administrator may not do
// even inside its own domain: choose a mailbox path (only global
// administrators set mailbox paths), grant global rights, freeze, change
// or delete a global administrator of its domain, or touch a global
// administrator's mail; and, across domains, read another domain's mail.
// Each refusal is 403 and leaves the account as it was.
func TestAuthzOwnDomainLimits(t *testing.T) {
	e := mustOpenAuthzEnv(t)
	dadmin := e.client("dadmin@" + attackerDomain)
	own := "/api/v1/domains/" + attackerDomain + "/accounts"
	root, err := mailboxRoot(e)
	if err != nil {
		t.Fatal(err)
	}
	// A path a global administrator may set: below the mailbox root.
	path := root + "/" + attackerDomain + "/elsewhere"

	account := func(t *testing.T, mailbox string) Account {
		t.Helper()
		var a Account
		e.Admin.Get(t, own+"/"+mailbox).Expect(t, http.StatusOK).JSON(t, &a)
		return a
	}
	refused := func(t *testing.T, r Request) {
		t.Helper()
		index := e.Store.Index()
		dadmin.Do(t, r).ExpectProblem(t, http.StatusForbidden, "forbidden")
		if got := e.Store.Index(); got != index {
			t.Errorf("store index moved from %d to %d", index, got)
		}
	}
	send := func(method, p, body string) Request {
		return Request{Method: method, Path: p, Body: []byte(body)}
	}

	t.Run("MailboxPathOnCreate", func(t *testing.T) {
		refused(t, send(http.MethodPost, own, `{"mailbox":"new1","password":"new-pass-123","mailboxPath":"`+path+`"}`))
		e.Admin.Get(t, own+"/new1").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("MailboxPathOnUpdate", func(t *testing.T) {
		was := account(t, "user").MailboxPath
		refused(t, send(http.MethodPatch, own+"/user", `{"mailboxPath":"`+path+`"}`))
		if got := account(t, "user").MailboxPath; got != was {
			t.Errorf("mailbox path %q, was %q", got, was)
		}
	})
	t.Run("MailboxPathOfAnotherAccount", func(t *testing.T) {
		// The attack: an own account pointed at another domain's mailbox.
		victim := account(t, "alice").MailboxPath
		var v Account
		e.Admin.Get(t, "/api/v1/domains/"+victimDomain+"/accounts/alice").Expect(t, http.StatusOK).JSON(t, &v)
		if victim == "" || v.MailboxPath == "" {
			t.Fatal("no mailbox paths in the answers")
		}
		refused(t, send(http.MethodPatch, own+"/user", `{"mailboxPath":"`+v.MailboxPath+`"}`))
		refused(t, send(http.MethodPost, own, `{"mailbox":"new2","password":"new-pass-123","mailboxPath":"`+v.MailboxPath+`"}`))
		e.Admin.Get(t, own+"/new2").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("GrantGlobalOnCreate", func(t *testing.T) {
		refused(t, send(http.MethodPost, own, `{"mailbox":"new3","password":"new-pass-123","adminRights":"global"}`))
		e.Admin.Get(t, own+"/new3").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("GrantGlobalOnUpdate", func(t *testing.T) {
		refused(t, send(http.MethodPatch, own+"/user", `{"adminRights":"global"}`))
		refused(t, send(http.MethodPatch, own+"/dadmin", `{"adminRights":"global"}`))
		if got := account(t, "user").AdminRights; got != "none" {
			t.Errorf("user has rights %q", got)
		}
	})
	t.Run("FreezeGlobalAdmin", func(t *testing.T) {
		defer func() {
			// Thaw it, so that the next checks fail for their own reasons.
			if account(t, "gadmin").Frozen {
				e.Admin.Delete(t, "/api/v1/screening/accounts/gadmin@"+attackerDomain).Expect(t, http.StatusNoContent)
			}
		}()
		for _, d := range []string{attackerDomain, victimDomain} {
			refused(t, send(http.MethodPost, "/api/v1/screening/accounts", `{"address":"gadmin@`+d+`","reason":"test"}`))
		}
		if account(t, "gadmin").Frozen {
			t.Fatal("the global administrator is frozen")
		}
		e.client("gadmin@"+attackerDomain).Get(t, "/api/v1/settings").Expect(t, http.StatusOK)
	})
	t.Run("ChangeGlobalAdmin", func(t *testing.T) {
		refused(t, send(http.MethodPatch, own+"/gadmin", `{"password":"taken-over-1"}`))
		refused(t, send(http.MethodPatch, own+"/gadmin", `{"disabled":true}`))
		refused(t, send(http.MethodPatch, own+"/gadmin", `{"adminRights":"none"}`))
		refused(t, Request{Method: http.MethodDelete, Path: own + "/gadmin"})
		e.client("gadmin@"+attackerDomain).Get(t, "/api/v1/settings").Expect(t, http.StatusOK)
	})
	t.Run("GlobalAdminMail", func(t *testing.T) {
		// A global administrator's mailbox holds its thaw tokens.
		e.MustDeliver(t, "gadmin@"+attackerDomain, "for the global administrator")
		// The delivery's reports (its usage, then the change of INBOX)
		// are applied on their own; wait for them, so that they cannot
		// move the store index during the checks below.
		mustOutboxSent(t, e.Outbox)
		if _, ok := e.Store.Get(schema.Usage(attackerDomain, "gadmin")); !ok {
			t.Fatal("the delivery's usage was not published")
		}
		var page MessageList
		e.Admin.Get(t, own+"/gadmin/messages").Expect(t, http.StatusOK).JSON(t, &page)
		if len(page.Messages) != 1 {
			t.Fatalf("%d messages", len(page.Messages))
		}
		refused(t, Request{Method: http.MethodGet, Path: own + "/gadmin/messages"})
		refused(t, Request{Method: http.MethodGet, Path: own + "/gadmin/messages/" + page.Messages[0].ID})
		dadmin.Do(t, Request{Method: http.MethodDelete, Path: own + "/gadmin/messages/" + page.Messages[0].ID}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
		e.Admin.Get(t, own+"/gadmin/messages/"+page.Messages[0].ID).Expect(t, http.StatusOK)
	})
	t.Run("OtherDomainMail", func(t *testing.T) {
		v := "/api/v1/domains/" + victimDomain + "/accounts/alice/messages"
		refused(t, Request{Method: http.MethodGet, Path: v})
		refused(t, Request{Method: http.MethodGet, Path: v + "/" + e.Victim.MsgID})
	})
	t.Run("OwnPlainAccounts", func(t *testing.T) {
		// The positive control: the same administrator manages its own
		// domain's plain accounts.
		dadmin.Get(t, "/api/v1/domains/"+attackerDomain).Expect(t, http.StatusOK)
		dadmin.Send(t, http.MethodPost, own, map[string]any{"mailbox": "staff", "password": "staff-pass-1"}).Expect(t, http.StatusCreated)
		dadmin.Send(t, http.MethodPatch, own+"/staff", map[string]any{"fullName": "Staff", "adminRights": "domain"}).Expect(t, http.StatusOK)
		dadmin.Get(t, own+"/alice/messages/"+e.Own.MsgID).Expect(t, http.StatusOK)
		dadmin.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "staff@" + attackerDomain}).
			Expect(t, http.StatusCreated)
		dadmin.Delete(t, "/api/v1/screening/accounts/staff@"+attackerDomain).Expect(t, http.StatusNoContent)
		dadmin.Delete(t, own+"/staff").Expect(t, http.StatusNoContent)
	})
}

// mailboxRoot returns the node's mailbox root.
func mailboxRoot(e *authzEnv) (string, error) {
	roots := mailcluster.MailboxRoots(mustLocal(e.Svc).Setting)
	if len(roots) == 0 {
		return "", mailcluster.Errorf(mailcluster.EINTERNAL, "no mailbox root")
	}
	return roots[0], nil
}
