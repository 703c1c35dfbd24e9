package integration_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailcluster/api"
	"mailcluster/internal/dnstest"
	"mailcluster/internal/harness"
)

// The sender of the outbound tests: an account of the cluster that relays
// through submission.
const (
	obSender   = "alice@example.com"
	obSenderPW = "alice-relay-pass-1"
)

// startOutboundCluster starts n nodes sharing one --shared-path (so that
// they share the outbound queue and the mailboxes), creates example.com
// with obSender and waits until every node has the account. The first
// node starts alone and writes its shared-path probe before the others
// ask to join (auto-admit refuses a node that cannot see the probe, and
// tries it again only a minute later). Node i is Nodes[i]; restart one
// with Node.Restart.
func startOutboundCluster(t *testing.T, n int) (*Cluster, int) {
	t.Helper()
	shared := t.TempDir()
	c := StartCluster(t, harness.SharedConsul(t), 1, map[int][]string{0: {"--shared-path", shared}})
	eventually(t, waitTimeout, "the primary writes its shared-path probe", func() bool {
		_, err := os.Stat(filepath.Join(shared, ".mailcluster-probe"))
		return err == nil
	})
	for i := 1; i < n; i++ {
		name := fmt.Sprintf("n%d", i)
		node := c.NewNode(name, "--auto-admit", "--shared-path", shared)
		c.Nodes = append(c.Nodes, node)
		eventually(t, 20*time.Second, name+" is admitted and serves", func() bool { return role(node) == "secondary" })
	}
	p := c.WaitPrimary(10 * time.Second)
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains/example.com/accounts",
		`{"mailbox":"alice","password":"`+obSenderPW+`"}`); code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	for i := range c.Nodes {
		eventually(t, waitTimeout, "account replicated", func() bool {
			code, _ := admin(t, c.Nodes[i], "GET", "/api/v1/domains/example.com/accounts/alice", "")
			return code == 200
		})
	}
	return c, p
}

// destDNS starts a DNS server answering MX dest.test -> mx.dest.test and
// A mx.dest.test -> 127.0.0.1.
func destDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	dns := dnstest.Start(t)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	dns.SetA("mx.dest.test", "127.0.0.1")
	return dns
}

// putSettings sets section/key values on the primary (pairs of
// "Section/Key", value) and waits until every live node reads them.
func putSettings(t *testing.T, c *Cluster, p int, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		path := "/api/v1/settings/mailcluster/" + kv[i]
		if code, body := admin(t, c.Nodes[p], "PUT", path, fmt.Sprintf(`{"value":%q}`, kv[i+1])); code >= 300 {
			t.Fatalf("PUT %s: %d %s", path, code, body)
		}
	}
	for _, n := range c.Nodes {
		if n == nil || !n.Alive() {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			want := fmt.Sprintf(`"value":%q`, kv[i+1])
			eventually(t, waitTimeout, kv[i]+" replicated to "+n.BaseURL, func() bool {
				_, body := admin(t, n, "GET", "/api/v1/settings/mailcluster/"+kv[i], "")
				return strings.Contains(body, want)
			})
		}
	}
}

// obMessage is one message to submit.
type obMessage struct {
	to, subject, body string
}

// submitAs logs in to a submission listener (STARTTLS, AUTH PLAIN) as
// obSender and sends every message in one session, with the account's
// own address in From.
func submitAs(addr string, msgs ...obMessage) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", obSender, obSenderPW)); err != nil {
		return err
	}
	for _, m := range msgs {
		msg := "From: " + obSender + "\r\nTo: " + m.to + "\r\nSubject: " + m.subject +
			"\r\nMessage-ID: <" + m.subject + "@example.com>\r\n\r\n" + m.body + "\r\n"
		if err := c.SendMail(obSender, []string{m.to}, strings.NewReader(msg)); err != nil {
			return fmt.Errorf("%s: %w", m.subject, err)
		}
	}
	return c.Quit()
}

// queueList reads the outbound queue through a node's REST API (node ""
// lists every node's queue), up to 1000 messages.
func queueList(t testing.TB, n *Node, node string) []api.QueuedMessage {
	t.Helper()
	code, body := admin(t, n, "GET", "/api/v1/queue?limit=1000&node="+node, "")
	var page api.QueuePage
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("GET /api/v1/queue on %s: %d %s", n.BaseURL, code, body)
	}
	return page.Messages
}

// countingSink is an SMTP server in the test process that accepts every
// message (no STARTTLS offered) and counts them by Subject.
type countingSink struct {
	Addr string

	mu       sync.Mutex
	counts   map[string]int
	sessions int // connections that reached MAIL
	srv      *smtp.Server
}

// startSink listens on addr (127.0.0.1:port; port 0 picks one) and stops on
// cleanup.
func startSink(t *testing.T, addr string) *countingSink {
	t.Helper()
	s := &countingSink{counts: map[string]int{}}
	s.listen(t, addr)
	return s
}

func (s *countingSink) listen(t *testing.T, addr string) {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	// A port just freed by another listener may take a moment.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	srv := smtp.NewServer(s)
	srv.Domain = "mx.dest.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.mu.Lock()
	s.Addr, s.srv = ln.Addr().String(), srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// stop closes the listener and every connection.
func (s *countingSink) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

// port is the sink's TCP port.
func (s *countingSink) port() string {
	_, p, _ := net.SplitHostPort(s.Addr)
	return p
}

// snapshot returns a copy of the counts by Subject and the MAIL count.
func (s *countingSink) snapshot() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out, s.sessions
}

func (s *countingSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct{ s *countingSink }

func (x *sinkSession) Mail(string, *smtp.MailOptions) error {
	x.s.mu.Lock()
	x.s.sessions++
	x.s.mu.Unlock()
	return nil
}
func (x *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *sinkSession) Reset()                               {}
func (x *sinkSession) Logout() error                        { return nil }

func (x *sinkSession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, m.Body)
	x.s.mu.Lock()
	x.s.counts[m.Header.Get("Subject")]++
	x.s.mu.Unlock()
	return nil
}

// takeoverSubjects returns prefix-0..prefix-<n-1>.
func takeoverSubjects(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}
