package xmlapi_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/clusterlog"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// fakeAdmission is a mailcluster.Admission over a fixed set of nodes,
// found by name or by address; it records what it was asked.
type fakeAdmission struct {
	mu    sync.Mutex
	asked []string
}

var _ mailcluster.Admission = (*fakeAdmission)(nil)

// admissionNodes are the nodes fakeAdmission knows.
var admissionNodes = []mailcluster.Member{
	{Name: "node1", APIURL: primaryURL, NodeKeyID: "k1", Version: mailcluster.Version, TimeZone: "UTC"},
	{Name: "node2", APIURL: "http://127.0.0.2:8080", NodeKeyID: "k2", Version: mailcluster.Version, TimeZone: "UTC"},
	{Name: "node3", APIURL: "http://127.0.0.3:8080", NodeKeyID: "k3", Version: mailcluster.Version, TimeZone: "CET"},
}

// versionRefusal is the reason fakeAdmission gives for node4.
var versionRefusal = "Node node4 runs version 9.9.9; the cluster runs " + mailcluster.Version + ". All nodes must run the same version."

func (f *fakeAdmission) Check(_ context.Context, nameOrAddress string, _ []mailcluster.Member) (*mailcluster.Member, error) {
	f.mu.Lock()
	f.asked = append(f.asked, nameOrAddress)
	f.mu.Unlock()
	switch nameOrAddress {
	case "node4":
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "%s", versionRefusal)
	case "node5":
		return nil, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The cluster's nodes cannot be read from Consul.")
	}
	for _, sv := range admissionNodes {
		if nameOrAddress == sv.Name || nameOrAddress == sv.APIURL || nameOrAddress == strings.TrimPrefix(sv.APIURL, "http://") {
			return &sv, nil
		}
	}
	return nil, mailcluster.Errorf(mailcluster.EINVALID, "No node %q of cluster c1 is running.", nameOrAddress)
}

// Asked returns what Check was asked, in order.
func (f *fakeAdmission) Asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// fakeCluster is a mailcluster.ClusterControl with a fixed status.
type fakeCluster struct{ st mailcluster.ClusterStatus }

var _ mailcluster.ClusterControl = (*fakeCluster)(nil)

func (f *fakeCluster) Status(context.Context) (*mailcluster.ClusterStatus, error) {
	st := f.st
	return &st, nil
}

func (f *fakeCluster) Switchover(context.Context, string) error { return nil }

// attrs returns the attributes of e as a map.
func attrs(e *etree.Element) map[string]string {
	out := map[string]string{}
	for _, a := range e.Attr {
		out[a.Key] = a.Value
	}
	return out
}

// mustAttrs fails unless e has exactly the attributes want.
func mustAttrs(t *testing.T, e *etree.Element, want map[string]string) {
	t.Helper()
	if e == nil {
		t.Fatal("element missing")
	}
	got := attrs(e)
	if len(got) != len(want) {
		t.Errorf("<%s> attributes %v, want %v", e.Tag, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("<%s %s=%q>, want %q", e.Tag, k, got[k], v)
		}
	}
}

// serverNames lists the <Servers> of GetClusterInfo at url.
func serverNames(t *testing.T, url string) []string {
	t.Helper()
	r := CallAt(t, url, "GetClusterInfo", "").MustOK(t)
	out := []string{}
	for _, e := range r.Result().FindElements("ClusterInfo/Servers/Server") {
		out = append(out, e.SelectAttrValue("name", ""))
	}
	return out
}

