package api_test

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// BlockedIP is the JSON form of a blocked address.
type BlockedIP struct {
	IP        string     `json:"ip"`
	Until     *time.Time `json:"until"`
	Offences  int        `json:"offences"`
	Reason    string     `json:"reason"`
	Source    string     `json:"source"`
	CreatedAt time.Time  `json:"createdAt"`
	Active    bool       `json:"active"`
}

// FrozenAccount is the JSON form of a frozen account.
type FrozenAccount struct {
	Address      string     `json:"address"`
	Since        time.Time  `json:"since"`
	Reason       string     `json:"reason"`
	Source       string     `json:"source"`
	TokenExpires *time.Time `json:"tokenExpires"`
}

// syncSink reports every failure to the Service at once, as the primary's
// failure reporter does, so that a test sees the decision right after the
// failed request. It also records what it was given.
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

// fakeNotifier records the thaw tokens the Service mails.
type fakeNotifier struct {
	mu      sync.Mutex
	address string
	token   string
	expires time.Time
}

func (n *fakeNotifier) NotifyFrozen(_ context.Context, a *mailcluster.Account, token string, expires time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.address, n.token, n.expires = a.Address(), token, expires
	return nil
}

func (n *fakeNotifier) last() (address, token string, expires time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.address, n.token, n.expires
}

// mustBlock blocks ip through the Service, as the node itself.
func mustBlock(tb testing.TB, env *Env, ip string) {
	tb.Helper()
	if _, err := env.Svc.BlockIP(service.SystemContext(context.Background(), "test"), ip, time.Time{}, "test"); err != nil {
		tb.Fatal(err)
	}
}

func mustUnblock(tb testing.TB, env *Env, ip string) {
	tb.Helper()
	if err := env.Svc.UnblockIP(service.SystemContext(context.Background(), "test"), ip); err != nil {
		tb.Fatal(err)
	}
}

// xff returns a request with an X-Forwarded-For header.
func xff(method, path, value string) Request {
	return Request{Method: method, Path: path, Header: http.Header{"X-Forwarded-For": {value}}}
}

func TestBlockedClient(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin

	t.Run("ByService", func(t *testing.T) {
		mustBlock(t, env, "127.0.0.1")
		for _, path := range []string{"/api/v1/node", "/api/v1/domains", "/api/v1/screening/ips"} {
			p := c.Get(t, path).ExpectProblem(t, http.StatusForbidden, "forbidden")
			if !strings.Contains(p.Detail, "127.0.0.1") || !strings.Contains(p.Detail, "blocked") {
				t.Errorf("detail %q", p.Detail)
			}
		}
		// Wrong credentials change nothing: the address is refused first.
		c.Anonymous().As(adminAddress, "wrong-pass-1").Get(t, "/api/v1/node").ExpectProblem(t, http.StatusForbidden, "forbidden")
		c.Anonymous().Send(t, http.MethodPost, "/api/v1/screening/thaw", map[string]any{"address": adminAddress, "token": "X"}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
		// Health and the spec stay open (load balancers, Consul).
		c.Anonymous().Get(t, "/health").Expect(t, http.StatusOK)
		c.Anonymous().Get(t, "/openapi.yaml").Expect(t, http.StatusOK)

		mustUnblock(t, env, "127.0.0.1")
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
	})
	t.Run("ByAPI", func(t *testing.T) {
		var b BlockedIP
		c.Send(t, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "127.0.0.1", "durationSeconds": 3600}).
			Expect(t, http.StatusCreated).JSON(t, &b)
		if !b.Active || b.Until == nil {
			t.Errorf("block %+v", b)
		}
		c.Get(t, "/api/v1/domains").ExpectProblem(t, http.StatusForbidden, "forbidden")
		c.Delete(t, "/api/v1/screening/ips/127.0.0.1").ExpectProblem(t, http.StatusForbidden, "forbidden")
		mustUnblock(t, env, "127.0.0.1")
		c.Get(t, "/api/v1/domains").Expect(t, http.StatusOK)
	})
	t.Run("ExpiredBlockLetsIn", func(t *testing.T) {
		putBlock(t, env, mailcluster.BlockedIP{IP: "127.0.0.1", Until: time.Now().Add(-time.Minute), Offences: 2,
			Reason: "old", Source: "auto", CreatedAt: time.Now().Add(-time.Hour)})
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		mustUnblock(t, env, "127.0.0.1")
	})
}

