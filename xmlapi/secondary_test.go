package xmlapi_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// fakeLeadership is a node that is not the primary.
type fakeLeadership struct {
	role    mailcluster.Role
	primary mailcluster.PrimaryRef
	ok      bool
}

func (l fakeLeadership) Role() mailcluster.Role                  { return l.role }
func (l fakeLeadership) Primary() (mailcluster.PrimaryRef, bool) { return l.primary, l.ok }

// writes are one valid request of every write operation; a name may add
// " (variant)" after the operation. secondaryWrites checks it against the
// handler's classification, so a new write operation fails the tests until
// it has a request here.
var writes = []struct{ op, params string }{
	{"CreateDomain", "<Domain>new.example</Domain>"},
	{"UpdateDomain", "<Domain>example.com</Domain><Description>changed</Description>"},
	{"DeleteDomain", "<Domain>example.com</Domain><Force>Yes</Force>"},
	{"CreateUser", "<Domain>example.com</Domain><Mailbox>new</Mailbox><Details><Password>secret-pass-new</Password></Details>"},
	{"UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>Yes</Frozen><Password>secret-pass-changed</Password></Details>"},
	{"DeleteUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><RemoveMailbox>Yes</RemoveMailbox>"},
	{"UpdateIniSettings", `<Section name="Passwords"><Key name="MinLength">12</Key></Section><Section name="SMTP"><Key name="Banner" delete="Yes"/></Section>`},
	{"BlockIP", "<IP>203.0.113.9</IP><Minutes>10</Minutes><Reason>test</Reason>"},
	{"UnblockIP", "<IP>198.51.100.1</IP>"},
	{"FreezeAccount", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>"},
	{"ThawAccount", "<Address>bob@example.com</Address>"},
	{"ImportCertificate", importParams("mail", pki.Leaf2.ChainPEM, pki.Leaf2.KeyPEM, "<Default>Yes</Default>")},
	{"ImportCertificate (new)", importParams("other", pki.Inter.ChainPEM, pki.Inter.KeyPEM, "")},
	{"DeleteCertificate", "<Name>mail</Name>"},
	{"AddClusterNode", "<Node>node2</Node>"},
	{"AddClusterNode (address)", "<Address>127.0.0.2:8080</Address>"},
	{"RemoveClusterNode", "<Name>node3</Name>"},
	{"UpdateDomain (postmaster)", "<Domain>example.com</Domain><Postmaster>alice@example.com</Postmaster>"},
	{"CreateUser (memberships)", "<Domain>example.com</Domain><Mailbox>new</Mailbox><Aliases><Alias>new.alias</Alias></Aliases>" +
		"<ListMembership><List>staff</List></ListMembership><GroupMembership><Group>team</Group></GroupMembership>"},
	{"UpdateUser (memberships)", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Aliases><Alias>extra</Alias></Aliases>` +
		`<ListMembership><List action="remove">staff</List></ListMembership><GroupMembership><Group action="remove">team</Group></GroupMembership>`},
	{"CreateAlias", "<Domain>example.com</Domain><Alias>new.alias</Alias><Target>alice@example.com</Target>"},
	{"UpdateAlias", "<Domain>example.com</Domain><Alias>sales</Alias><Target>bob@example.com</Target>"},
	{"DeleteAlias", "<Alias>sales@example.com</Alias>"},
	{"CreateList", `<Domain>example.com</Domain><ListName>newlist</ListName><Members><Member>alice@example.com</Member><Member group="team"/></Members>`},
	{"UpdateList", `<List>staff@example.com</List><Policy>anyone</Policy><Members><Member>bob@example.com</Member><Member action="remove">alice@example.com</Member></Members>`},
	{"DeleteList", "<Domain>example.com</Domain><ListName>staff</ListName>"},
	{"CreateGroup", "<Domain>example.com</Domain><Group>newgroup</Group><Members><Member>bob</Member></Members>"},
	{"UpdateGroup", `<Domain>example.com</Domain><Group>team</Group><QuotaBytes>1000</QuotaBytes><Members><Member>bob</Member><Member action="remove">alice</Member></Members>`},
	{"DeleteGroup", "<Domain>example.com</Domain><Group>team</Group>"},
	{"CreateDKIMKey", "<Domain>example.com</Domain><Selector>new</Selector><Algorithm>ed25519-sha256</Algorithm>"},
	{"DeleteDKIMKey", "<Domain>example.com</Domain>"},
	{"RetryQueueMessage", "<ID>" + queueID1 + "</ID>"},
	{"DeleteQueueMessage", "<ID>" + queueID1 + "</ID>"},
}

// readParams are the parameters of the read operations that need some;
// every other read is called without parameters.
var readParams = map[string]string{
	"GetDomainList":   "<Get><Users/></Get>",
	"GetDomainInfo":   "<Domain>example.com</Domain>",
	"GetUserInfo":     "<Domain>example.com</Domain><Mailbox>alice</Mailbox>",
	"GetAliasList":    "<Domain>example.com</Domain>",
	"GetListList":     "<Domain>example.com</Domain>",
	"GetListInfo":     "<List>staff@example.com</List>",
	"GetGroupList":    "<Domain>example.com</Domain>",
	"GetGroupInfo":    "<Domain>example.com</Domain><Group>team</Group>",
	"GetDKIMKey":      "<Domain>example.com</Domain>",
	"GetQueueMessage": "<ID>" + queueID1 + "</ID>",
}

// TestOperationsClassified proves that the handler classifies every
// operation it dispatches as a read or a write, and nothing else.
func TestOperationsClassified(t *testing.T) {
	ops := map[string]bool{}
	for _, op := range operations(t) {
		ops[op] = true
		if _, ok := xmlapi.WriteOperations[op]; !ok {
			t.Errorf("operation %s is dispatched but not classified as a read or a write", op)
		}
	}
	for op := range xmlapi.WriteOperations {
		if !ops[op] {
			t.Errorf("operation %s is classified but not dispatched", op)
		}
	}
}

// secondaryWrites returns the requests of writes, checking that every
// operation classified as a write has one and that each names a write.
func secondaryWrites(t *testing.T) []struct{ op, params string } {
	t.Helper()
	covered := map[string]bool{}
	for _, w := range writes {
		op, _, _ := strings.Cut(w.op, " ")
		if !xmlapi.WriteOperations[op] {
			t.Errorf("writes has a request for %s, which is not a write operation", op)
		}
		covered[op] = true
	}
	for _, op := range operations(t) {
		if xmlapi.WriteOperations[op] && !covered[op] {
			t.Errorf("write operation %s has no request in writes", op)
		}
	}
	return writes
}

// secondaryReads returns every operation classified as a read.
func secondaryReads(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, op := range operations(t) {
		if w, ok := xmlapi.WriteOperations[op]; ok && !w {
			out = append(out, op)
		}
	}
	if len(out) < 8 {
		t.Fatalf("only %d read operations: %v", len(out), out)
	}
	return out
}

// mustSecondary serves the XML-API of a node with role secondary over the
// same store as e's primary.
func mustSecondary(t *testing.T, e *Env, lead mailcluster.Leadership) string {
	t.Helper()
	svc := service.New(e.Store, lead, slog.New(slog.DiscardHandler), service.Options{
		BcryptCost: bcrypt.MinCost,
		NodeName:   "node2",
		Mode:       mailcluster.ModeCluster,
		// A node the admission check would accept: only the role refuses.
		Admit: &fakeAdmission{},
		// The queue on the shared path that every node reads.
		Queue: newFakeQueue(queueID1),
	})
	_, url := e.Serve(t, svc)
	return url
}

func TestSecondary(t *testing.T) {
	// The server writes aim at a registered node and at one that would pass.
	e := MustOpenEnv(t, WithAdmission(&fakeAdmission{}))
	ctx := service.SystemContext(context.Background(), "test")
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "secret-pass-alice"})
	if err := e.Svc.SetSetting(ctx, "mailcluster", "SMTP", "Banner", "hi"); err != nil {
		t.Fatal(err)
	}
	// The screening writes aim at a blocked address and a frozen account.
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob"})
	e.mustBlock(t, "198.51.100.1", time.Time{})
	e.mustFreeze(t, "bob@example.com")
	// The certificate writes aim at an existing certificate.
	e.mustImport(t, "mail", pki.Leaf, false)
	e.Call(t, "AddClusterNode", "<Node>node3</Node>").MustOK(t)
	// The alias, list and group writes aim at existing ones.
	e.mustCreateAlias(t, "example.com", "sales", "alice@example.com")
	e.mustCreateGroup(t, mailcluster.GroupCreate{Domain: "example.com", Name: "team", Members: []string{"alice"}})
	e.mustCreateList(t, mailcluster.ListCreate{Domain: "example.com", Name: "staff",
		Members: []mailcluster.ListMember{{Address: "alice@example.com"}}})
	// The DKIM writes aim at an existing key.
	e.mustCreateDKIMKey(t, "example.com")
	mail := e.mailState(t, "example.com")

	// unchanged asserts that the refused writes changed nothing.
	unchanged := func(t *testing.T, index uint64) {
		t.Helper()
		if got := e.Store.Index(); got != index {
			t.Fatalf("store index moved from %d to %d", index, got)
		}
		if _, err := e.Svc.FindDomain(ctx, "new.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Fatalf("new.example exists: %v", err)
		}
		d, err := e.Svc.FindDomain(ctx, "example.com")
		if err != nil || d.Description != "" || d.Postmaster != "" || d.AccountCount != 2 {
			t.Fatalf("example.com %+v, %v", d, err)
		}
		if a := e.MustFindAccount(t, "example.com", "alice"); a.Frozen {
			t.Fatal("alice frozen")
		}
		if _, ok := mustLocal(e.Svc).BlockedIP("203.0.113.9"); ok {
			t.Fatal("203.0.113.9 blocked")
		}
		if _, ok := mustLocal(e.Svc).BlockedIP("198.51.100.1"); !ok {
			t.Fatal("198.51.100.1 unblocked")
		}
		if got := e.frozen(t); len(got) != 1 || got[0] != "bob@example.com" {
			t.Fatalf("frozen %v", got)
		}
		if _, err := e.Svc.Authenticate(ctx, "alice@example.com", "secret-pass-changed"); err == nil {
			t.Fatal("password changed")
		}
		if v, err := e.Svc.GetSetting(ctx, "mailcluster", "Passwords", "MinLength"); err != nil || v != "8" {
			t.Fatalf("MinLength %q, %v", v, err)
		}
		if v, err := e.Svc.GetSetting(ctx, "mailcluster", "SMTP", "Banner"); err != nil || v != "hi" {
			t.Fatalf("Banner %q, %v", v, err)
		}
		if cs, err := e.Svc.Certificates(ctx); err != nil || len(cs) != 1 || cs[0].Fingerprint != pki.Leaf.Fingerprint {
			t.Fatalf("certificates %v, %v", cs, err)
		}
		if svs, err := e.Svc.Members(ctx); err != nil || len(svs) != 1 || svs[0].Name != "node3" {
			t.Fatalf("servers %v, %v", svs, err)
		}
		if got := e.mailState(t, "example.com"); got != mail {
			t.Fatalf("aliases, lists or groups changed:\n%s\nwas\n%s", got, mail)
		}
	}

	t.Run("ReadOnly", func(t *testing.T) {
		url := mustSecondary(t, e, fakeLeadership{role: mailcluster.RoleSecondary,
			primary: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}, ok: true})
		index := e.Store.Index()
		for _, w := range secondaryWrites(t) {
			t.Run(w.op, func(t *testing.T) {
				op, _, _ := strings.Cut(w.op, " ")
				r := CallAt(t, url, op, w.params)
				msg := r.MustStatus(t, xmlapi.StatusReadOnly)
				if !strings.Contains(msg, primaryName) || !strings.Contains(msg, primaryURL) {
					t.Fatalf("message %q does not name the primary", msg)
				}
				st := r.Doc.FindElement("/MDaemon/API/Response/Status")
				if got := st.SelectAttrValue("primary", ""); got != primaryURL {
					t.Fatalf("primary attribute %q", got)
				}
			})
		}
		unchanged(t, index)

		t.Run("ReadsWork", func(t *testing.T) {
			// Every read answers on a secondary and changes nothing.
			for _, op := range secondaryReads(t) {
				CallAt(t, url, op, readParams[op]).MustOK(t)
			}
			unchanged(t, index)
			r := CallAt(t, url, "GetVersionInfo", "").MustOK(t)
			if r.Text("Role") != "secondary" || r.Text("Node") != "node2" || r.Text("Mode") != "cluster" {
				t.Fatalf("answer:\n%s", r.Body)
			}
			if p := r.Result().FindElement("Primary"); p == nil || p.SelectAttrValue("url", "") != primaryURL {
				t.Fatalf("Primary missing:\n%s", r.Body)
			}
			CallAt(t, url, "GetDomainList", "<Get><Users/></Get>").MustOK(t)
			CallAt(t, url, "GetDomainInfo", "<Domain>example.com</Domain>").MustOK(t)
			CallAt(t, url, "GetUserInfo", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>").MustOK(t)
			CallAt(t, url, "GetIniSettings", "").MustOK(t)
			CallAt(t, url, "GetDynamicScreening", "").MustOK(t)
			CallAt(t, url, "GetCertificates", "").MustOK(t)
			CallAt(t, url, "GetClusterLog", "").MustOK(t)
			r = CallAt(t, url, "GetClusterInfo", "").MustOK(t)
			if r.Text("ClusterInfo/Enabled") != "Yes" {
				t.Fatalf("Enabled:\n%s", r.Body)
			}
			mustAttrs(t, r.Result().FindElement("ClusterInfo/LocalNode"), map[string]string{"name": "node2", "primary": "No", "role": "secondary"})
			mustAttrs(t, r.Result().FindElement("ClusterInfo/Primary"), map[string]string{"name": primaryName, "url": primaryURL})
			// The primary's registered servers are listed on every node.
			if got := serverNames(t, url); len(got) != 1 || got[0] != "node3" {
				t.Fatalf("servers %v", got)
			}
		})
	})

	t.Run("NoPrimary", func(t *testing.T) {
		url := mustSecondary(t, e, fakeLeadership{role: mailcluster.RoleSecondary})
		index := e.Store.Index()
		for _, w := range secondaryWrites(t) {
			t.Run(w.op, func(t *testing.T) {
				op, _, _ := strings.Cut(w.op, " ")
				r := CallAt(t, url, op, w.params)
				r.MustStatus(t, xmlapi.StatusUnavailable)
				if st := r.Doc.FindElement("/MDaemon/API/Response/Status"); st.SelectAttr("primary") != nil {
					t.Fatalf("primary attribute without a primary:\n%s", r.Body)
				}
			})
		}
		unchanged(t, index)
		r := CallAt(t, url, "GetVersionInfo", "").MustOK(t)
		if r.Result().FindElement("Primary") != nil {
			t.Fatalf("Primary reported while none is known:\n%s", r.Body)
		}
	})
}
