package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/internal/testcert"
	"mailcluster/kvstore"
	"mailcluster/mailqueue"
	"mailcluster/service"
)

// readMethods are the methods of *service.Service taking a context that
// change nothing: a secondary answers them itself. Every other such method
// is a write and must be in writeCalls; TestReadOnlyEveryWrite fails when
// a method is in neither list, so a new method has to be classified.
var readMethods = map[string]bool{
	"AccountAliases":       true,
	"AccountGroups":        true,
	"AccountLists":         true,
	"AccountMemberships":   true,
	"AccountUsage":         true,
	"Authenticate":         true,
	"AuthenticateUser":     true,
	"AuthenticateMailUser": true,
	"Certificate":          true,
	"Certificates":         true,
	"ClusterLog":           true,
	"ClusterStatus":        true,
	"DKIMKey":              true,
	"QueueStats":           true,
	"QueuedMessage":        true,
	"QueuedMessages":       true,
	"FindAccount":          true,
	"FindAccounts":         true,
	"FindDomain":           true,
	"FindDomains":          true,
	"FindAlias":            true,
	"FindAliases":          true,
	"FindGroup":            true,
	"FindGroupMembers":     true,
	"FindGroups":           true,
	"FindList":             true,
	"FindListMembers":      true,
	"FindLists":            true,
	"FindMailAccount":      true,
	"GetSetting":           true,
	"ListBlockedIPs":       true,
	"ListFrozenAccounts":   true,
	"Local":                true,
	"Members":              true,
	"NodeInfo":             true,
	"SettingsFile":         true,
	"SettingsFiles":        true,
}

// roEnv is the state the write calls aim at: objects that exist, so that
// only the node's role can refuse them.
type roEnv struct {
	svc  *service.Service // the secondary
	cert testcert.Cert
}