// putBlock writes a block record directly into the store (for records
// the Service would not create, such as expired ones).
func putBlock(tb testing.TB, env *Env, b mailcluster.BlockedIP) {
	tb.Helper()
	v, err := json.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := env.Store.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.PrefixBlockedIPs + b.IP, Value: v}}); err != nil {
		tb.Fatal(err)
	}
}

func TestClientAddress(t *testing.T) {
	t.Run("ForwardedForIgnoredByDefault", func(t *testing.T) {
		env := MustOpenEnv(t)
		mustBlock(t, env, "203.0.113.7")
		env.Admin.Do(t, xff(http.MethodGet, "/api/v1/node", "203.0.113.7")).Expect(t, http.StatusOK)
		env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml", Body: []byte("<x/>"),
			Header: http.Header{"X-Forwarded-For": {"203.0.113.7"}}}).Expect(t, http.StatusOK)
		if got := env.XMLClientIP.Get(); got != "127.0.0.1" {
			t.Errorf("the XML-API saw client %q, want 127.0.0.1", got)
		}
	})
	t.Run("TrustedProxy", func(t *testing.T) {
		env := MustOpenEnv(t, WithTrustedProxies("127.0.0.1/32"))
		mustBlock(t, env, "203.0.113.7")
		c := env.Admin
		c.Do(t, xff(http.MethodGet, "/api/v1/node", "203.0.113.7")).ExpectProblem(t, http.StatusForbidden, "forbidden")
		c.Do(t, xff(http.MethodGet, "/api/v1/node", "[2001:db8::1]")).Expect(t, http.StatusOK)
		// The proxy appends; the nearest untrusted entry is the client.
		c.Do(t, xff(http.MethodGet, "/api/v1/node", "203.0.113.7, 198.51.100.2")).Expect(t, http.StatusOK)
		c.Do(t, xff(http.MethodGet, "/api/v1/node", "198.51.100.2, 203.0.113.7")).ExpectProblem(t, http.StatusForbidden, "forbidden")
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK) // the proxy itself
		c.Do(t, Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "application/xml", Body: []byte("<x/>"),
			Header: http.Header{"X-Forwarded-For": {"203.0.113.8"}}}).Expect(t, http.StatusOK)
		if got := env.XMLClientIP.Get(); got != "203.0.113.8" {
			t.Errorf("the XML-API saw client %q, want 203.0.113.8", got)
		}
	})
	t.Run("MappedPrefix", func(t *testing.T) {
		env := MustOpenEnv(t, WithTrustedProxies("::ffff:127.0.0.0/104"))
		mustBlock(t, env, "203.0.113.7")
		env.Admin.Do(t, xff(http.MethodGet, "/api/v1/node", "203.0.113.7")).ExpectProblem(t, http.StatusForbidden, "forbidden")
	})
	t.Run("UntrustedPeer", func(t *testing.T) {
		// Private and loopback peers are not trusted unless configured.
		env := MustOpenEnv(t, WithTrustedProxies("10.0.0.0/8", "::ffff:192.168.0.0/112"))
		mustBlock(t, env, "203.0.113.7")
		env.Admin.Do(t, xff(http.MethodGet, "/api/v1/node", "203.0.113.7")).Expect(t, http.StatusOK)
	})
}

// xmlCall sends an XML-API request through the REST server and returns
// the status id of the answer.
func xmlCall(tb testing.TB, c *Client, forwardedFor, op string) int {
	tb.Helper()
	body := `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request><Operation>` + op +
		`</Operation></Request></API></MDaemon>`
	r := Request{Method: http.MethodPost, Path: "/MdMgmtWS", ContentType: "text/xml", Body: []byte(body), Header: http.Header{}}
	if forwardedFor != "" {
		r.Header.Set("X-Forwarded-For", forwardedFor)
	}
	res := c.Do(tb, r)
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(res.Body); err != nil {
		tb.Fatalf("answer is not XML: %v\n%s", err, res.Body)
	}
	st := doc.FindElement("/MDaemon/API/Response/Status")
	if st == nil {
		tb.Fatalf("no Status:\n%s", res.Body)
	}
	id, _ := strconv.Atoi(st.SelectAttrValue("id", "-1"))
	return id
}

