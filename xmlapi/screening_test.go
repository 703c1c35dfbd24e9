package xmlapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// syncSink reports every failure to the Service at once and records it.
type syncSink struct {
	svc *service.Service
	mu  sync.Mutex
	got []mailcluster.LoginFailure
}

func (s *syncSink) Report(f mailcluster.LoginFailure) {
	s.mu.Lock()
	s.got = append(s.got, f)
	s.mu.Unlock()
	if err := s.svc.ReportFailures(service.SystemContext(context.Background(), "test"), []mailcluster.LoginFailure{f}); err != nil {
		panic(err)
	}
}

func (s *syncSink) Failures() []mailcluster.LoginFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mailcluster.LoginFailure(nil), s.got...)
}

// putBlock writes a block record directly into the store (for records
// the Service would not create, such as expired ones).
func (e *Env) putBlock(tb testing.TB, b mailcluster.BlockedIP) {
	tb.Helper()
	v, err := json.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.Store.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.PrefixBlockedIPs + b.IP, Value: v}}); err != nil {
		tb.Fatal(err)
	}
}

func (e *Env) mustBlock(tb testing.TB, ip string, until time.Time) {
	tb.Helper()
	if _, err := e.Svc.BlockIP(service.SystemContext(context.Background(), "test"), ip, until, "test"); err != nil {
		tb.Fatal(err)
	}
}

func (e *Env) mustFreeze(tb testing.TB, address string) {
	tb.Helper()
	if err := e.Svc.FreezeAccount(service.SystemContext(context.Background(), "test"), address, ""); err != nil {
		tb.Fatal(err)
	}
}

func (e *Env) frozen(tb testing.TB) []string {
	tb.Helper()
	fs, err := e.Svc.ListFrozenAccounts(service.SystemContext(context.Background(), "test"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Address)
	}
	return out
}

