package xmlapi_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// The authorization walk of the XML-API: every operation the handler
// dispatches is sent, aimed at another tenant's objects, by a domain
// administrator of attacker.test and by a plain user of attacker.test,
// and must be refused; nothing may change. Each request is one that its
// rightful caller gets status 0 for (checked on fresh nodes), so a
// refusal proves the authorization and not a malformed request.

// Domains of the authorization tests.
const (
	attackerDomain = "attacker.test"
	victimDomain   = "victim.test"
	absentDomain   = "absent.test" // never created
)

// xmlRule says who besides a global administrator may use an operation.
type xmlRule string

const (
	// xmlGlobal is reserved to global administrators: a domain
	// administrator gets status 9.
	xmlGlobal xmlRule = "global"
	// xmlDomain works on one domain's objects: the administrator of
	// another domain gets status 9, for an existing domain and an absent
	// one alike.
	xmlDomain xmlRule = "domain"
	// xmlFiltered answers every administrator, a domain administrator
	// with its own domain's objects only.
	xmlFiltered xmlRule = "filtered"
	// xmlAnyAdmin answers every administrator the same node facts.
	xmlAnyAdmin xmlRule = "any-admin"
)

// xmlAuthzCase is one request of the walk.
type xmlAuthzCase struct {
	rule   xmlRule
	params string
}