// TestXMLAPIScreening mounts the real XML-API in the REST server: it sees
// the client address the server determined, refuses a blocked one and
// its failed logins count with the REST API's.
func TestXMLAPIScreening(t *testing.T) {
	sink := &syncSink{}
	env := MustOpenEnv(t, WithTrustedProxies("127.0.0.1/32"),
		WithXMLAPI(func(svc *service.Service) http.Handler { return xmlapi.NewHandler(svc, nil) }), WithFailures(sink))
	sink.svc = env.Svc
	ctx := service.SystemContext(context.Background(), "test")
	if err := env.Svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionScreening, mailcluster.KeyIPFailures, "3"); err != nil {
		t.Fatal(err)
	}
	c := env.Admin

	mustBlock(t, env, "203.0.113.7")
	if id := xmlCall(t, c, "203.0.113.7", "GetVersionInfo"); id != xmlapi.StatusForbidden {
		t.Errorf("blocked client: status %d, want %d", id, xmlapi.StatusForbidden)
	}
	if id := xmlCall(t, c, "", "GetVersionInfo"); id != xmlapi.StatusOK {
		t.Errorf("proxy itself: status %d", id)
	}
	mustUnblock(t, env, "203.0.113.7")
	if id := xmlCall(t, c, "203.0.113.7", "GetVersionInfo"); id != xmlapi.StatusOK {
		t.Errorf("unblocked client: status %d", id)
	}

	// Two failures over XML and one over REST block 198.51.100.9.
	for i, pass := range []string{"wrong-pass-1", "wrong-pass-2"} {
		if id := xmlCall(t, c.As(adminAddress, pass), "198.51.100.9", "GetVersionInfo"); id != xmlapi.StatusUnauthorized {
			t.Fatalf("failure %d: status %d", i, id)
		}
	}
	c.As(adminAddress, "wrong-pass-3").Do(t, xff(http.MethodGet, "/api/v1/node", "198.51.100.9")).
		ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	if id := xmlCall(t, c, "198.51.100.9", "GetVersionInfo"); id != xmlapi.StatusForbidden {
		t.Errorf("after 3 failures: status %d, want %d", id, xmlapi.StatusForbidden)
	}
	c.Do(t, xff(http.MethodGet, "/api/v1/node", "198.51.100.9")).ExpectProblem(t, http.StatusForbidden, "forbidden")
	c.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
}

func TestFailureCounting(t *testing.T) {
	sink := &syncSink{}
	env := MustOpenEnv(t, WithFailures(sink))
	sink.svc = env.Svc
	ctx := service.SystemContext(context.Background(), "test")
	if err := env.Svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionScreening, mailcluster.KeyIPFailures, "3"); err != nil {
		t.Fatal(err)
	}
	c := env.Admin
	wrong := func(pass string) {
		t.Helper()
		c.As(adminAddress, pass).Get(t, "/api/v1/node").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	}

	t.Run("RepeatCountsForTheAddress", func(t *testing.T) {
		// Every failure counts toward the address, a repeated password too.
		for range 2 {
			wrong("wrong-pass-1")
		}
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		fs := sink.Failures()
		if len(fs) != 2 {
			t.Fatalf("%d failures reported, want 2", len(fs))
		}
		for _, f := range fs {
			if f.IP != "127.0.0.1" || f.Address != adminAddress || f.Proto != "api" || f.Node != "node1" || f.Hash == "" {
				t.Errorf("failure %+v", f)
			}
			if strings.Contains(f.Hash, "wrong-pass") {
				t.Error("the password is in the failure")
			}
		}
		if fs[0].Hash != fs[1].Hash {
			t.Error("one password gave two hashes: the account could not count it once")
		}
	})
	t.Run("Block", func(t *testing.T) {
		wrong("wrong-pass-1") // the third failure
		c.Get(t, "/api/v1/node").ExpectProblem(t, http.StatusForbidden, "forbidden")
		c.As(adminAddress, "wrong-pass-4").Get(t, "/api/v1/node").ExpectProblem(t, http.StatusForbidden, "forbidden")

		bs, err := env.Svc.ListBlockedIPs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].IP != "127.0.0.1" || bs[0].Source != "auto" || bs[0].Offences != 1 || !bs[0].Active(time.Now()) {
			t.Fatalf("blocks %+v", bs)
		}
		mustUnblock(t, env, "127.0.0.1")
		c.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
	})
	t.Run("UnknownAccountCounts", func(t *testing.T) {
		for _, u := range []string{"nobody@localhost", "nobody2@localhost", "not-an-address"} {
			c.As(u, "some-pass-1").Get(t, "/api/v1/node").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		}
		c.Get(t, "/api/v1/node").ExpectProblem(t, http.StatusForbidden, "forbidden")
		mustUnblock(t, env, "127.0.0.1")
	})
}