func TestGetDynamicScreening(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateDomain(t, "other.example")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "other.example", Mailbox: "dave"})
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	e.mustBlock(t, "203.0.113.7", time.Time{})
	e.mustBlock(t, "2001:db8::1", until)
	e.putBlock(t, mailcluster.BlockedIP{IP: "192.0.2.99", Until: time.Now().Add(-time.Minute), Offences: 3,
		Reason: "too many failed logins", Source: "auto", CreatedAt: time.Now().Add(-time.Hour)})
	e.mustFreeze(t, "dave@other.example")
	e.mustFreeze(t, "alice@example.com")

	t.Run("OK", func(t *testing.T) {
		r := e.Call(t, "GetDynamicScreening", "").MustOK(t)
		ips := r.Result().FindElements("DynamicScreening/BlockedIPs/IP")
		if len(ips) != 3 {
			t.Fatalf("%d IPs:\n%s", len(ips), r.Body)
		}
		for i, want := range []struct{ address, until, offences, source, active, reason string }{
			{"192.0.2.99", "set", "3", "auto", "No", "too many failed logins"},
			{"2001:db8::1", until.Format(time.RFC3339), "0", "admin", "Yes", "test"},
			{"203.0.113.7", "", "0", "admin", "Yes", "test"},
		} {
			ip := ips[i]
			got := ip.SelectAttrValue("until", "")
			if want.until == "set" && got != "" {
				got = "set"
			}
			if ip.SelectAttrValue("address", "") != want.address || got != want.until ||
				ip.SelectAttrValue("offences", "") != want.offences || ip.SelectAttrValue("source", "") != want.source ||
				ip.SelectAttrValue("active", "") != want.active || ip.Text() != want.reason || ip.SelectAttrValue("created", "") == "" {
				t.Errorf("IP %d: want %+v\n%s", i, want, r.Body)
			}
		}
		if ips[2].SelectAttr("until") != nil {
			t.Errorf("a block without end has an until attribute:\n%s", r.Body)
		}
		accs := r.Result().FindElements("DynamicScreening/FrozenAccounts/Account")
		if len(accs) != 2 || accs[0].SelectAttrValue("address", "") != "alice@example.com" ||
			accs[1].SelectAttrValue("address", "") != "dave@other.example" {
			t.Fatalf("accounts:\n%s", r.Body)
		}
		a := accs[0]
		if a.SelectAttrValue("source", "") != "admin" || a.SelectAttrValue("since", "") == "" ||
			a.SelectAttrValue("tokenExpires", "") == "" || a.Text() != "frozen by an administrator" {
			t.Errorf("account:\n%s", r.Body)
		}
		if strings.Contains(strings.ToLower(r.Body), "hash") {
			t.Errorf("the answer shows a token hash:\n%s", r.Body)
		}
	})
	t.Run("OnlyFrozenAccounts", func(t *testing.T) {
		r := e.Call(t, "GetDynamicScreening", "<Get><FrozenAccounts/></Get>").MustOK(t)
		if r.Result().FindElement("DynamicScreening/BlockedIPs") != nil || len(r.Result().FindElements("DynamicScreening/FrozenAccounts/Account")) != 2 {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("OnlyBlockedIPs", func(t *testing.T) {
		r := e.Call(t, "GetDynamicScreening", "<Get><BlockedIPs/></Get>").MustOK(t)
		if r.Result().FindElement("DynamicScreening/FrozenAccounts") != nil || len(r.Result().FindElements("DynamicScreening/BlockedIPs/IP")) != 3 {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		e2 := MustOpenEnv(t)
		r := e2.Call(t, "GetDynamicScreening", "").MustOK(t)
		ds := r.Result().FindElement("DynamicScreening")
		if ds == nil || ds.FindElement("BlockedIPs") == nil || ds.FindElement("FrozenAccounts") == nil || len(ds.FindElements("*/*")) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("DomainAdmin", func(t *testing.T) {
		call := func(params string) *Response {
			return Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope("GetDynamicScreening", params)))
		}
		call("").MustStatus(t, xmlapi.StatusForbidden)
		call("<Get><BlockedIPs/></Get>").MustStatus(t, xmlapi.StatusForbidden)
		r := call("<Get><FrozenAccounts/></Get>").MustOK(t)
		accs := r.Result().FindElements("DynamicScreening/FrozenAccounts/Account")
		if len(accs) != 1 || accs[0].SelectAttrValue("address", "") != "alice@example.com" {
			t.Fatalf("a domain admin sees:\n%s", r.Body)
		}
	})
}

func TestBlockIP(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
		AdminRights: mailcluster.AdminDomain})

	t.Run("Minutes", func(t *testing.T) {
		before := time.Now()
		r := e.Call(t, "BlockIP", "<IP> 203.0.113.7 </IP><Minutes>30</Minutes><Reason>abuse</Reason>").MustOK(t)
		ip := r.Result().SelectElement("IP")
		if ip == nil || ip.SelectAttrValue("address", "") != "203.0.113.7" || ip.SelectAttrValue("active", "") != "Yes" ||
			ip.SelectAttrValue("source", "") != "admin" || ip.Text() != "abuse" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		u, err := time.Parse(time.RFC3339, ip.SelectAttrValue("until", ""))
		if err != nil || u.Before(before.Add(29*time.Minute)) || u.After(time.Now().Add(31*time.Minute)) {
			t.Fatalf("until %v (%v), want 30 minutes from now", u, err)
		}
		if b, ok := mustLocal(e.Svc).BlockedIP("203.0.113.7"); !ok || b.Reason != "abuse" {
			t.Fatalf("stored %+v, %v", b, ok)
		}
	})
	t.Run("Until", func(t *testing.T) {
		until := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		r := e.Call(t, "BlockIP", "<IP>2001:DB8::5</IP><Until>"+until.Format(time.RFC3339)+"</Until>").MustOK(t)
		ip := r.Result().SelectElement("IP")
		if ip.SelectAttrValue("address", "") != "2001:db8::5" || ip.SelectAttrValue("until", "") != until.Format(time.RFC3339) ||
			ip.Text() != "blocked by an administrator" {
			t.Fatalf("answer:\n%s", r.Body)
		}
	})
	t.Run("Never", func(t *testing.T) {
		for _, params := range []string{"<IP>192.0.2.1</IP>", "<IP>192.0.2.2</IP><Until>Never</Until>", "<IP>192.0.2.3</IP><Until/>"} {
			r := e.Call(t, "BlockIP", params).MustOK(t)
			if ip := r.Result().SelectElement("IP"); ip.SelectAttr("until") != nil || ip.SelectAttrValue("active", "") != "Yes" {
				t.Fatalf("answer:\n%s", r.Body)
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, params := range []string{
			"<IP>not-an-ip</IP>",
			"<IP>203.0.113.9</IP><Minutes>0</Minutes>",
			"<IP>203.0.113.9</IP><Minutes>ten</Minutes>",
			"<IP>203.0.113.9</IP><Minutes>99999999</Minutes>",
			"<IP>203.0.113.9</IP><Until>tomorrow</Until>",
			"<IP>203.0.113.9</IP><Until>2001-01-01T00:00:00Z</Until>",
			"<IP>203.0.113.9</IP><Until>2099-01-01T00:00:00Z</Until><Minutes>5</Minutes>",
		} {
			e.Call(t, "BlockIP", params).MustStatus(t, xmlapi.StatusInvalidParameter)
		}
		if _, ok := mustLocal(e.Svc).BlockedIP("203.0.113.9"); ok {
			t.Fatal("a refused block was stored")
		}
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		if msg := e.Call(t, "BlockIP", "<Minutes>5</Minutes>").MustStatus(t, xmlapi.StatusMissingParameter); !strings.Contains(msg, "IP") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope("BlockIP", "<IP>203.0.113.10</IP>"))).
			MustStatus(t, xmlapi.StatusForbidden)
		Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope("UnblockIP", "<IP>203.0.113.7</IP>"))).
			MustStatus(t, xmlapi.StatusForbidden)
	})
}