func TestGetClusterInfo(t *testing.T) {
	e := MustOpenEnv(t)

	t.Run("Standalone", func(t *testing.T) {
		r := e.Call(t, "GetClusterInfo", "").MustOK(t)
		if r.Text("ClusterInfo/Enabled") != "No" {
			t.Errorf("Enabled %q:\n%s", r.Text("ClusterInfo/Enabled"), r.Body)
		}
		ci := r.Result().FindElement("ClusterInfo")
		mustAttrs(t, ci.FindElement("LocalNode"), map[string]string{"name": primaryName, "primary": "Yes", "role": "primary"})
		mustAttrs(t, ci.FindElement("Primary"), map[string]string{"name": primaryName, "url": primaryURL})
		nodes := ci.FindElements("Nodes/Node")
		if len(nodes) != 1 {
			t.Fatalf("nodes:\n%s", r.Body)
		}
		a := attrs(nodes[0])
		if a["name"] != primaryName || a["url"] != primaryURL || a["role"] != "primary" || a["healthy"] != "Yes" ||
			a["version"] != mailcluster.Version || a["offsetMs"] != "0" || a["self"] != "Yes" || a["registered"] == "" {
			t.Errorf("node %v", a)
		}
		if len(nodes[0].ChildElements()) != 0 {
			t.Errorf("warnings on a standalone node:\n%s", r.Body)
		}
		if s := ci.FindElement("Servers"); s == nil || len(s.ChildElements()) != 0 {
			t.Errorf("Servers:\n%s", r.Body)
		}
	})
	t.Run("KeyID", func(t *testing.T) {
		e := MustOpenEnv(t, WithNodeKeyID("3f1c9a0e"))
		r := e.Call(t, "GetClusterInfo", "").MustOK(t)
		if id := r.Result().FindElement("ClusterInfo/LocalNode").SelectAttrValue("id", ""); id != "3f1c9a0e" {
			t.Errorf("id %q", id)
		}
	})
	t.Run("Cluster", func(t *testing.T) {
		svc := service.New(e.Store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}},
			slog.New(slog.DiscardHandler), service.Options{
				NodeName: primaryName,
				Mode:     mailcluster.ModeCluster,
				Cluster: &fakeCluster{st: mailcluster.ClusterStatus{Mode: mailcluster.ModeCluster, Cluster: "c1",
					Primary: &mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL},
					Nodes: []mailcluster.NodeStatus{
						{Name: primaryName, APIURL: primaryURL, Role: mailcluster.RolePrimary, Version: "1.0.0", Healthy: true, Registered: true, Self: true},
						{Name: "node2", APIURL: "http://127.0.0.2:8080", Role: mailcluster.RoleSecondary, Version: "1.0.0", Healthy: true,
							Registered: true, OffsetMS: 1500, LagMS: 2, NeverPrimary: true, Warnings: []string{
								"clock differs from the primary's by 1500 ms (more than 1 s)", "time zone CET differs from the primary's UTC"}},
						{Name: "node3", APIURL: "http://127.0.0.3:8080", Role: mailcluster.RolePending, Version: "1.0.0", LagMS: -1,
							Detail: "mailcluster node3 /health: critical"},
					}}},
			})
		_, url := e.Serve(t, svc)
		r := CallAt(t, url, "GetClusterInfo", "").MustOK(t)
		if r.Text("ClusterInfo/Enabled") != "Yes" {
			t.Errorf("Enabled:\n%s", r.Body)
		}
		nodes := r.Result().FindElements("ClusterInfo/Nodes/Node")
		if len(nodes) != 3 {
			t.Fatalf("nodes:\n%s", r.Body)
		}
		mustAttrs(t, nodes[1], map[string]string{"name": "node2", "url": "http://127.0.0.2:8080", "role": "secondary", "healthy": "Yes",
			"registered": "Yes", "version": "1.0.0", "offsetMs": "1500", "lagMs": "2", "self": "No", "neverPrimary": "Yes"})
		ws := nodes[1].SelectElements("Warning")
		if len(ws) != 2 || !strings.Contains(ws[0].Text(), "1500 ms") || !strings.Contains(ws[1].Text(), "CET") {
			t.Errorf("warnings:\n%s", r.Body)
		}
		mustAttrs(t, nodes[2], map[string]string{"name": "node3", "url": "http://127.0.0.3:8080", "role": "pending", "healthy": "No",
			"registered": "No", "version": "1.0.0", "offsetMs": "0", "lagMs": "-1", "self": "No", "neverPrimary": "No",
			"detail": "mailcluster node3 /health: critical"})
	})
}