func TestScreeningIPs(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin

	t.Run("Block", func(t *testing.T) {
		var b BlockedIP
		before := time.Now()
		c.Send(t, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "203.0.113.7", "durationSeconds": 600, "reason": "abuse"}).
			Expect(t, http.StatusCreated).JSON(t, &b)
		if b.IP != "203.0.113.7" || b.Reason != "abuse" || b.Source != "admin" || !b.Active || b.Offences != 0 || b.CreatedAt.IsZero() {
			t.Errorf("block %+v", b)
		}
		if b.Until == nil || b.Until.Before(before.Add(599*time.Second)) || b.Until.After(time.Now().Add(601*time.Second)) {
			t.Errorf("until %v, want about 10 minutes from now", b.Until)
		}
	})
	t.Run("BlockUntil", func(t *testing.T) {
		until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		var b BlockedIP
		c.Send(t, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "2001:DB8::1", "until": until.Format(time.RFC3339)}).
			Expect(t, http.StatusCreated).JSON(t, &b)
		if b.IP != "2001:db8::1" || b.Until == nil || !b.Until.Equal(until) || b.Reason == "" {
			t.Errorf("block %+v", b)
		}
	})
	t.Run("BlockNever", func(t *testing.T) {
		for _, body := range []map[string]any{{"ip": "::ffff:192.0.2.1"}, {"ip": "192.0.2.2", "until": "never"}} {
			res := c.Send(t, http.MethodPost, "/api/v1/screening/ips", body).Expect(t, http.StatusCreated)
			var b BlockedIP
			res.JSON(t, &b)
			if b.Until != nil || !b.Active || strings.Contains(string(res.Body), "until") {
				t.Errorf("block %s", res.Body)
			}
		}
	})
	t.Run("List", func(t *testing.T) {
		putBlock(t, env, mailcluster.BlockedIP{IP: "192.0.2.99", Until: time.Now().Add(-time.Minute), Offences: 3,
			Reason: "too many failed logins", Source: "auto", CreatedAt: time.Now().Add(-time.Hour)})
		var l struct{ IPs []BlockedIP }
		c.Get(t, "/api/v1/screening/ips").Expect(t, http.StatusOK).JSON(t, &l)
		var got []string
		for _, b := range l.IPs {
			got = append(got, b.IP+" "+strconv.FormatBool(b.Active))
		}
		want := "192.0.2.1 true,192.0.2.2 true,192.0.2.99 false,2001:db8::1 true,203.0.113.7 true"
		if strings.Join(got, ",") != want {
			t.Errorf("list %v, want %s", got, want)
		}
	})
	t.Run("Unblock", func(t *testing.T) {
		c.Delete(t, "/api/v1/screening/ips/2001:db8::1").Expect(t, http.StatusNoContent)
		c.Delete(t, "/api/v1/screening/ips/2001:db8::1").ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, "/api/v1/screening/ips/192.0.2.99").Expect(t, http.StatusNoContent)
		var l struct{ IPs []BlockedIP }
		c.Get(t, "/api/v1/screening/ips").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.IPs) != 3 {
			t.Errorf("%d blocks left, want 3", len(l.IPs))
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, body := range []string{
			`{"ip":"not-an-ip"}`,
			`{"ip":"203.0.113.9","until":"2001-01-01T00:00:00Z"}`,
			`{"ip":"203.0.113.9","until":"tomorrow"}`,
			`{"ip":"203.0.113.9","until":"2099-01-01T00:00:00Z","durationSeconds":60}`,
			`{"ip":"203.0.113.9","reason":"two\nlines"}`,
		} {
			c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/ips", Body: []byte(body)}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
		for _, body := range []string{
			`{"ip":"203.0.113.9","durationSeconds":0}`,
			`{"ip":"203.0.113.9","durationSeconds":315360001}`,
			`{"ip":"203.0.113.9","extra":1}`,
			`{"reason":"no ip"}`,
		} {
			c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/ips", Body: []byte(body), Invalid: true}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
		}
		c.Delete(t, "/api/v1/screening/ips/nonsense").ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		c.MustCreateDomain(t, "example.com")
		c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "dadmin", "password": "dadmin-pass-1", "adminRights": "domain"})
		d := c.As("dadmin@example.com", "dadmin-pass-1")
		d.Get(t, "/api/v1/screening/ips").ExpectProblem(t, http.StatusForbidden, "forbidden")
		d.Send(t, http.MethodPost, "/api/v1/screening/ips", map[string]any{"ip": "203.0.113.10"}).ExpectProblem(t, http.StatusForbidden, "forbidden")
		d.Delete(t, "/api/v1/screening/ips/203.0.113.7").ExpectProblem(t, http.StatusForbidden, "forbidden")
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		c.Anonymous().Get(t, "/api/v1/screening/ips").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
}