// writeCalls holds one valid call of every write method.
var writeCalls = map[string]func(ctx context.Context, e roEnv) error{
	"AddMember": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.AddMember(ctx, "node2")
		return err
	},
	"ApplyUsageReport": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.ApplyUsageReport(ctx, mailcluster.UsageReport{Node: "node3", Epoch: "e1",
			Deltas: []mailcluster.UsageDelta{{Seq: 1, Domain: "localhost", Mailbox: "alice", Bytes: 100, Messages: 1, At: time.Now()}}})
		return err
	},
	"BlockIP": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.BlockIP(ctx, "203.0.113.9", time.Now().Add(time.Hour), "test")
		return err
	},
	// Bootstrap is run on a fresh store by bootstrapOnSecondary: on a
	// bootstrapped store it has nothing to write.
	"Bootstrap": nil,
	"CreateAccount": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "localhost", Mailbox: "new", Password: "pass-word-1",
			Aliases: []string{"new-alias"}, Lists: []string{"team"}, Groups: []string{"staff"}})
		return err
	},
	"CreateAlias": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateAlias(ctx, "localhost", "info", "alice@localhost")
		return err
	},
	"CreateGroup": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateGroup(ctx, mailcluster.GroupCreate{Domain: "localhost", Name: "new-group", Members: []string{"alice"}})
		return err
	},
	"CreateList": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateList(ctx, mailcluster.ListCreate{Domain: "localhost", Name: "new-list",
			Members: []mailcluster.ListMember{{Address: "alice@localhost"}}})
		return err
	},
	"CreateDomain": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateDomain(ctx, &mailcluster.Domain{Name: "new.example"})
		return err
	},
	"DeleteAccount": func(ctx context.Context, e roEnv) error { return e.svc.DeleteAccount(ctx, "localhost", "alice") },
	"DeleteAlias":   func(ctx context.Context, e roEnv) error { return e.svc.DeleteAlias(ctx, "localhost", "sales") },
	"DeleteDKIMKey": func(ctx context.Context, e roEnv) error { return e.svc.DeleteDKIMKey(ctx, "localhost") },
	"RetryQueuedMessage": func(ctx context.Context, e roEnv) error {
		return e.svc.RetryQueuedMessage(ctx, "18ed74049ef8c108-6c818265acba")
	},
	"DeleteQueuedMessage": func(ctx context.Context, e roEnv) error {
		return e.svc.DeleteQueuedMessage(ctx, "18ed74049ef8c108-6c818265acba")
	},
	"CreateDKIMKey": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.CreateDKIMKey(ctx, "localhost", "new", mailcluster.DKIMEd25519SHA256)
		return err
	},
	"ImportDKIMKey": func(ctx context.Context, e roEnv) error {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		_, err := e.svc.ImportDKIMKey(ctx, "localhost", "new", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		return err
	},
	"DeleteGroup":       func(ctx context.Context, e roEnv) error { return e.svc.DeleteGroup(ctx, "localhost", "staff") },
	"DeleteList":        func(ctx context.Context, e roEnv) error { return e.svc.DeleteList(ctx, "localhost", "team") },
	"DeleteCertificate": func(ctx context.Context, e roEnv) error { return e.svc.DeleteCertificate(ctx, "mail") },
	"DeleteDomain":      func(ctx context.Context, e roEnv) error { return e.svc.DeleteDomain(ctx, "localhost", true) },
	"DeleteSetting": func(ctx context.Context, e roEnv) error {
		return e.svc.DeleteSetting(ctx, "mailcluster", "Passwords", "MinLength")
	},
	"FreezeAccount": func(ctx context.Context, e roEnv) error { return e.svc.FreezeAccount(ctx, "alice@localhost", "test") },
	"ImportCertificate": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.ImportCertificate(ctx, "other", e.cert.Chain, e.cert.Key, true)
		return err
	},
	"RedeemThawToken": func(ctx context.Context, e roEnv) error {
		return e.svc.RedeemThawToken(ctx, "bob@localhost", "WRONGTOKEN")
	},
	"RegisterSelf": func(ctx context.Context, e roEnv) error {
		return e.svc.RegisterSelf(ctx, mailcluster.Member{Name: "node2", APIURL: "http://127.0.0.2:8080"})
	},
	"RemoveMember": func(ctx context.Context, e roEnv) error { return e.svc.RemoveMember(ctx, "node3") },
	"ReplaceSettingsFile": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.ReplaceSettingsFile(ctx, "mailcluster", mailcluster.Sections{"Passwords": {"MinLength": "9"}})
		return err
	},
	"ReportFailures": func(ctx context.Context, e roEnv) error {
		return e.svc.ReportFailures(ctx, []mailcluster.LoginFailure{{Time: time.Now(), IP: "203.0.113.50",
			Address: "alice@localhost", Hash: "0123456789abcdef", Node: "node3", Proto: "smtp"}})
	},
	"SetSetting": func(ctx context.Context, e roEnv) error {
		return e.svc.SetSetting(ctx, "mailcluster", "SMTP", "Banner", "changed")
	},
	"SetUsage": func(ctx context.Context, e roEnv) error {
		return e.svc.SetUsage(ctx, "localhost", "alice", mailcluster.Usage{Bytes: 1, Messages: 1})
	},
	"Switchover":  func(ctx context.Context, e roEnv) error { return e.svc.Switchover(ctx, "node1") },
	"ThawAccount": func(ctx context.Context, e roEnv) error { return e.svc.ThawAccount(ctx, "bob@localhost") },
	"UnblockIP":   func(ctx context.Context, e roEnv) error { return e.svc.UnblockIP(ctx, "198.51.100.1") },
	"UpdateAccount": func(ctx context.Context, e roEnv) error {
		n, p := "Changed", "changed-pass-1"
		_, err := e.svc.UpdateAccount(ctx, "localhost", "bob", mailcluster.AccountUpdate{FullName: &n, Password: &p,
			AddAliases: []string{"robert"}, AddLists: []string{"team"}, AddGroups: []string{"staff"}, RemoveAliases: []string{"bobby"}})
		return err
	},
	"UpdateAlias": func(ctx context.Context, e roEnv) error {
		_, err := e.svc.UpdateAlias(ctx, "localhost", "sales", "bob@localhost")
		return err
	},
	"UpdateDomain": func(ctx context.Context, e roEnv) error {
		d, pm := "changed", "alice@localhost"
		_, err := e.svc.UpdateDomain(ctx, "localhost", mailcluster.DomainUpdate{Description: &d, Postmaster: &pm})
		return err
	},
	"UpdateGroup": func(ctx context.Context, e roEnv) error {
		q := int64(1000)
		_, err := e.svc.UpdateGroup(ctx, "localhost", "staff", mailcluster.GroupUpdate{QuotaBytes: &q, AddMembers: []string{"bob"}})
		return err
	},
	"UpdateList": func(ctx context.Context, e roEnv) error {
		d := "changed"
		_, err := e.svc.UpdateList(ctx, "localhost", "team", mailcluster.ListUpdate{Description: &d,
			AddMembers: []mailcluster.ListMember{{Address: "bob"}}, RemoveMembers: []mailcluster.ListMember{{Address: "alice"}}})
		return err
	},
	"UpdateSettings": func(ctx context.Context, e roEnv) error {
		v := "9"
		return e.svc.UpdateSettings(ctx, map[string]map[string]map[string]*string{"mailcluster": {"Passwords": {"MinLength": &v}}})
	},
}