func TestClusterNodes(t *testing.T) {
	// A standalone node: no admission check.
	standalone := MustOpenEnv(t)
	admit := &fakeAdmission{}
	e := MustOpenEnv(t, WithAdmission(admit))

	t.Run("ErrStandalone", func(t *testing.T) {
		msg := standalone.Call(t, "AddClusterNode", "<Node>node2</Node>").MustStatus(t, xmlapi.StatusInvalidParameter)
		if msg != "A standalone node has no other servers to register." {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("ErrMissing", func(t *testing.T) {
		for _, params := range []string{"", "<Node> </Node>", "<Host>node2</Host>"} {
			msg := standalone.Call(t, "AddClusterNode", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if !strings.Contains(msg, "Node") {
				t.Errorf("message %q", msg)
			}
		}
		msg := standalone.Call(t, "RemoveClusterNode", "").MustStatus(t, xmlapi.StatusMissingParameter)
		if !strings.Contains(msg, "Name") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("Add", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		r := e.Call(t, "AddClusterNode", "<Node>node2</Node>").MustOK(t)
		sv := r.Result().FindElement("Server")
		if sv == nil {
			t.Fatalf("no Server:\n%s", r.Body)
		}
		reg, err := time.Parse(time.RFC3339, sv.SelectAttrValue("registered", ""))
		if err != nil || reg.Before(before.Truncate(time.Second)) {
			t.Errorf("registered %q: %v", sv.SelectAttrValue("registered", ""), err)
		}
		mustAttrs(t, sv, map[string]string{"name": "node2", "url": "http://127.0.0.2:8080", "keyId": "k2",
			"version": mailcluster.Version, "timeZone": "UTC", "registered": sv.SelectAttrValue("registered", "")})
		e.Call(t, "AddClusterNode", "<Name>node3</Name>").MustOK(t)
		e.Call(t, "AddClusterNode", "<Address>127.0.0.1:8080</Address>").MustOK(t)
		if got := serverNames(t, e.URL); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
			t.Errorf("servers %v", got)
		}
		if got := admit.Asked(); !slices.Equal(got, []string{"node2", "node3", "127.0.0.1:8080"}) {
			t.Errorf("asked %v", got)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		msg := e.Call(t, "AddClusterNode", "<Node>http://127.0.0.2:8080</Node>").MustStatus(t, xmlapi.StatusConflict)
		if !strings.Contains(msg, "node2") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("ErrRefused", func(t *testing.T) {
		if msg := e.Call(t, "AddClusterNode", "<Node>node4</Node>").MustStatus(t, xmlapi.StatusInvalidParameter); msg != versionRefusal {
			t.Errorf("message %q", msg)
		}
		e.Call(t, "AddClusterNode", "<Node>node5</Node>").MustStatus(t, xmlapi.StatusUnavailable)
		if got := serverNames(t, e.URL); len(got) != 3 {
			t.Errorf("servers %v", got)
		}
	})
	t.Run("Remove", func(t *testing.T) {
		e.Call(t, "RemoveClusterNode", "<Name>node2</Name>").MustOK(t)
		if r := e.Call(t, "RemoveClusterNode", "<Name>node3</Name>").MustOK(t); len(r.Result().Child) != 0 {
			t.Errorf("result not empty:\n%s", r.Body)
		}
		if got := serverNames(t, e.URL); !slices.Equal(got, []string{"node1"}) {
			t.Errorf("servers %v", got)
		}
		msg := e.Call(t, "RemoveClusterNode", "<Name>node2</Name>").MustStatus(t, xmlapi.StatusNotFound)
		if !strings.Contains(msg, "node2") {
			t.Errorf("message %q", msg)
		}
		msg = e.Call(t, "RemoveClusterNode", "<Name>node1</Name>").MustStatus(t, xmlapi.StatusConflict)
		if !strings.Contains(msg, "switch over") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e.MustCreateDomain(t, "example.com")
		e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin", Password: "secret-pass-dadmin",
			AdminRights: mailcluster.AdminDomain})
		for _, c := range []struct{ op, params string }{
			{"GetClusterInfo", ""},
			{"AddClusterNode", "<Node>node2</Node>"},
			{"RemoveClusterNode", "<Name>node1</Name>"},
			{"GetClusterLog", ""},
		} {
			Post(t, e.URL, "dadmin@example.com", "secret-pass-dadmin", strings.NewReader(Envelope(c.op, c.params))).
				MustStatus(t, xmlapi.StatusForbidden)
		}
		if got := serverNames(t, e.URL); !slices.Equal(got, []string{"node1"}) {
			t.Errorf("servers %v", got)
		}
	})
}

// entries returns the events of a GetClusterLog answer.
func entries(t *testing.T, r *Response) []string {
	t.Helper()
	out := []string{}
	for _, en := range r.Result().FindElements("ClusterLog/Entry") {
		out = append(out, en.SelectAttrValue("event", ""))
	}
	return out
}

func TestGetClusterLog(t *testing.T) {
	t.Run("NoLog", func(t *testing.T) {
		e := MustOpenEnv(t) // a node without a cluster log
		r := e.Call(t, "GetClusterLog", "").MustOK(t)
		if l := r.Result().FindElement("ClusterLog"); l == nil || len(l.ChildElements()) != 0 {
			t.Errorf("answer:\n%s", r.Body)
		}
	})

	// The log exists before the node that records in it (its own log
	// lines are not asserted).
	l := clusterlog.NewFile(filepath.Join(t.TempDir(), "cluster.log"), primaryName, slog.New(slog.DiscardHandler))
	e := MustOpenEnv(t, WithEvents(l))
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Record(mailcluster.ClusterEvent{Time: t0, Event: "join", Message: "node2 joined", Fields: map[string]string{"node": "node2"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(time.Minute), Level: "warn", Event: "clock-warning",
		Message: "clock differs from the primary's by 1500 ms (more than 1 s)",
		Fields:  map[string]string{"zone": "UTC", "node": "node2", "offset_ms": "1500"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(2 * time.Minute), Level: "error", Event: "registration-refused",
		Message: "Node node4 runs version 9.9.9 & <more>.", Fields: map[string]string{"node": "node4"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(3 * time.Minute), Event: "election", Message: "node1 is primary"})

	t.Run("All", func(t *testing.T) {
		r := e.Call(t, "GetClusterLog", "").MustOK(t)
		es := r.Result().FindElements("ClusterLog/Entry")
		if len(es) != 4 {
			t.Fatalf("entries:\n%s", r.Body)
		}
		mustAttrs(t, es[1], map[string]string{"time": "2030-01-02T03:05:05Z", "level": "warn", "event": "clock-warning", "node": primaryName})
		if m := es[1].SelectElement("Message"); m == nil || !strings.Contains(m.Text(), "1500 ms") {
			t.Errorf("message:\n%s", r.Body)
		}
		var fields []string
		for _, f := range es[1].SelectElements("Field") {
			fields = append(fields, f.SelectAttrValue("name", "")+"="+f.Text())
		}
		if want := []string{"node=node2", "offset_ms=1500", "zone=UTC"}; !slices.Equal(fields, want) {
			t.Errorf("fields %v, want %v (sorted by name)", fields, want)
		}
		if got := es[2].SelectElement("Message").Text(); got != "Node node4 runs version 9.9.9 & <more>." {
			t.Errorf("message %q", got)
		}
		if es[0].SelectAttrValue("level", "") != "info" || len(es[3].SelectElements("Field")) != 0 {
			t.Errorf("entries:\n%s", r.Body)
		}
	})
	for _, tc := range []struct {
		name, params string
		want         []string
	}{
		{"Since", "<Since>2030-01-02T03:05:05Z</Since>", []string{"clock-warning", "registration-refused", "election"}},
		{"SinceOffset", "<Since>2030-01-02T05:06:05+02:00</Since>", []string{"registration-refused", "election"}},
		{"LevelWarn", "<Level>warn</Level>", []string{"clock-warning", "registration-refused"}},
		{"LevelError", "<Level>error</Level>", []string{"registration-refused"}},
		{"Limit", "<Limit>2</Limit>", []string{"registration-refused", "election"}},
		{"Combined", "<Level>warn</Level><Limit>1</Limit><Since>2030-01-02T03:04:05Z</Since>", []string{"registration-refused"}},
		{"OwnNode", "<Node>node1</Node><Limit>1</Limit>", []string{"election"}},
		{"EmptyParameters", "<Since/><Level/><Node/>", []string{"join", "clock-warning", "registration-refused", "election"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Call(t, "GetClusterLog", tc.params).MustOK(t)
			if got := entries(t, r); !slices.Equal(got, tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, params, msg string
		status            int
	}{
		{"ErrSince", "<Since>yesterday</Since>", "Since", xmlapi.StatusInvalidParameter},
		{"ErrLevel", "<Level>debug</Level>", "Level", xmlapi.StatusInvalidParameter},
		{"ErrLimitZero", "<Limit>0</Limit>", "Limit", xmlapi.StatusInvalidParameter},
		{"ErrLimitLarge", "<Limit>1001</Limit>", "Limit", xmlapi.StatusInvalidParameter},
		{"ErrLimitWord", "<Limit>ten</Limit>", "Limit", xmlapi.StatusInvalidParameter},
		{"ErrUnknownNode", "<Node>node9</Node>", "node9", xmlapi.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := e.Call(t, "GetClusterLog", tc.params).MustStatus(t, tc.status)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not name %s", msg, tc.msg)
			}
		})
	}
}