func TestScreeningAccounts(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	c.MustCreateDomain(t, "other.example")
	c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "dadmin", "password": "dadmin-pass-1", "adminRights": "domain"})
	c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "carol", "password": "carol-pass-1"})
	c.MustCreateAccount(t, "other.example", map[string]any{"mailbox": "dave", "password": "dave-pass-12"})
	dadmin := c.As("dadmin@example.com", "dadmin-pass-1")

	t.Run("Freeze", func(t *testing.T) {
		dadmin.Get(t, "/api/v1/domains").Expect(t, http.StatusOK)
		res := c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "DAdmin@Example.com", "reason": "suspicious"}).
			Expect(t, http.StatusCreated)
		var f FrozenAccount
		res.JSON(t, &f)
		if f.Address != "dadmin@example.com" || f.Reason != "suspicious" || f.Source != "admin" || f.Since.IsZero() ||
			f.TokenExpires == nil || !f.TokenExpires.After(time.Now()) {
			t.Errorf("frozen %s", res.Body)
		}
		dadmin.Get(t, "/api/v1/domains").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		var a Account
		c.Get(t, "/api/v1/domains/example.com/accounts/dadmin").Expect(t, http.StatusOK).JSON(t, &a)
		if !a.Frozen {
			t.Error("the account is not marked frozen")
		}
	})
	t.Run("List", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "dave@other.example"}).Expect(t, http.StatusCreated)
		res := c.Get(t, "/api/v1/screening/accounts").Expect(t, http.StatusOK)
		if strings.Contains(strings.ToLower(string(res.Body)), "hash") || strings.Contains(string(res.Body), "token\"") {
			t.Errorf("list shows token data: %s", res.Body)
		}
		var l struct{ Accounts []FrozenAccount }
		res.JSON(t, &l)
		if len(l.Accounts) != 2 || l.Accounts[0].Address != "dadmin@example.com" || l.Accounts[1].Address != "dave@other.example" ||
			l.Accounts[1].Reason != "frozen by an administrator" {
			t.Errorf("list %+v", l.Accounts)
		}
	})
	t.Run("ErrFrozenAlready", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "dadmin@example.com"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
	})
	t.Run("Thaw", func(t *testing.T) {
		c.Delete(t, "/api/v1/screening/accounts/dadmin@example.com").Expect(t, http.StatusNoContent)
		dadmin.Get(t, "/api/v1/domains").Expect(t, http.StatusOK)
		c.Delete(t, "/api/v1/screening/accounts/dadmin@example.com").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("DomainAdmin", func(t *testing.T) {
		var l struct{ Accounts []FrozenAccount }
		dadmin.Get(t, "/api/v1/screening/accounts").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Accounts) != 0 {
			t.Errorf("a domain admin sees %+v", l.Accounts)
		}
		dadmin.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "carol@example.com"}).Expect(t, http.StatusCreated)
		dadmin.Get(t, "/api/v1/screening/accounts").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Accounts) != 1 || l.Accounts[0].Address != "carol@example.com" {
			t.Errorf("a domain admin sees %+v", l.Accounts)
		}
		dadmin.Delete(t, "/api/v1/screening/accounts/dave@other.example").ExpectProblem(t, http.StatusForbidden, "forbidden")
		dadmin.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "dave@other.example"}).
			ExpectProblem(t, http.StatusForbidden, "forbidden")
		dadmin.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "dadmin@example.com"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
		dadmin.Delete(t, "/api/v1/screening/accounts/carol@example.com").Expect(t, http.StatusNoContent)
	})
	t.Run("ThawByAccountUpdate", func(t *testing.T) {
		c.Send(t, http.MethodPatch, "/api/v1/domains/other.example/accounts/dave", map[string]any{"frozen": false}).Expect(t, http.StatusOK)
		var l struct{ Accounts []FrozenAccount }
		c.Get(t, "/api/v1/screening/accounts").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Accounts) != 0 {
			t.Errorf("records left: %+v", l.Accounts)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "nobody@example.com"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, "/api/v1/screening/accounts/carol@example.com").ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "no-at-sign"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Delete(t, "/api/v1/screening/accounts/no-at-sign").ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/accounts", Body: []byte(`{"reason":"x"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
}

