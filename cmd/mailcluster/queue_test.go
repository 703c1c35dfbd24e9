package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/kvstore"
	"mailcluster/service"
)

const (
	cliAdmin    = "admin@localhost"
	cliPassword = "queue-pass-1"
	cliPrimary  = "http://127.0.0.1:8080"
	queueA      = "0000000000000001-aaaaaaaaaaaa"
	queueB      = "0000000000000002-bbbbbbbbbbbb"
)

// cliQueue is an outbound queue in memory that records retries and
// deletions.
type cliQueue struct {
	mu      sync.Mutex
	msgs    []mailcluster.QueuedMessage
	retried []string
}

func (q *cliQueue) List(node string, limit int, cursor string) ([]mailcluster.QueuedMessage, string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []mailcluster.QueuedMessage
	for _, m := range q.msgs {
		if (node == "" || m.Node == node) && m.ID > cursor {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		return out[:limit], out[limit-1].ID, nil
	}
	return out, "", nil
}

func (q *cliQueue) Message(id string) (*mailcluster.QueuedMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs {
		if m.ID == id {
			return &m, nil
		}
	}
	return nil, fmt.Errorf("cli queue: %s: %w", id, mailcluster.ErrQueueNotFound)
}

func (q *cliQueue) Retry(id string) error {
	if _, err := q.Message(id); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.retried = append(q.retried, id)
	return nil
}

func (q *cliQueue) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, m := range q.msgs {
		if m.ID == id {
			q.msgs = slices.Delete(q.msgs, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("cli queue: %s: %w", id, mailcluster.ErrQueueNotFound)
}

func (q *cliQueue) Stats() (map[string]mailcluster.QueueStats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]mailcluster.QueueStats{}
	for _, m := range q.msgs {
		st := out[m.Node]
		st.Messages++
		st.Recipient += len(m.Recipients)
		if st.Oldest.IsZero() || m.Created.Before(st.Oldest) {
			st.Oldest = m.Created
		}
		out[m.Node] = st
	}
	return out, nil
}

func (q *cliQueue) ids() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, m := range q.msgs {
		out = append(out, m.ID)
	}
	return out
}

// secondaryRole is a node that is not the primary.
type secondaryRole struct{}

func (secondaryRole) Role() mailcluster.Role { return mailcluster.RoleSecondary }
func (secondaryRole) Primary() (mailcluster.PrimaryRef, bool) {
	return mailcluster.PrimaryRef{Name: "node1", APIURL: cliPrimary}, true
}

// mustServeQueue serves the REST API of a bootstrapped standalone primary
// with queue q, and of a secondary over the same state; it returns both
// URLs.
func mustServeQueue(t *testing.T, q *cliQueue) (primary, secondary string) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	store, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	svc := service.New(store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "node1", APIURL: cliPrimary}}, log,
		service.Options{BcryptCost: bcrypt.MinCost, NodeName: "node1", Queue: q})
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: cliAdmin, AdminPassword: cliPassword, DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	sec := service.New(store, secondaryRole{}, log, service.Options{BcryptCost: bcrypt.MinCost, NodeName: "node2",
		Mode: mailcluster.ModeCluster, Queue: q})
	p := httptest.NewServer(api.NewServer(svc, api.Config{}))
	t.Cleanup(p.Close)
	s := httptest.NewServer(api.NewServer(sec, api.Config{}))
	t.Cleanup(s.Close)
	return p.URL, s.URL
}