// xmlAuthzTable returns the walk's requests aimed at domain, keyed by
// operation name, optionally followed by " (variant)".
// TestAuthzEveryOperation fails when the handler dispatches an operation
// that has no entry here.
func xmlAuthzTable(domain string) map[string]xmlAuthzCase {
	dom := "<Domain>" + domain + "</Domain>"
	alice := dom + "<Mailbox>alice</Mailbox>"
	return map[string]xmlAuthzCase{
		"GetVersionInfo": {xmlAnyAdmin, ""},
		"GetDomainList":  {xmlFiltered, "<Get><Users/></Get>"},
		"GetDomainInfo":  {xmlDomain, dom},
		"CreateDomain":   {xmlGlobal, "<Domain>new.test</Domain>"},
		"UpdateDomain":   {xmlGlobal, dom + "<Description>changed</Description><MaxAccounts>50</MaxAccounts>"},
		"DeleteDomain":   {xmlGlobal, dom + "<Force>Yes</Force>"},
		"GetUserInfo":    {xmlDomain, alice},
		"CreateUser": {xmlDomain, dom + "<Mailbox>new</Mailbox><Details><Password>secret-pass-new1</Password>" +
			"<FullName>New</FullName></Details>"},
		"UpdateUser": {xmlDomain, alice + "<Details><FullName>Changed</FullName><Password>secret-pass-changed</Password>" +
			"<Disabled>Yes</Disabled></Details>"},
		"DeleteUser":        {xmlDomain, alice + "<RemoveMailbox>Yes</RemoveMailbox>"},
		"GetIniSettings":    {xmlGlobal, ""},
		"UpdateIniSettings": {xmlGlobal, `<Section name="Passwords"><Key name="MinLength">12</Key></Section>`},
		// The default asks for the blocked addresses too: global only.
		"GetDynamicScreening":                   {xmlGlobal, ""},
		"GetDynamicScreening (blocked IPs)":     {xmlGlobal, "<Get><BlockedIPs/></Get>"},
		"GetDynamicScreening (frozen accounts)": {xmlFiltered, "<Get><FrozenAccounts/></Get>"},
		"BlockIP":                               {xmlGlobal, "<IP>203.0.113.9</IP><Minutes>10</Minutes><Reason>test</Reason>"},
		"UnblockIP":                             {xmlGlobal, "<IP>198.51.100.1</IP>"},
		"FreezeAccount":                         {xmlDomain, "<Address>alice@" + domain + "</Address><Reason>test</Reason>"},
		"FreezeAccount (domain and mailbox)":    {xmlDomain, alice},
		"ThawAccount":                           {xmlDomain, "<Address>bob@" + domain + "</Address>"},
		"ThawAccount (domain and mailbox)":      {xmlDomain, dom + "<Mailbox>bob</Mailbox>"},
		"ImportCertificate":                     {xmlGlobal, importParams("mail", pki.Leaf2.ChainPEM, pki.Leaf2.KeyPEM, "<Default>Yes</Default>")},
		"GetCertificates":                       {xmlGlobal, ""},
		"DeleteCertificate":                     {xmlGlobal, "<Name>mail</Name>"},
		"GetClusterInfo":                        {xmlGlobal, ""},
		"AddClusterNode":                        {xmlGlobal, "<Node>node2</Node>"},
		"RemoveClusterNode":                     {xmlGlobal, "<Name>node3</Name>"},
		"GetClusterLog":                         {xmlGlobal, ""},
		"UpdateDomain (postmaster)":             {xmlGlobal, dom + "<Postmaster>alice@" + domain + "</Postmaster>"},
		"CreateUser (memberships)": {xmlDomain, dom + "<Mailbox>new</Mailbox><Details><Password>secret-pass-new1</Password></Details>" +
			"<Aliases><Alias>new.alias</Alias></Aliases><ListMembership><List>news@" + domain + "</List></ListMembership>" +
			"<GroupMembership><Group>team</Group></GroupMembership>"},
		"UpdateUser (memberships)": {xmlDomain, alice + `<Aliases><Alias>extra</Alias><Alias action="remove">sales</Alias></Aliases>` +
			`<ListMembership><List action="remove">news</List></ListMembership><GroupMembership><Group>team</Group></GroupMembership>`},
		"GetAliasList":          {xmlDomain, dom},
		"CreateAlias":           {xmlDomain, dom + "<Alias>new.alias</Alias><Target>alice@" + domain + "</Target>"},
		"CreateAlias (address)": {xmlDomain, "<Alias>new.alias@" + domain + "</Alias><Target>alice@" + domain + "</Target>"},
		"UpdateAlias":           {xmlDomain, dom + "<Alias>sales</Alias><Target>bob@" + domain + "</Target>"},
		"DeleteAlias":           {xmlDomain, "<Alias>sales@" + domain + "</Alias>"},
		"GetListList":           {xmlDomain, dom},
		"GetListInfo":           {xmlDomain, "<List>news@" + domain + "</List>"},
		"CreateList": {xmlDomain, dom + `<ListName>newlist</ListName><Owner>alice@` + domain + `</Owner><Policy>moderated</Policy>` +
			`<Members><Member>alice@` + domain + `</Member><Member group="team"/></Members>`},
		"UpdateList": {xmlDomain, dom + `<ListName>news</ListName><Policy>anyone</Policy>` +
			`<Members><Member>bob@` + domain + `</Member><Member action="remove">alice@` + domain + `</Member></Members>`},
		"DeleteList":   {xmlDomain, dom + "<ListName>news</ListName>"},
		"GetGroupList": {xmlDomain, dom},
		"GetGroupInfo": {xmlDomain, dom + "<Group>team</Group>"},
		"CreateGroup":  {xmlDomain, dom + "<Group>newgroup</Group><QuotaBytes>1000</QuotaBytes><Members><Member>alice</Member></Members>"},
		"UpdateGroup": {xmlDomain, dom + `<Group>team</Group><Description>changed</Description>` +
			`<Members><Member>alice@` + domain + `</Member><Member action="remove">bob</Member></Members>`},
		"DeleteGroup":        {xmlDomain, dom + "<Group>team</Group>"},
		"CreateDKIMKey":      {xmlDomain, dom + "<Selector>new</Selector><Algorithm>ed25519-sha256</Algorithm>"},
		"GetDKIMKey":         {xmlDomain, dom},
		"DeleteDKIMKey":      {xmlDomain, dom},
		"GetQueueList":       {xmlGlobal, ""},
		"GetQueueMessage":    {xmlGlobal, "<ID>" + queueID1 + "</ID>"},
		"GetQueueStats":      {xmlGlobal, ""},
		"RetryQueueMessage":  {xmlGlobal, "<ID>" + queueID1 + "</ID>"},
		"DeleteQueueMessage": {xmlGlobal, "<ID>" + queueID1 + "</ID>"},
	}
}

// xmlAuthzNames returns the table's names, sorted, after checking that
// every dispatched operation has an entry and every entry names a
// dispatched operation.
func xmlAuthzNames(t *testing.T, table map[string]xmlAuthzCase) []string {
	t.Helper()
	dispatched := map[string]bool{}
	for _, op := range operations(t) {
		dispatched[op] = true
	}
	covered := map[string]bool{}
	var names []string
	for name := range table {
		op, _, _ := strings.Cut(name, " ")
		if !dispatched[op] {
			t.Errorf("xmlAuthzTable has %s, which the handler does not dispatch", name)
		}
		covered[op] = true
		names = append(names, name)
	}
	for op := range dispatched {
		if !covered[op] {
			t.Errorf("%s has no authorization rule in xmlAuthzTable: decide who may use it", op)
		}
	}
	sort.Strings(names)
	return names
}

