package mailsvc_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/kvstore"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// metricsEnv is a node's mail service with its SMTP metrics in reg.
type metricsEnv struct {
	svc                 *service.Service
	reg                 *prometheus.Registry
	inbound, submission string
}

// MustOpenMetricsEnv starts both listeners with a Registerer over a
// bootstrapped service with the domain example.com and alice in it.
func MustOpenMetricsEnv(t *testing.T) *metricsEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	data := t.TempDir()
	st, err := kvstore.OpenBoltStore(filepath.Join(data, "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: "http://127.0.0.1:1"}}, log,
		service.Options{BcryptCost: bcrypt.MinCost})
	ctx, cancel := context.WithCancel(service.SystemContext(context.Background(), "test"))
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: data}); err != nil {
		t.Fatal(err)
	}
	ob, err := cluster.OpenOutbox(filepath.Join(data, "outbox.db"), "node1", outboxSender(svc), log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	reg := prometheus.NewRegistry()
	srv := mailsvc.NewServer(mailstore.NewStore(mustLocal(svc), ob, log, mailstore.Options{}), mustLocal(svc), mailsvc.ServerConfig{Hostname: "mx.test", Log: log, Registerer: reg})
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeInbound(l1)
	go srv.ServeSubmission(l2)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		ob.Close()
		st.Close()
	})
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	return &metricsEnv{svc: svc, reg: reg, inbound: l1.Addr().String(), submission: l2.Addr().String()}
}

// wantMetrics compares the SMTP metrics with want (exposition format
// without HELP and TYPE lines).
func (e *metricsEnv) wantMetrics(t *testing.T, want string) {
	t.Helper()
	head := `# HELP mailcluster_smtp_deliveries_total Messages received over SMTP and delivered to every recipient's mailbox.
# TYPE mailcluster_smtp_deliveries_total counter
# HELP mailcluster_smtp_rejections_total SMTP commands and connections refused, by reply code.
# TYPE mailcluster_smtp_rejections_total counter
# HELP mailcluster_smtp_sessions_total SMTP sessions opened (connections accepted past screening), by listener.
# TYPE mailcluster_smtp_sessions_total counter
`
	var err error
	// Sessions are counted at accept, which may trail the client a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err = testutil.GatherAndCompare(e.reg, strings.NewReader(head+want),
			"mailcluster_smtp_sessions_total", "mailcluster_smtp_deliveries_total", "mailcluster_smtp_rejections_total")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestSMTPMetrics(t *testing.T) {
	e := MustOpenMetricsEnv(t)
	e.wantMetrics(t, `
mailcluster_smtp_deliveries_total 0
mailcluster_smtp_sessions_total{listener="inbound"} 0
mailcluster_smtp_sessions_total{listener="submission"} 0
`)

	t.Run("Delivery", func(t *testing.T) {
		c := dial(t, e.inbound)
		if err := send(c, "sender@remote.test", []string{"alice@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if err := send(c, "sender@remote.test", []string{"alice@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		e.wantMetrics(t, `
mailcluster_smtp_deliveries_total 2
mailcluster_smtp_sessions_total{listener="inbound"} 1
mailcluster_smtp_sessions_total{listener="submission"} 0
`)
	})
	t.Run("Rejections", func(t *testing.T) {
		c := dial(t, e.inbound)
		if err := c.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		wantReply(t, c.Rcpt("nobody@example.com", nil), 550, smtp.EnhancedCode{5, 1, 1})
		wantReply(t, c.Rcpt("someone@elsewhere.test", nil), 554, smtp.EnhancedCode{5, 7, 1})
		s := dial(t, e.submission)
		wantReply(t, s.Mail("alice@example.com", nil), 530, smtp.EnhancedCode{5, 7, 0})
		e.wantMetrics(t, `
mailcluster_smtp_deliveries_total 2
mailcluster_smtp_rejections_total{code="530"} 1
mailcluster_smtp_rejections_total{code="550"} 1
mailcluster_smtp_rejections_total{code="554"} 1
mailcluster_smtp_sessions_total{listener="inbound"} 2
mailcluster_smtp_sessions_total{listener="submission"} 1
`)
	})
	t.Run("BlockedAtConnect", func(t *testing.T) {
		ctx := service.SystemContext(context.Background(), "test")
		admin, err := e.svc.Authenticate(ctx, "admin@localhost", "admin-pass-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.BlockIP(service.NewContextWithCaller(ctx, admin), "127.0.0.1", time.Time{}, "test"); err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", e.inbound)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := conn.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "421 ") {
			t.Fatalf("greeting = %q, want 421", buf[:n])
		}
		// Refused before any session: no session is counted.
		e.wantMetrics(t, `
mailcluster_smtp_deliveries_total 2
mailcluster_smtp_rejections_total{code="421"} 1
mailcluster_smtp_rejections_total{code="530"} 1
mailcluster_smtp_rejections_total{code="550"} 1
mailcluster_smtp_rejections_total{code="554"} 1
mailcluster_smtp_sessions_total{listener="inbound"} 2
mailcluster_smtp_sessions_total{listener="submission"} 1
`)
	})
}
