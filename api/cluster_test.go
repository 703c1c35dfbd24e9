package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/service"
)

// TestClusterStandalone covers the cluster routes on a standalone node:
// the status lists the node itself; a switchover has nowhere to go.
func TestClusterStandalone(t *testing.T) {
	env := MustOpenEnv(t)
	var st struct {
		Mode    string
		Primary *struct{ Name string }
		Nodes   []struct {
			Name       string
			Role       string
			Healthy    bool
			Self       bool
			Index      uint64
			Registered *bool
			OffsetMs   *int64
			Warnings   []string
		}
	}
	res := env.Admin.Get(t, "/api/v1/cluster").Expect(t, http.StatusOK)
	res.JSON(t, &st)
	if st.Mode != "standalone" || st.Primary == nil || st.Primary.Name != "node1" || len(st.Nodes) != 1 {
		t.Fatalf("status = %+v", st)
	}
	if n := st.Nodes[0]; n.Name != "node1" || n.Role != "primary" || !n.Healthy || !n.Self || n.Index == 0 {
		t.Fatalf("node = %+v", n)
	}
	if n := st.Nodes[0]; n.Registered == nil || n.OffsetMs == nil || *n.OffsetMs != 0 || n.Warnings == nil || len(n.Warnings) != 0 {
		t.Fatalf("node = %+v: %s", n, res.Body)
	}
	if !strings.Contains(string(res.Body), `"warnings":[]`) {
		t.Errorf("warnings is not an empty array: %s", res.Body)
	}
	env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/switchover", Body: []byte(`{}`)}).
		ExpectProblem(t, http.StatusBadRequest, "invalid")
	env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/switchover", Body: []byte(`{"bogus":1}`), Invalid: true}).
		ExpectProblem(t, http.StatusBadRequest, "invalid")
}

// fakeCluster is a mailcluster.ClusterControl that reports a fixed status.
type fakeCluster struct{ st mailcluster.ClusterStatus }

var _ mailcluster.ClusterControl = (*fakeCluster)(nil)

func (f *fakeCluster) Status(context.Context) (*mailcluster.ClusterStatus, error) {
	st := f.st
	return &st, nil
}

func (f *fakeCluster) Switchover(context.Context, string) error { return nil }

// TestClusterNodeFields checks that registration, clock offset and
// warnings of every node reach the answer, with a pending node.
func TestClusterNodeFields(t *testing.T) {
	p := &mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}
	env := MustOpenEnv(t, WithClusterControl(&fakeCluster{st: mailcluster.ClusterStatus{Mode: mailcluster.ModeCluster, Cluster: "c1", Primary: p,
		Nodes: []mailcluster.NodeStatus{
			{Name: "node1", APIURL: primaryURL, Role: mailcluster.RolePrimary, Version: "1.0.0", Healthy: true, Registered: true, Self: true},
			{Name: "node2", APIURL: "http://127.0.0.2:8080", Role: mailcluster.RoleSecondary, Version: "1.0.0", Healthy: true,
				Registered: true, OffsetMS: -1500, LagMS: 3,
				Warnings: []string{"clock differs from the primary's by -1500 ms (more than 1 s)", "time zone CET differs from the primary's UTC"}},
			{Name: "node3", APIURL: "http://127.0.0.3:8080", Role: mailcluster.RolePending, Version: "1.0.0", LagMS: -1},
		}}}))
	var st struct {
		Cluster string
		Nodes   []struct {
			Name       string
			Role       string
			Registered bool
			OffsetMs   int64
			Warnings   []string
		}
	}
	env.Admin.Get(t, "/api/v1/cluster").Expect(t, http.StatusOK).JSON(t, &st)
	if st.Cluster != "c1" || len(st.Nodes) != 3 {
		t.Fatalf("status = %+v", st)
	}
	if n := st.Nodes[1]; !n.Registered || n.OffsetMs != -1500 || len(n.Warnings) != 2 || !strings.Contains(n.Warnings[1], "CET") {
		t.Errorf("node2 = %+v", n)
	}
	if n := st.Nodes[2]; n.Role != "pending" || n.Registered || n.Warnings == nil || len(n.Warnings) != 0 {
		t.Errorf("node3 = %+v", n)
	}
}