func TestUnblockIP(t *testing.T) {
	e := MustOpenEnv(t)
	e.mustBlock(t, "203.0.113.7", time.Time{})
	r := e.Call(t, "UnblockIP", "<IP>203.0.113.7</IP>").MustOK(t)
	if len(r.Result().ChildElements()) != 0 {
		t.Fatalf("answer:\n%s", r.Body)
	}
	if _, ok := mustLocal(e.Svc).BlockedIP("203.0.113.7"); ok {
		t.Fatal("still blocked")
	}
	e.Call(t, "UnblockIP", "<IP>203.0.113.7</IP>").MustStatus(t, xmlapi.StatusNotFound)
	e.Call(t, "UnblockIP", "<IP>nonsense</IP>").MustStatus(t, xmlapi.StatusInvalidParameter)
	e.Call(t, "UnblockIP", "").MustStatus(t, xmlapi.StatusMissingParameter)
}

func TestFreezeThawAccount(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "bob", Password: "secret-pass-bob",
		AdminRights: mailcluster.AdminDomain})
	asBob := func() *Response {
		return Post(t, e.URL, "bob@example.com", "secret-pass-bob", strings.NewReader(Envelope("GetVersionInfo", "")))
	}
	asBob().MustOK(t)

	t.Run("Freeze", func(t *testing.T) {
		r := e.Call(t, "FreezeAccount", "<Domain>Example.com</Domain><Mailbox>Bob</Mailbox><Reason>suspicious</Reason>").MustOK(t)
		a := r.Result().SelectElement("Account")
		if a == nil || a.SelectAttrValue("address", "") != "bob@example.com" || a.SelectAttrValue("source", "") != "admin" ||
			a.SelectAttrValue("since", "") == "" || a.SelectAttrValue("tokenExpires", "") == "" || a.Text() != "suspicious" {
			t.Fatalf("answer:\n%s", r.Body)
		}
		asBob().MustStatus(t, xmlapi.StatusUnauthorized)
		if !e.MustFindAccount(t, "example.com", "bob").Frozen {
			t.Fatal("bob is not frozen")
		}
	})
	t.Run("ErrFrozenAlready", func(t *testing.T) {
		e.Call(t, "FreezeAccount", "<Address>bob@example.com</Address>").MustStatus(t, xmlapi.StatusConflict)
	})
	t.Run("Thaw", func(t *testing.T) {
		r := e.Call(t, "ThawAccount", "<Address> bob@example.com </Address>").MustOK(t)
		if len(r.Result().ChildElements()) != 0 {
			t.Fatalf("answer:\n%s", r.Body)
		}
		asBob().MustOK(t)
		if got := e.frozen(t); len(got) != 0 {
			t.Fatalf("frozen: %v", got)
		}
		e.Call(t, "ThawAccount", "<Domain>example.com</Domain><Mailbox>bob</Mailbox>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrOwnAccount", func(t *testing.T) {
		e.Call(t, "FreezeAccount", "<Address>"+adminAddr+"</Address>").MustStatus(t, xmlapi.StatusConflict)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e.Call(t, "FreezeAccount", "<Address>nobody@example.com</Address>").MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "ThawAccount", "<Address>nobody@example.com</Address>").MustStatus(t, xmlapi.StatusNotFound)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.Call(t, "FreezeAccount", "<Address>no-at-sign</Address>").MustStatus(t, xmlapi.StatusInvalidParameter)
		e.Call(t, "ThawAccount", "<Domain>bad domain</Domain><Mailbox>bob</Mailbox>").MustStatus(t, xmlapi.StatusInvalidParameter)
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			"":                             "Address",
			"<Domain>example.com</Domain>": "Mailbox",
			"<Mailbox>bob</Mailbox>":       "Domain",
			"<Address/>":                   "Address",
		} {
			for _, op := range []string{"FreezeAccount", "ThawAccount"} {
				if msg := e.Call(t, op, params).MustStatus(t, xmlapi.StatusMissingParameter); !strings.Contains(msg, name) {
					t.Errorf("%s %s: message %q does not name %s", op, params, msg, name)
				}
			}
		}
	})
}