// xmlOp returns the operation of a table name.
func xmlOp(name string) string {
	op, _, _ := strings.Cut(name, " ")
	return op
}

// authzPassword is the password of every account the tests create.
func authzPassword(address string) string { return "secret-pass-" + address }

// mustOpenAuthzEnv starts a node where attacker.test and victim.test each
// have alice and user (mail users), bob (a frozen mail user), dadmin (a
// domain administrator) and gadmin (a global administrator), the alias
// sales (to alice), the group team (bob) and the list news (alice and
// team), plus a
// blocked address 198.51.100.1, a certificate "mail", a registered
// server node3 and an admission check that would admit node2.
func mustOpenAuthzEnv(tb testing.TB) (*Env, *fakeAdmission) {
	tb.Helper()
	adm := &fakeAdmission{}
	e := MustOpenEnv(tb, WithAdmission(adm), WithQueue(newFakeQueue(queueID1)))
	ctx := service.SystemContext(context.Background(), "test")
	for _, d := range []string{attackerDomain, victimDomain} {
		e.MustCreateDomain(tb, d)
		for _, a := range []struct {
			mailbox string
			rights  mailcluster.AdminRights
		}{{"alice", mailcluster.AdminNone}, {"bob", mailcluster.AdminNone}, {"user", mailcluster.AdminNone},
			{"dadmin", mailcluster.AdminDomain}, {"gadmin", mailcluster.AdminGlobal}} {
			e.MustCreateAccount(tb, mailcluster.AccountCreate{Domain: d, Mailbox: a.mailbox,
				Password: authzPassword(a.mailbox + "@" + d), AdminRights: a.rights})
		}
		e.mustFreeze(tb, "bob@"+d)
		e.mustCreateAlias(tb, d, "sales", "alice@"+d)
		e.mustCreateGroup(tb, mailcluster.GroupCreate{Domain: d, Name: "team", Members: []string{"bob"}})
		e.mustCreateList(tb, mailcluster.ListCreate{Domain: d, Name: "news",
			Members: []mailcluster.ListMember{{Address: "alice@" + d}, {Group: "team"}}})
		e.mustCreateDKIMKey(tb, d)
	}
	e.mustBlock(tb, "198.51.100.1", time.Time{})
	e.mustImport(tb, "mail", pki.Leaf, false)
	if _, err := e.Svc.AddMember(ctx, "node3"); err != nil {
		tb.Fatal(err)
	}
	adm.mu.Lock()
	adm.asked = nil
	adm.mu.Unlock()
	return e, adm
}

// as runs an operation as address.
func (e *Env) as(tb testing.TB, address, op, params string) *Response {
	tb.Helper()
	return Post(tb, e.URL, address, authzPassword(address), strings.NewReader(Envelope(op, params)))
}