func TestNodeKeyID(t *testing.T) {
	env := MustOpenEnv(t)
	t.Run("Absent", func(t *testing.T) {
		res := env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK)
		if strings.Contains(string(res.Body), "keyId") {
			t.Errorf("keyId without a node key: %s", res.Body)
		}
	})
	t.Run("OK", func(t *testing.T) {
		env := MustOpenEnv(t, WithServiceOptions(func(o *service.Options) { o.NodeKeyID = "3f1c9a0e" }))
		var n struct{ KeyID string }
		env.Admin.Get(t, "/api/v1/node").Expect(t, http.StatusOK).JSON(t, &n)
		if n.KeyID != "3f1c9a0e" {
			t.Errorf("keyId = %q", n.KeyID)
		}
	})
}

func TestHealthFields(t *testing.T) {
	env := MustOpenEnv(t)
	var h struct {
		Index   uint64
		LagMs   int64
		Primary *struct{ Name string }
	}
	env.Admin.Anonymous().Get(t, "/health").Expect(t, http.StatusOK).JSON(t, &h)
	if h.Index == 0 || h.LagMs != 0 || h.Primary == nil || h.Primary.Name != "node1" {
		t.Fatalf("health = %+v", h)
	}
}

// fakeAdmission is a mailcluster.Admission over a fixed set of nodes,
// found by name or by address; it records what it was asked.
type fakeAdmission struct {
	nodes   map[string]mailcluster.Member // by name and by address
	refused map[string]string             // name or address -> reason
	down    map[string]bool               // unreachable

	mu    sync.Mutex
	asked []string
	given [][]string // names of the registered servers at each call
}

var _ mailcluster.Admission = (*fakeAdmission)(nil)

func newFakeAdmission() *fakeAdmission {
	f := &fakeAdmission{nodes: map[string]mailcluster.Member{}, refused: map[string]string{}, down: map[string]bool{}}
	for _, sv := range []mailcluster.Member{
		{Name: "node1", APIURL: primaryURL, NodeKeyID: "k1", Version: mailcluster.Version, TimeZone: "UTC"},
		{Name: "node2", APIURL: "http://127.0.0.2:8080", NodeKeyID: "k2", Version: mailcluster.Version, TimeZone: "UTC"},
		{Name: "node3", APIURL: "http://127.0.0.3:8080", NodeKeyID: "k3", Version: mailcluster.Version, TimeZone: "CET"},
	} {
		f.nodes[sv.Name] = sv
		f.nodes[strings.TrimPrefix(sv.APIURL, "http://")] = sv
		f.nodes[sv.APIURL] = sv
	}
	f.refused["node4"] = "Node node4 runs version 9.9.9; the cluster runs " + mailcluster.Version + ". All nodes must run the same version."
	f.down["node5"] = true
	return f
}

func (f *fakeAdmission) Check(_ context.Context, nameOrAddress string, registered []mailcluster.Member) (*mailcluster.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, nameOrAddress)
	var names []string
	for _, r := range registered {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	f.given = append(f.given, names)
	if reason, ok := f.refused[nameOrAddress]; ok {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "%s", reason)
	}
	if f.down[nameOrAddress] {
		return nil, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The cluster's nodes cannot be read from Consul.")
	}
	sv, ok := f.nodes[nameOrAddress]
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "No node %q of cluster c1 is running.", nameOrAddress)
	}
	return &sv, nil
}

// Calls returns what Check was asked and the registered names it was given.
func (f *fakeAdmission) Calls() ([]string, [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked), slices.Clone(f.given)
}