// TestUpdateUserThaws: UpdateUser with Frozen No ends a screening freeze,
// record included.
func TestUpdateUserThaws(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice"})
	e.mustFreeze(t, "alice@example.com")
	if got := e.frozen(t); len(got) != 1 {
		t.Fatalf("frozen: %v", got)
	}
	r := e.Call(t, "UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>No</Frozen></Details>").MustOK(t)
	if r.Text("User/Details/Frozen") != "No" {
		t.Fatalf("answer:\n%s", r.Body)
	}
	if got := e.frozen(t); len(got) != 0 {
		t.Fatalf("the screening record is left: %v", got)
	}
	r = e.Call(t, "GetDynamicScreening", "").MustOK(t)
	if n := len(r.Result().FindElements("DynamicScreening/FrozenAccounts/Account")); n != 0 {
		t.Fatalf("answer:\n%s", r.Body)
	}
	// Freezing again works: nothing stale is left behind.
	e.Call(t, "FreezeAccount", "<Address>alice@example.com</Address>").MustOK(t)
}

func TestBlockedClient(t *testing.T) {
	e := MustOpenEnv(t)
	e.mustBlock(t, "127.0.0.1", time.Time{})
	for _, user := range []struct{ name, pass string }{{adminAddr, adminPass}, {adminAddr, "secret-pass-wrong"}} {
		r := Post(t, e.URL, user.name, user.pass, strings.NewReader(Envelope("GetVersionInfo", "")))
		msg := r.MustStatus(t, xmlapi.StatusForbidden)
		if !strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "blocked") {
			t.Errorf("message %q", msg)
		}
		if r.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("a blocked client is challenged for credentials")
		}
	}
	if err := e.Svc.UnblockIP(service.SystemContext(context.Background(), "test"), "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	e.Call(t, "GetVersionInfo", "").MustOK(t)
}

// TestClientIPFromContext: behind a server that knows the client (trusted
// proxies), the handler uses the address in the context, not the peer.
func TestClientIPFromContext(t *testing.T) {
	e := MustOpenEnv(t)
	h := xmlapi.NewHandler(e.Svc, e.Log)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(mailcluster.NewContextWithClientIP(r.Context(), "203.0.113.7")))
	}))
	t.Cleanup(srv.Close)
	CallAt(t, srv.URL, "GetVersionInfo", "").MustOK(t)
	e.mustBlock(t, "203.0.113.7", time.Time{})
	CallAt(t, srv.URL, "GetVersionInfo", "").MustStatus(t, xmlapi.StatusForbidden)
	e.Call(t, "GetVersionInfo", "").MustOK(t) // the peer 127.0.0.1 is not blocked
}

func TestFailuresCounted(t *testing.T) {
	sink := &syncSink{}
	e := MustOpenEnv(t, WithFailures(sink))
	sink.svc = e.Svc
	ctx := service.SystemContext(context.Background(), "test")
	if err := e.Svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionScreening, mailcluster.KeyIPFailures, "3"); err != nil {
		t.Fatal(err)
	}
	wrong := func(pass string) {
		t.Helper()
		Post(t, e.URL, adminAddr, pass, strings.NewReader(Envelope("GetVersionInfo", ""))).MustStatus(t, xmlapi.StatusUnauthorized)
	}
	for range 2 {
		wrong("secret-pass-wrong1")
	}
	e.Call(t, "GetVersionInfo", "").MustOK(t)
	wrong("secret-pass-wrong1") // a repeated password counts toward the address too
	e.Call(t, "GetVersionInfo", "").MustStatus(t, xmlapi.StatusForbidden)

	fs := sink.Failures()
	if len(fs) != 3 {
		t.Fatalf("%d failures reported, want 3", len(fs))
	}
	for _, f := range fs {
		if f.IP != "127.0.0.1" || f.Address != adminAddr || f.Hash == "" || strings.Contains(f.Hash, "secret") {
			t.Errorf("failure %+v", f)
		}
	}
	b, ok := mustLocal(e.Svc).BlockedIP("127.0.0.1")
	if !ok || b.Source != "auto" || b.Offences != 1 {
		t.Fatalf("block %+v, %v", b, ok)
	}
	if err := e.Svc.UnblockIP(ctx, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	e.Call(t, "GetVersionInfo", "").MustOK(t)
}