// authzState reads, as the node itself, everything the walk could change.
func authzState(t *testing.T, e *Env) string {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	state := map[string]any{}
	must := func(what string, v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		state[what] = v
	}
	ds, err := e.Svc.FindDomains(ctx)
	must("domains", ds, err)
	for _, d := range []string{attackerDomain, victimDomain} {
		as, _, err := e.Svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: d, Limit: 1000})
		must("accounts of "+d, as, err)
	}
	f, err := e.Svc.SettingsFile(ctx, "mailcluster")
	must("settings", f, err)
	ips, err := e.Svc.ListBlockedIPs(ctx)
	must("blocked", ips, err)
	fr, err := e.Svc.ListFrozenAccounts(ctx)
	must("frozen", fr, err)
	cs, err := e.Svc.Certificates(ctx)
	must("certificates", cs, err)
	svs, err := e.Svc.Members(ctx)
	must("servers", svs, err)
	state["mail"] = e.mailState(t, attackerDomain, victimDomain)
	b, err := json.MarshalIndent(state, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAuthzEveryOperation walks every operation the XML-API dispatches,
// aimed at victim.test and at the node's global objects:
//   - a plain user of attacker.test gets status 8 (HTTP 401) everywhere;
//   - the domain administrator of attacker.test gets status 9 for every
//     global operation and every operation on victim.test's objects, and
//     the same for an absent domain (no existence oracle); lists answer
//     with attacker.test's objects only;
//   - afterwards nothing changed: the store index, the state the node
//     reads, the victim's passwords; no node was asked to join.
func TestAuthzEveryOperation(t *testing.T) {
	e, adm := mustOpenAuthzEnv(t)
	table := xmlAuthzTable(victimDomain)
	names := xmlAuthzNames(t, table)
	dadmin, user := "dadmin@"+attackerDomain, "user@"+attackerDomain
	before := authzState(t, e)
	index := e.Store.Index()

	for _, name := range names {
		c, op := table[name], xmlOp(name)
		t.Run(name, func(t *testing.T) {
			t.Run("User", func(t *testing.T) {
				e.as(t, user, op, c.params).MustStatus(t, xmlapi.StatusUnauthorized)
			})
			t.Run("DomainAdmin", func(t *testing.T) {
				switch c.rule {
				case xmlGlobal:
					e.as(t, dadmin, op, c.params).MustStatus(t, xmlapi.StatusForbidden)
				case xmlDomain:
					if !strings.Contains(c.params, victimDomain) {
						t.Fatalf("the request does not aim at %s", victimDomain)
					}
					e.as(t, dadmin, op, c.params).MustStatus(t, xmlapi.StatusForbidden)
					absent := strings.ReplaceAll(c.params, victimDomain, absentDomain)
					e.as(t, dadmin, op, absent).MustStatus(t, xmlapi.StatusForbidden)
				case xmlFiltered:
					r := e.as(t, dadmin, op, c.params).MustOK(t)
					if strings.Contains(r.Body, victimDomain) {
						t.Errorf("a domain administrator sees %s:\n%s", victimDomain, r.Body)
					}
					if !strings.Contains(r.Body, attackerDomain) {
						t.Errorf("a domain administrator does not see its own domain:\n%s", r.Body)
					}
				case xmlAnyAdmin:
					r := e.as(t, dadmin, op, c.params).MustOK(t)
					if strings.Contains(r.Body, victimDomain) {
						t.Errorf("the answer names %s:\n%s", victimDomain, r.Body)
					}
				default:
					t.Fatalf("unknown rule %q", c.rule)
				}
			})
		})
	}

	t.Run("NothingChanged", func(t *testing.T) {
		if got := e.Store.Index(); got != index {
			t.Errorf("store index moved from %d to %d", index, got)
		}
		if after := authzState(t, e); after != before {
			t.Errorf("state changed:\n%s\nwas\n%s", after, before)
		}
		if _, err := e.Svc.Authenticate(service.SystemContext(context.Background(), "test"), "alice@"+victimDomain, "secret-pass-changed"); err == nil {
			t.Error("the victim's password was changed")
		}
		if asked := adm.Asked(); len(asked) != 0 {
			t.Errorf("admission was asked about %v", asked)
		}
	})
}

// TestAuthzRequestsAreValid proves that the walk's refusals come from
// authorization: on fresh nodes (one for the reads, one per write) the
// global administrator gets status 0 for every request of the table, and
// the domain administrator of attacker.test gets status 0 for every
// domain operation when it names attacker.test instead.
func TestAuthzRequestsAreValid(t *testing.T) {
	probe, _ := mustOpenAuthzEnv(t)
	victim, own := xmlAuthzTable(victimDomain), xmlAuthzTable(attackerDomain)
	envFor := func(name string) *Env {
		if strings.HasPrefix(name, "Get") {
			return probe
		}
		e, _ := mustOpenAuthzEnv(t)
		return e
	}
	for _, name := range xmlAuthzNames(t, victim) {
		op := xmlOp(name)
		// One node serves both checks: the victim's and the global
		// objects a write changes are not the ones attacker.test's
		// administrator then works on.
		e := envFor(name)
		t.Run(name, func(t *testing.T) {
			e.Call(t, op, victim[name].params).MustOK(t)
		})
		if own[name].rule != xmlDomain {
			continue
		}
		t.Run(name+" (own domain)", func(t *testing.T) {
			e.as(t, "dadmin@"+attackerDomain, op, own[name].params).MustOK(t)
		})
	}
}

// TestAuthzOwnDomainLimits checks, on the XML-API, what a domain
// administrator may not do inside its own domain: choose a mailbox path,
// grant global rights, freeze, change or delete a global administrator
// of its domain. Each refusal is status 9 and writes nothing; the same
// administrator manages its domain's plain accounts.
func TestAuthzOwnDomainLimits(t *testing.T) {
	e, _ := mustOpenAuthzEnv(t)
	dadmin := "dadmin@" + attackerDomain
	roots := mailcluster.MailboxRoots(mustLocal(e.Svc).Setting)
	if len(roots) == 0 {
		t.Fatal("no mailbox root")
	}
	// A path a global administrator may set: below the mailbox root.
	path := roots[0] + "/" + attackerDomain + "/elsewhere"
	victimPath := e.MustFindAccount(t, victimDomain, "alice").MailboxPath
	own := "<Domain>" + attackerDomain + "</Domain>"
	refused := func(t *testing.T, op, params string) {
		t.Helper()
		index := e.Store.Index()
		e.as(t, dadmin, op, params).MustStatus(t, xmlapi.StatusForbidden)
		if got := e.Store.Index(); got != index {
			t.Errorf("store index moved from %d to %d", index, got)
		}
	}

	t.Run("MailboxPathOnCreate", func(t *testing.T) {
		for _, p := range []string{path, victimPath} {
			refused(t, "CreateUser", own+"<Mailbox>new</Mailbox><Details><Password>secret-pass-new1</Password>"+
				"<MailDir>"+p+"</MailDir></Details>")
		}
	})
	t.Run("MailboxPathOnUpdate", func(t *testing.T) {
		was := e.MustFindAccount(t, attackerDomain, "user").MailboxPath
		for _, p := range []string{path, victimPath} {
			refused(t, "UpdateUser", own+"<Mailbox>user</Mailbox><Details><MailDir>"+p+"</MailDir></Details>")
		}
		if got := e.MustFindAccount(t, attackerDomain, "user").MailboxPath; got != was {
			t.Errorf("mailbox path %q, was %q", got, was)
		}
	})
	t.Run("GrantGlobal", func(t *testing.T) {
		refused(t, "CreateUser", own+"<Mailbox>new</Mailbox><Details><Password>secret-pass-new1</Password>"+
			"<AdminRights>Global</AdminRights></Details>")
		refused(t, "UpdateUser", own+"<Mailbox>user</Mailbox><Details><AdminRights>Global</AdminRights></Details>")
		refused(t, "UpdateUser", own+"<Mailbox>dadmin</Mailbox><Details><AdminRights>Global</AdminRights></Details>")
	})
	t.Run("FreezeGlobalAdmin", func(t *testing.T) {
		defer func() {
			// Thaw it, so that the next checks fail for their own reasons.
			if e.MustFindAccount(t, attackerDomain, "gadmin").Frozen {
				e.Call(t, "ThawAccount", "<Address>gadmin@"+attackerDomain+"</Address>").MustOK(t)
			}
		}()
		refused(t, "FreezeAccount", "<Address>gadmin@"+attackerDomain+"</Address>")
		refused(t, "FreezeAccount", own+"<Mailbox>gadmin</Mailbox>")
		refused(t, "FreezeAccount", "<Address>gadmin@"+victimDomain+"</Address>")
		refused(t, "UpdateUser", own+"<Mailbox>gadmin</Mailbox><Details><Frozen>Yes</Frozen></Details>")
		if e.MustFindAccount(t, attackerDomain, "gadmin").Frozen {
			t.Fatal("the global administrator is frozen")
		}
		e.as(t, "gadmin@"+attackerDomain, "GetIniSettings", "").MustOK(t)
	})
	t.Run("ChangeGlobalAdmin", func(t *testing.T) {
		refused(t, "UpdateUser", own+"<Mailbox>gadmin</Mailbox><Details><Password>secret-pass-taken</Password></Details>")
		refused(t, "UpdateUser", own+"<Mailbox>gadmin</Mailbox><Details><Disabled>Yes</Disabled></Details>")
		refused(t, "DeleteUser", own+"<Mailbox>gadmin</Mailbox>")
		e.as(t, "gadmin@"+attackerDomain, "GetIniSettings", "").MustOK(t)
	})
	t.Run("OwnPlainAccounts", func(t *testing.T) {
		staff := own + "<Mailbox>staff</Mailbox>"
		e.as(t, dadmin, "CreateUser", staff+"<Details><Password>secret-pass-staff</Password></Details>").MustOK(t)
		e.as(t, dadmin, "UpdateUser", staff+"<Details><FullName>Staff</FullName><AdminRights>Domain</AdminRights></Details>").MustOK(t)
		e.as(t, dadmin, "GetUserInfo", staff).MustOK(t)
		e.as(t, dadmin, "FreezeAccount", staff).MustOK(t)
		e.as(t, dadmin, "ThawAccount", staff).MustOK(t)
		e.as(t, dadmin, "DeleteUser", staff).MustOK(t)
	})
}