// Server is the JSON form of a registered server.
type Server struct {
	Name         string    `json:"name"`
	APIURL       string    `json:"apiUrl"`
	NodeKeyID    string    `json:"nodeKeyId"`
	Version      string    `json:"version"`
	TimeZone     string    `json:"timeZone"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// servers lists the registered servers' names through the API.
func servers(t *testing.T, c *Client) []string {
	t.Helper()
	var l struct{ Servers []Server }
	res := c.Get(t, "/api/v1/cluster/servers").Expect(t, http.StatusOK)
	res.JSON(t, &l)
	if l.Servers == nil {
		t.Fatalf("servers is not an array: %s", res.Body)
	}
	names := []string{}
	for _, s := range l.Servers {
		names = append(names, s.Name)
	}
	return names
}

func TestClusterServers(t *testing.T) {
	env := MustOpenEnv(t)
	c := env.Admin

	t.Run("ListEmpty", func(t *testing.T) {
		res := c.Get(t, "/api/v1/cluster/servers").Expect(t, http.StatusOK)
		if string(res.Body) != `{"servers":[]}`+"\n" {
			t.Errorf("body %q", res.Body)
		}
	})
	t.Run("ErrStandalone", func(t *testing.T) {
		p := c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node2"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if p.Detail != "A standalone node has no other servers to register." {
			t.Errorf("detail %q", p.Detail)
		}
	})
	t.Run("ErrBody", func(t *testing.T) {
		for _, tc := range []struct {
			name, body string
			invalid    bool
		}{
			{"Empty", `{"node":""}`, true},
			{"Missing", `{}`, true},
			{"Unknown", `{"node":"node2","force":true}`, true},
			{"Number", `{"node":2}`, true},
			{"Space", `{"node":"node 2"}`, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/servers", Body: []byte(tc.body), Invalid: tc.invalid}).
					ExpectProblem(t, http.StatusBadRequest, "invalid")
			})
		}
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/servers", Body: []byte(`node2`), ContentType: "text/plain",
			Invalid: true}).ExpectProblem(t, http.StatusUnsupportedMediaType, "unsupported-media-type")
	})

	// The rest runs on a node that admits others and keeps a cluster log.
	admit := newFakeAdmission()
	env = MustOpenEnv(t, WithAdmission(admit), WithClusterLog(nil))
	c = env.Admin

	t.Run("RegisterByName", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		res := c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node2"}).Expect(t, http.StatusCreated)
		if loc := res.Header.Get("Location"); loc != "/api/v1/cluster/servers/node2" {
			t.Errorf("Location = %q", loc)
		}
		var sv Server
		res.JSON(t, &sv)
		if sv.Name != "node2" || sv.APIURL != "http://127.0.0.2:8080" || sv.NodeKeyID != "k2" || sv.Version != mailcluster.Version ||
			sv.TimeZone != "UTC" || sv.RegisteredAt.Before(before) || sv.RegisteredAt.Location() != time.UTC {
			t.Errorf("server = %+v", sv)
		}
		if got := servers(t, c); !slices.Equal(got, []string{"node2"}) {
			t.Errorf("servers %v", got)
		}
	})
	t.Run("RegisterByAddress", func(t *testing.T) {
		var sv Server
		c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": " 127.0.0.3:8080 "}).
			Expect(t, http.StatusCreated).JSON(t, &sv)
		if sv.Name != "node3" || sv.TimeZone != "CET" {
			t.Errorf("server = %+v", sv)
		}
		// Sorted by name, whatever the order of registration.
		c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "http://127.0.0.1:8080"}).
			Expect(t, http.StatusCreated)
		if got := servers(t, c); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
			t.Errorf("servers %v", got)
		}
		asked, given := admit.Calls()
		if !slices.Equal(asked, []string{"node2", "127.0.0.3:8080", "http://127.0.0.1:8080"}) {
			t.Errorf("asked %q", asked)
		}
		if len(given) != 3 || len(given[0]) != 0 || !slices.Equal(given[2], []string{"node2", "node3"}) {
			t.Errorf("registered servers given to the check: %v", given)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		p := c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node2"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
		if !strings.Contains(p.Detail, "node2") {
			t.Errorf("detail %q", p.Detail)
		}
	})
	t.Run("ErrRefused", func(t *testing.T) {
		p := c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node4"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, "runs version 9.9.9") || !strings.Contains(p.Detail, mailcluster.Version) {
			t.Errorf("detail %q does not give the reason", p.Detail)
		}
		p = c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "nowhere"}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
		if !strings.Contains(p.Detail, "nowhere") {
			t.Errorf("detail %q", p.Detail)
		}
		// The refusal is in the cluster log, with its reason.
		var l clusterLog
		c.Get(t, "/api/v1/cluster/log?level=warn").Expect(t, http.StatusOK).JSON(t, &l)
		if len(l.Entries) != 2 || l.Entries[0].Event != "registration-refused" || l.Entries[0].Fields["node"] != "node4" ||
			!strings.Contains(l.Entries[0].Message, "9.9.9") {
			t.Errorf("log %+v", l.Entries)
		}
		if got := servers(t, c); len(got) != 3 {
			t.Errorf("servers %v", got)
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		res := c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node5"})
		res.ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
		if res.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})
	t.Run("Remove", func(t *testing.T) {
		c.Delete(t, "/api/v1/cluster/servers/node2").Expect(t, http.StatusNoContent)
		if got := servers(t, c); !slices.Equal(got, []string{"node1", "node3"}) {
			t.Errorf("servers %v", got)
		}
		p := c.Delete(t, "/api/v1/cluster/servers/node2").ExpectProblem(t, http.StatusNotFound, "not-found")
		if !strings.Contains(p.Detail, "node2") {
			t.Errorf("detail %q", p.Detail)
		}
		// Registered again after removal.
		c.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node2"}).Expect(t, http.StatusCreated)
		var l clusterLog
		c.Get(t, "/api/v1/cluster/log").Expect(t, http.StatusOK).JSON(t, &l)
		var events []string
		for _, e := range l.Entries {
			events = append(events, e.Event)
		}
		if want := []string{"registration", "registration", "registration", "registration-refused", "registration-refused",
			"registration-refused", "unregistered", "registration"}; !slices.Equal(events, want) {
			t.Errorf("events %v, want %v", events, want)
		}
	})
	t.Run("ErrRemoveSelf", func(t *testing.T) {
		p := c.Delete(t, "/api/v1/cluster/servers/node1").ExpectProblem(t, http.StatusConflict, "conflict")
		if !strings.Contains(p.Detail, "switch over") {
			t.Errorf("detail %q", p.Detail)
		}
	})
	t.Run("ErrMethod", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPut, Path: "/api/v1/cluster/servers/node2", Body: []byte(`{}`)}).
			ExpectProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
	})
}

// TestClusterForbidden checks that the cluster routes are reserved to
// global administrators.
func TestClusterForbidden(t *testing.T) {
	env := MustOpenEnv(t, WithAdmission(newFakeAdmission()))
	env.Admin.MustCreateDomain(t, "example.com")
	env.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "boss", "password": "boss-pass-1", "adminRights": "domain"})
	boss := env.Admin.As("boss@example.com", "boss-pass-1")
	env.Admin.Send(t, http.MethodPost, "/api/v1/cluster/servers", map[string]any{"node": "node2"}).Expect(t, http.StatusCreated)
	for _, r := range []Request{
		{Method: http.MethodGet, Path: "/api/v1/cluster"},
		{Method: http.MethodGet, Path: "/api/v1/cluster/servers"},
		{Method: http.MethodPost, Path: "/api/v1/cluster/servers", Body: []byte(`{"node":"node3"}`)},
		{Method: http.MethodDelete, Path: "/api/v1/cluster/servers/node2"},
		{Method: http.MethodGet, Path: "/api/v1/cluster/log"},
	} {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			boss.Do(t, r).ExpectProblem(t, http.StatusForbidden, "forbidden")
		})
	}
	if got := servers(t, env.Admin); !slices.Equal(got, []string{"node2"}) {
		t.Errorf("servers %v", got)
	}
	env.Admin.Anonymous().Get(t, "/api/v1/cluster/servers").ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
}
