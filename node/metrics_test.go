package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/kvstore"
	"mailcluster/node"
	"mailcluster/service"
)

// recordingLog is a ClusterLog that keeps what it was given.
type recordingLog struct {
	mu     sync.Mutex
	events []mailcluster.ClusterEvent
}

func (l *recordingLog) Record(ev mailcluster.ClusterEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *recordingLog) Events(limit int) ([]mailcluster.ClusterEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mailcluster.ClusterEvent(nil), l.events...), nil
}

// TestScreeningLog drives the real Service's screening decisions through
// the node's cluster log: the event kinds the metrics count are the ones the
// Service records.
func TestScreeningLog(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := node.NewMetrics()
	inner := &recordingLog{}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "n1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost, Events: node.NewEventLog(inner, m)})
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	admin, err := svc.Authenticate(ctx, "admin@localhost", "admin-pass-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx = service.NewContextWithCaller(ctx, admin)
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []string{"alice", "bob"} {
		if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: mb, Password: mb + "-pass-123"}); err != nil {
			t.Fatal(err)
		}
	}

	// Ten distinct failures for alice from one address: the address is
	// blocked (5 by default) and the account frozen (10 by default).
	var fs []mailcluster.LoginFailure
	for i := range 10 {
		fs = append(fs, mailcluster.LoginFailure{Time: time.Now(), IP: "192.0.2.7", Address: "alice@example.com",
			Hash: fmt.Sprintf("hash-%d", i), Node: "n1", Proto: "rest"})
	}
	if err := svc.ReportFailures(service.SystemContext(context.Background(), "node n1"), fs); err != nil {
		t.Fatal(err)
	}
	if err := svc.FreezeAccount(ctx, "bob@example.com", "test"); err != nil {
		t.Fatal(err)
	}

	if n := testutil.ToFloat64(m.Blocks()); n != 1 {
		t.Errorf("blocks = %v, want 1", n)
	}
	for src, want := range map[string]float64{"auto": 1, "admin": 1} {
		if n := testutil.ToFloat64(m.Freezes().WithLabelValues(src)); n != want {
			t.Errorf("freezes{source=%q} = %v, want %v", src, n, want)
		}
	}
	evs, _ := inner.Events(0)
	var names []string
	for _, ev := range evs {
		names = append(names, string(ev.Event))
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "ip-blocked") || strings.Count(got, "account-frozen") != 2 {
		t.Errorf("events passed on: %s", got)
	}
}

// TestNodeMetrics checks the role and replication metrics of a standalone
// node and the XML-API counter.
func TestNodeMetrics(t *testing.T) {
	m := node.NewMetrics()
	lead := mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "n1"}}
	st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m.RegisterStandalone(lead, st, time.Now().Add(-time.Minute))
	m.XMLAPIOperation("GetDomainList", 0)
	m.XMLAPIOperation("GetDomainList", 0)
	m.XMLAPIOperation("unknown", 1)

	want := `
# HELP mailcluster_role The node's role: 1 for the current one, 0 for the others.
# TYPE mailcluster_role gauge
mailcluster_role{role="pending"} 0
mailcluster_role{role="primary"} 1
mailcluster_role{role="secondary"} 0
mailcluster_role{role="unknown"} 0
# HELP mailcluster_elections_total How often this node became the primary (0 on a standalone node, which is always primary).
# TYPE mailcluster_elections_total counter
mailcluster_elections_total 0
# HELP mailcluster_replication_lag_seconds How far behind Consul this node's state may be: 0 while the watch is connected, else the time since Consul last answered; -1 before the first answer. Always 0 on a standalone node.
# TYPE mailcluster_replication_lag_seconds gauge
mailcluster_replication_lag_seconds 0
# HELP mailcluster_watch_errors_total Failed Consul watches, by watch (state: the replicated state; election: the primary key). Always 0 on a standalone node.
# TYPE mailcluster_watch_errors_total counter
mailcluster_watch_errors_total{watch="election"} 0
mailcluster_watch_errors_total{watch="state"} 0
# HELP mailcluster_xmlapi_operations_total XML-API requests answered, by operation ("none" when refused before the envelope was read, "unknown" when unsupported) and <Status> id.
# TYPE mailcluster_xmlapi_operations_total counter
mailcluster_xmlapi_operations_total{operation="GetDomainList",status="0"} 2
mailcluster_xmlapi_operations_total{operation="unknown",status="1"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mailcluster_role", "mailcluster_elections_total",
		"mailcluster_replication_lag_seconds", "mailcluster_watch_errors_total", "mailcluster_xmlapi_operations_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "mailcluster_primary_seconds_total":
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v < 60 {
				t.Errorf("primary seconds = %v, want >= 60", v)
			}
		case "mailcluster_replication_index":
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != float64(st.Index()) {
				t.Errorf("replication index = %v, want %d", v, st.Index())
			}
		}
	}
}

// TestMainMetrics starts a standalone node in-process and scrapes
// /metrics without credentials: every family of the node is there.
func TestMainMetrics(t *testing.T) {
	m := node.New(&node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", SMTPAddr: "127.0.0.1:0", SMTPHostname: "mx.test"}, slog.New(slog.DiscardHandler), nil)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := http.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, b)
	}
	for _, want := range []string{
		`mailcluster_role{role="primary"} 1`,
		"mailcluster_elections_total 0",
		"# TYPE mailcluster_primary_seconds_total counter",
		"# TYPE mailcluster_replication_index gauge",
		"mailcluster_replication_lag_seconds 0",
		`mailcluster_watch_errors_total{watch="state"} 0`,
		`mailcluster_smtp_sessions_total{listener="inbound"} 0`,
		"mailcluster_smtp_deliveries_total 0",
		`mailcluster_screening_freezes_total{source="auto"} 0`,
		"mailcluster_screening_blocks_total 0",
		"# TYPE go_goroutines gauge",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The scrape itself is counted once it has been answered.
	res, err = http.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if want := `mailcluster_http_requests_total{method="GET",route="/metrics",status="200"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}