func TestThawToken(t *testing.T) {
	n := &fakeNotifier{}
	sink := &syncSink{}
	env := MustOpenEnv(t, WithNotifier(n), WithFailures(sink))
	sink.svc = env.Svc
	c := env.Admin
	c.MustCreateDomain(t, "example.com")
	c.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "bob", "password": "bob-pass-123", "adminRights": "domain"})
	bob := c.As("bob@example.com", "bob-pass-123")
	anon := c.Anonymous()
	thaw := func(token string) *Response {
		t.Helper()
		return anon.Send(t, http.MethodPost, "/api/v1/screening/thaw", map[string]any{"address": "bob@example.com", "token": token})
	}

	c.Send(t, http.MethodPost, "/api/v1/screening/accounts", map[string]any{"address": "bob@example.com"}).Expect(t, http.StatusCreated)
	address, token, expires := n.last()
	if address != "bob@example.com" || len(token) < 16 || !expires.After(time.Now()) {
		t.Fatalf("notified %q, token %q, expires %v", address, token, expires)
	}
	c.Secret(token) // no answer may show it
	bob.Get(t, "/api/v1/domains").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")

	t.Run("ErrWrongToken", func(t *testing.T) {
		res := thaw("WRONGTOKEN")
		res.ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		if got := res.Header.Get("WWW-Authenticate"); strings.HasPrefix(got, "Basic") || got == "" {
			t.Errorf("WWW-Authenticate %q, want a non-Basic challenge", got)
		}
		fs := sink.Failures()
		if len(fs) != 1 || fs[0].Proto != "thaw" || fs[0].IP != "127.0.0.1" {
			t.Errorf("failures %+v", fs)
		}
		bob.Get(t, "/api/v1/domains").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		anon.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/thaw", Body: []byte(`{"address":"bob@example.com"}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		anon.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/screening/thaw", Body: []byte(`address=bob`), ContentType: "text/plain", Invalid: true}).
			ExpectProblem(t, http.StatusUnsupportedMediaType, "unsupported-media-type")
	})
	t.Run("OK", func(t *testing.T) {
		// Basic credentials are neither needed nor looked at.
		bob.Send(t, http.MethodPost, "/api/v1/screening/thaw", map[string]any{"address": "bob@example.com", "token": strings.ToLower(token)}).
			Expect(t, http.StatusNoContent)
		bob.Get(t, "/api/v1/domains").Expect(t, http.StatusOK)
	})
	t.Run("ErrUsedToken", func(t *testing.T) {
		thaw(token).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("ErrNotFrozen", func(t *testing.T) {
		anon.Send(t, http.MethodPost, "/api/v1/screening/thaw", map[string]any{"address": "admin@localhost", "token": token}).
			ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
	})
}

func TestInternalFailures(t *testing.T) {
	env := MustOpenEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	if err := env.Svc.SetSetting(ctx, mailcluster.MainSettingsFile, mailcluster.SectionScreening, mailcluster.KeyIPFailures, "3"); err != nil {
		t.Fatal(err)
	}
	hashes := 0 // every failure has another password hash
	report := func(n int, ip string) []byte {
		var fs []mailcluster.LoginFailure
		for range n {
			hashes++
			fs = append(fs, mailcluster.LoginFailure{Time: time.Now().UTC(), IP: ip, Hash: "h" + strconv.Itoa(hashes), Node: "node2", Proto: "smtp"})
		}
		b, err := json.Marshal(map[string]any{"failures": fs})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const path = "/internal/v1/screening/failures"
	c := env.Admin.Anonymous()
	expect401 := func(t *testing.T, res *Response) {
		t.Helper()
		res.ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		if got := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "MC-HMAC-SHA256 ") {
			t.Errorf("WWW-Authenticate %q", got)
		}
	}
	notBlocked := func(t *testing.T, ip string) {
		t.Helper()
		if b, ok := mustLocal(env.Svc).BlockedIP(ip); ok {
			t.Fatalf("%s is blocked: %+v", ip, b)
		}
	}

	t.Run("OK", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true, Body: report(2, "203.0.113.60")}).
			Expect(t, http.StatusNoContent)
		notBlocked(t, "203.0.113.60")
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true, Body: report(3, "203.0.113.60")}).
			Expect(t, http.StatusNoContent)
		b, ok := mustLocal(env.Svc).BlockedIP("203.0.113.60")
		if !ok || b.Source != "auto" || b.Offences != 1 {
			t.Fatalf("block %+v, %v", b, ok)
		}
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true, Body: []byte(`{"failures":[]}`)}).
			Expect(t, http.StatusNoContent)
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		expect401(t, c.Do(t, Request{Method: http.MethodPost, Path: path, Body: report(3, "203.0.113.61")}))
		env.Admin.Do(t, Request{Method: http.MethodPost, Path: path, Body: report(3, "203.0.113.61")}).
			ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		notBlocked(t, "203.0.113.61")
	})
	// An attacker who saw the former bearer token, or one signed request,
	// cannot block an address with it.
	t.Run("ErrForgedBearer", func(t *testing.T) {
		old, err := hkdf.Key(sha256.New, []byte("test-cluster-secret"), nil, "mailcluster internal api v1", 32)
		if err != nil {
			t.Fatal(err)
		}
		for _, token := range [][]byte{old, internalKey} {
			expect401(t, c.Do(t, Request{Method: http.MethodPost, Path: path, Body: report(3, "203.0.113.63"),
				Header: http.Header{"Authorization": {"Bearer " + hex.EncodeToString(token)}}}))
		}
		notBlocked(t, "203.0.113.63")
	})
	t.Run("ErrReplayed", func(t *testing.T) {
		seen := report(1, "203.0.113.64")
		h := signedHeader(t, peerSigner, http.MethodPost, path, seen)
		c.Do(t, Request{Method: http.MethodPost, Path: path, Header: h, Body: seen}).Expect(t, http.StatusNoContent)
		for range 3 {
			expect401(t, c.Do(t, Request{Method: http.MethodPost, Path: path, Header: h, Body: seen}))
		}
		notBlocked(t, "203.0.113.64")
		// Nor with another body under the captured signature.
		expect401(t, c.Do(t, Request{Method: http.MethodPost, Path: path, Header: h, Body: report(3, "203.0.113.64")}))
		notBlocked(t, "203.0.113.64")
		// A fresh signed report still counts.
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true, Body: report(2, "203.0.113.64")}).
			Expect(t, http.StatusNoContent)
		if _, ok := mustLocal(env.Svc).BlockedIP("203.0.113.64"); !ok {
			t.Fatal("not blocked after 3 failures reported by signed requests")
		}
	})
	t.Run("ErrTooMany", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true, Body: report(1001, "203.0.113.62"), Invalid: true}).
			ExpectProblem(t, http.StatusRequestEntityTooLarge, "too-large")
		notBlocked(t, "203.0.113.62")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: path, Signed: true,
			Body: []byte(`{"failures":[{"time":"2025-01-02T03:04:05Z","ip":"1.2.3.4","hash":"h","node":"n","proto":"smtp","password":"x"}]}`), Invalid: true}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	})
}