// contextMethods returns the exported methods of *service.Service whose
// first argument is a context.
func contextMethods() []reflect.Method {
	ctxType := reflect.TypeFor[context.Context]()
	typ := reflect.TypeFor[*service.Service]()
	var out []reflect.Method
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		if m.Type.NumIn() >= 2 && m.Type.In(1) == ctxType {
			out = append(out, m)
		}
	}
	return out
}

// TestReadOnlyClassified proves that every method taking a context is
// classified exactly once, and that the lists name no method that is gone.
func TestReadOnlyClassified(t *testing.T) {
	methods := map[string]bool{}
	for _, m := range contextMethods() {
		methods[m.Name] = true
		_, write := writeCalls[m.Name]
		switch {
		case write && readMethods[m.Name]:
			t.Errorf("%s is classified both as a read and as a write", m.Name)
		case !write && !readMethods[m.Name]:
			t.Errorf("%s is not classified: add it to readMethods or writeCalls", m.Name)
		}
	}
	if len(methods) < len(readMethods)+len(writeCalls) || len(methods) < 30 {
		for name := range readMethods {
			if !methods[name] {
				t.Errorf("readMethods names %s, which is not a method taking a context", name)
			}
		}
		for name := range writeCalls {
			if !methods[name] {
				t.Errorf("writeCalls names %s, which is not a method taking a context", name)
			}
		}
	}
}