// runCLI runs the command line and returns its exit status and output.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestQueueCommand(t *testing.T) {
	t.Setenv("MAILCLUSTER_ADMIN_PASSWORD", cliPassword)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	q := &cliQueue{msgs: []mailcluster.QueuedMessage{
		{ID: queueA, Node: "node1", From: "", Size: 1234, Created: t0, NextAttempt: t0.Add(time.Hour), Attempts: 3,
			Subject: "Delivery\r\nStatus", Recipients: []mailcluster.QueuedRecipient{
				{Address: "bob@remote.test", State: mailcluster.RcptPending, Attempts: 3, Reply: "451 4.7.1 later\r\n", Host: "mx.remote.test"},
				{Address: "carol@remote.test", State: mailcluster.RcptDelivered, Attempts: 1}}},
		{ID: queueB, Node: "node2", From: "alice@example.com", Size: 99, Created: t0.Add(time.Minute), NextAttempt: t0.Add(2 * time.Hour),
			Recipients: []mailcluster.QueuedRecipient{{Address: "dave@remote.test", State: mailcluster.RcptPending}}},
	}}
	primary, secondary := mustServeQueue(t, q)

	t.Run("List", func(t *testing.T) {
		code, out, errOut := runCLI("queue", "list", "--url", primary)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
			!strings.Contains(lines[1], queueA) || !strings.Contains(lines[1], "<>") || !strings.Contains(lines[1], " 1/2 ") ||
			!strings.Contains(lines[1], "2030-01-02T04:04:05Z") || !strings.Contains(lines[2], "alice@example.com") {
			t.Errorf("output:\n%s", out)
		}
		code, out, _ = runCLI("queue", "list", "--url", secondary, "--limit", "1")
		if code != 0 || !strings.Contains(out, queueA) || strings.Contains(out, queueB) || !strings.Contains(out, "next page: --cursor "+queueA) {
			t.Errorf("page 1 from the secondary (exit %d):\n%s", code, out)
		}
		code, out, _ = runCLI("queue", "list", "--url", primary, "--node", "node2")
		if code != 0 || strings.Contains(out, queueA) || !strings.Contains(out, queueB) || strings.Contains(out, "next page") {
			t.Errorf("node2's queue (exit %d):\n%s", code, out)
		}
	})
	t.Run("Show", func(t *testing.T) {
		code, out, errOut := runCLI("queue", "show", queueA, "--url", secondary)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"id:           " + queueA, "from:         <>", "subject:      Delivery Status\n",
			"attempts:     3", "bob@remote.test", "mx.remote.test", "451 4.7.1 later", "carol@remote.test", "delivered"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		code, _, errOut = runCLI("queue", "show", "00000000000000ff-ffffffffffff", "--url", primary)
		if code != 1 || !strings.Contains(errOut, "404") {
			t.Errorf("absent id: exit %d, %s", code, errOut)
		}
	})
	t.Run("Stats", func(t *testing.T) {
		code, out, _ := runCLI("queue", "stats", "--url", primary)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], "node1 ") || !strings.Contains(lines[1], "2030-01-02T03:04:05Z") ||
			!strings.HasPrefix(lines[2], "node2 ") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("Hostile", func(t *testing.T) {
		for _, id := range []string{"../x", "%2e%2e", strings.Repeat("a", 300)} {
			for _, op := range []string{"show", "retry", "delete"} {
				code, _, errOut := runCLI("queue", op, id, "--url", primary)
				if code != 1 || !strings.Contains(errOut, "400") {
					t.Errorf("%s %q: exit %d, %s", op, id, code, errOut)
				}
			}
		}
		if got := q.ids(); len(got) != 2 || len(q.retried) != 0 {
			t.Errorf("queue %v, retried %v", got, q.retried)
		}
	})
	t.Run("SecondaryRefuses", func(t *testing.T) {
		for _, op := range []string{"retry", "delete"} {
			code, _, errOut := runCLI("queue", op, queueA, "--url", secondary)
			if code != 1 || !strings.Contains(errOut, "403") || !strings.Contains(errOut, cliPrimary) {
				t.Errorf("%s on the secondary: exit %d, %s", op, code, errOut)
			}
		}
		if got := q.ids(); len(got) != 2 || len(q.retried) != 0 {
			t.Errorf("queue %v, retried %v", got, q.retried)
		}
	})
	t.Run("RetryDelete", func(t *testing.T) {
		code, out, errOut := runCLI("queue", "retry", queueB, "--url", primary)
		if code != 0 || out != queueB+": retry asked\n" || !slices.Equal(q.retried, []string{queueB}) {
			t.Errorf("retry: exit %d, %q %s, retried %v", code, out, errOut, q.retried)
		}
		code, out, _ = runCLI("queue", "delete", queueA, "--url", primary)
		if code != 0 || out != queueA+": deleted\n" || !slices.Equal(q.ids(), []string{queueB}) {
			t.Errorf("delete: exit %d, %q, queue %v", code, out, q.ids())
		}
	})
}

func TestQueueCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		name, password string
		args           []string
		want           string
	}{
		{"NoSubcommand", "pw-123456", []string{"queue"}, "give a subcommand"},
		{"ShowNoID", "pw-123456", []string{"queue", "show"}, "one message id"},
		{"RetryTwoIDs", "pw-123456", []string{"queue", "retry", queueA, queueB}, "one message id"},
		{"DeleteEmptyID", "pw-123456", []string{"queue", "delete", ""}, "one message id"},
		{"LimitZero", "pw-123456", []string{"queue", "list", "--limit", "0"}, "--limit"},
		{"LimitLarge", "pw-123456", []string{"queue", "list", "--limit", "1001"}, "--limit"},
		{"NoPassword", "", []string{"queue", "stats"}, "MAILCLUSTER_ADMIN_PASSWORD"},
		{"BadURL", "pw-123456", []string{"queue", "stats", "--url", "127.0.0.1:8080"}, "--url"},
		{"StatsArgs", "pw-123456", []string{"queue", "stats", "x"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MAILCLUSTER_ADMIN_PASSWORD", tc.password)
			code, _, errOut := runCLI(tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
		})
	}
}