// mustOpenSecondaryEnv returns a secondary over a store that a primary
// filled with the objects the write calls aim at, the store and the
// secondary's leadership.
func mustOpenSecondaryEnv(t *testing.T) (roEnv, *kvstore.BoltStore, *fakeLeadership) {
	t.Helper()
	ctx := service.SystemContext(context.Background(), "test")
	seal := func(o *service.Options) { o.SealKey = mailcluster.SealKey("test-secret-0123456789") }
	primary, st := MustOpenService(t, nil, seal)
	leaf := testcert.New(testcert.Options{Names: []string{"mail.example.test"}})
	if _, err := primary.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "localhost", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "localhost", Mailbox: "bob", Password: "bob-pass-12"}); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.BlockIP(ctx, "198.51.100.1", time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := primary.FreezeAccount(ctx, "bob@localhost", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.ImportCertificate(ctx, "mail", leaf.Chain, leaf.Key, false); err != nil {
		t.Fatal(err)
	}
	if err := primary.RegisterSelf(ctx, mailcluster.Member{Name: "node3", APIURL: "http://127.0.0.3:8080"}); err != nil {
		t.Fatal(err)
	}
	if err := primary.SetSetting(ctx, "mailcluster", "SMTP", "Banner", "hi"); err != nil {
		t.Fatal(err)
	}
	// The aliases, list and group the write calls change.
	for name, target := range map[string]string{"sales": "alice@localhost", "bobby": "bob@localhost"} {
		if _, err := primary.CreateAlias(ctx, "localhost", name, target); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := primary.CreateList(ctx, mailcluster.ListCreate{Domain: "localhost", Name: "team", Owner: "alice",
		Members: []mailcluster.ListMember{{Address: "alice"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.CreateGroup(ctx, mailcluster.GroupCreate{Domain: "localhost", Name: "staff", Members: []string{"alice"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.CreateDKIMKey(ctx, "localhost", "mail", mailcluster.DKIMEd25519SHA256); err != nil {
		t.Fatal(err)
	}
	lead := &fakeLeadership{role: mailcluster.RoleSecondary, primary: primaryRef, known: true}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := service.Options{BcryptCost: bcrypt.MinCost, NodeName: "node2", Mode: mailcluster.ModeCluster,
		Queue: &mailqueue.Queue{Spool: mailqueue.Spool{Dir: t.TempDir()}, Node: "node2"}}
	seal(&opts)
	other := testcert.New(testcert.Options{Names: []string{"other.example.test"}})
	return roEnv{svc: service.New(st, lead, log, opts), cert: other}, st, lead
}

// TestReadOnlyEveryWrite calls every write method of a secondary: each is
// refused with EREADONLY naming the primary (EUNAVAILABLE while no
// primary is known) and changes nothing. The reads still answer.
func TestReadOnlyEveryWrite(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	e, st, lead := mustOpenSecondaryEnv(t)
	var names []string
	for _, m := range contextMethods() {
		if !readMethods[m.Name] {
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Fatalf("found only %d write methods: %v", len(names), names)
	}
	for _, name := range names {
		call := writeCalls[name]
		if name == "Bootstrap" {
			call = bootstrapOnSecondary(t, lead)
		}
		if call == nil {
			t.Errorf("%s: no call in writeCalls", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			before := st.Index()
			lead.known = true
			err := call(ctx, e)
			wantCode(t, err, mailcluster.EREADONLY)
			if mailcluster.ErrorPrimary(err) != primaryRef.APIURL || !strings.Contains(mailcluster.ErrorMessage(err), primaryRef.APIURL) {
				t.Errorf("error does not name the primary: %v", err)
			}
			lead.known = false
			wantCode(t, call(ctx, e), mailcluster.EUNAVAILABLE)
			lead.known = true
			if st.Index() != before {
				t.Errorf("refused write moved the store index from %d to %d", before, st.Index())
			}
		})
	}
	t.Run("NothingChanged", func(t *testing.T) {
		if _, err := e.svc.FindDomain(ctx, "new.example"); mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND {
			t.Errorf("new.example: %v", err)
		}
		if d, err := e.svc.FindDomain(ctx, "localhost"); err != nil || d.Description == "changed" {
			t.Errorf("localhost %+v, %v", d, err)
		}
		if a, err := e.svc.FindAccount(ctx, "localhost", "alice"); err != nil || a.Frozen {
			t.Errorf("alice %+v, %v", a, err)
		}
		if a, err := e.svc.FindAccount(ctx, "localhost", "bob"); err != nil || a.FullName == "Changed" {
			t.Errorf("bob %+v, %v", a, err)
		}
		if a, err := e.svc.FindAlias(ctx, "localhost", "sales"); err != nil || a.Target != "alice@localhost" {
			t.Errorf("alias sales %+v, %v", a, err)
		}
		if l, err := e.svc.FindList(ctx, "localhost", "team"); err != nil || l.Description != "" || l.MemberCount != 1 {
			t.Errorf("list team %+v, %v", l, err)
		}
		if g, err := e.svc.FindGroup(ctx, "localhost", "staff"); err != nil || g.QuotaBytes != 0 || g.MemberCount != 1 {
			t.Errorf("group staff %+v, %v", g, err)
		}
		if v, err := e.svc.GetSetting(ctx, "mailcluster", "SMTP", "Banner"); err != nil || v != "hi" {
			t.Errorf("Banner %q, %v", v, err)
		}
		if cs, err := e.svc.Certificates(ctx); err != nil || len(cs) != 1 {
			t.Errorf("certificates %v, %v", cs, err)
		}
		if ms, err := e.svc.Members(ctx); err != nil || len(ms) != 1 || ms[0].Name != "node3" {
			t.Errorf("members %v, %v", ms, err)
		}
	})
	// Every read answers on a secondary: zero arguments may be invalid,
	// but never refused for the role, and never a change.
	for _, m := range contextMethods() {
		if !readMethods[m.Name] {
			continue
		}
		t.Run("Read"+m.Name, func(t *testing.T) {
			before := st.Index()
			args := []reflect.Value{reflect.ValueOf(e.svc), reflect.ValueOf(ctx)}
			for i := 2; i < m.Type.NumIn(); i++ {
				args = append(args, reflect.Zero(m.Type.In(i)))
			}
			out := m.Func.Call(args)
			err, _ := out[len(out)-1].Interface().(error)
			switch mailcluster.ErrorCode(err) {
			case mailcluster.EREADONLY, mailcluster.EUNAVAILABLE, mailcluster.EINTERNAL:
				t.Errorf("a read on a secondary: %v", err)
			}
			if st.Index() != before {
				t.Errorf("a read moved the store index from %d to %d", before, st.Index())
			}
		})
	}
}

// bootstrapOnSecondary returns a Bootstrap call on a secondary over a
// fresh store, which it checks stays empty.
func bootstrapOnSecondary(t *testing.T, lead mailcluster.Leadership) func(ctx context.Context, _ roEnv) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := service.New(st, lead, log, service.Options{BcryptCost: bcrypt.MinCost})
	return func(ctx context.Context, _ roEnv) error {
		_, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{
			AdminAddress: "admin@localhost", AdminPassword: "secret-pass-1", DataDir: "/srv/mc"})
		if kvs := st.List("", "", 0); len(kvs) != 0 {
			return fmt.Errorf("bootstrap on a secondary wrote %d keys", len(kvs))
		}
		return err
	}
}
