package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/internal/queuetest"
	"mailcluster/service"
)

// Queue ids of the tests, and the queue in memory (internal/queuetest).
const (
	queueID1      = queuetest.ID1
	queueID2      = queuetest.ID2
	queueID3      = queuetest.ID3
	queueIDAbsent = queuetest.IDAbsent
)

type fakeQueue = queuetest.Fake

func newFakeQueue(ids ...string) *fakeQueue { return queuetest.New(ids...) }

// WithQueue gives the node's Service the outbound queue q.
func WithQueue(q mailcluster.OutboundQueue) EnvOption {
	return WithServiceOptions(func(o *service.Options) { o.Queue = q })
}

// queuePage is the JSON answer of GET /api/v1/queue.
type queuePage struct {
	Messages []struct {
		ID, Node, From, Subject string
		Size                    int64
		Attempts                int
		Created                 time.Time
		Recipients              []struct {
			Address, State, Reply, Host string
			Attempts                    int
			Updated                     *time.Time
		}
	}
	NextCursor string
}

func (p queuePage) ids() []string {
	var out []string
	for _, m := range p.Messages {
		out = append(out, m.ID)
	}
	return out
}

func TestQueue(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2, queueID3)
	e := MustOpenEnv(t, WithQueue(q))
	c := e.Admin

	t.Run("List", func(t *testing.T) {
		var p queuePage
		c.Get(t, "/api/v1/queue").Expect(t, http.StatusOK).JSON(t, &p)
		if got := p.ids(); !slices.Equal(got, []string{queueID1, queueID2, queueID3}) || p.NextCursor != "" {
			t.Fatalf("ids %v next %q", got, p.NextCursor)
		}
		m := p.Messages[1]
		if m.Node != "node2" || m.From != "alice@example.com" || m.Size != 200 || m.Attempts != 1 || m.Subject != "subject "+queueID2 ||
			len(m.Recipients) != 2 || m.Recipients[0].State != "pending" || m.Recipients[0].Updated != nil ||
			m.Recipients[1].Reply != "250 2.0.0 ok" || m.Recipients[1].Host != "mx.remote.test" || m.Recipients[1].Updated == nil {
			t.Errorf("message %+v", m)
		}
	})
	t.Run("Paged", func(t *testing.T) {
		var got []string
		cursor := ""
		for range 5 {
			var p queuePage
			c.Get(t, "/api/v1/queue?limit=2&cursor="+cursor).Expect(t, http.StatusOK).JSON(t, &p)
			if len(p.Messages) > 2 {
				t.Fatalf("page of %d", len(p.Messages))
			}
			got = append(got, p.ids()...)
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, []string{queueID1, queueID2, queueID3}) || cursor != "" {
			t.Errorf("pages gave %v, cursor %q", got, cursor)
		}
	})
	t.Run("Node", func(t *testing.T) {
		var p queuePage
		c.Get(t, "/api/v1/queue?node=node2").Expect(t, http.StatusOK).JSON(t, &p)
		if got := p.ids(); !slices.Equal(got, []string{queueID2, queueID3}) {
			t.Errorf("node2's queue %v", got)
		}
		c.Get(t, "/api/v1/queue?node=node9").Expect(t, http.StatusOK).JSON(t, &p)
		if len(p.Messages) != 0 {
			t.Errorf("node9's queue %v", p.ids())
		}
	})
	t.Run("Stats", func(t *testing.T) {
		var st struct {
			Nodes map[string]struct {
				Messages, Deferred, Recipients int
				Oldest                         time.Time
			}
		}
		c.Get(t, "/api/v1/queue/stats").Expect(t, http.StatusOK).JSON(t, &st)
		n1, n2 := st.Nodes["node1"], st.Nodes["node2"]
		if len(st.Nodes) != 2 || n1.Messages != 1 || n1.Deferred != 0 || n1.Recipients != 2 ||
			n2.Messages != 2 || n2.Deferred != 2 || n2.Recipients != 4 || !n2.Oldest.Equal(time.Date(2030, 1, 2, 3, 5, 5, 0, time.UTC)) {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("Get", func(t *testing.T) {
		var m struct{ ID, Node string }
		c.Get(t, "/api/v1/queue/"+queueID3).Expect(t, http.StatusOK).JSON(t, &m)
		if m.ID != queueID3 || m.Node != "node2" {
			t.Errorf("message %+v", m)
		}
		c.Get(t, "/api/v1/queue/"+queueIDAbsent).ExpectProblem(t, http.StatusNotFound, "not-found")
	})
	t.Run("Retry", func(t *testing.T) {
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/queue/" + queueID2 + "/retry"}).Expect(t, http.StatusAccepted)
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/queue/" + queueIDAbsent + "/retry"}).
			ExpectProblem(t, http.StatusNotFound, "not-found")
		if retried, _ := q.Calls(); !slices.Equal(retried, []string{queueID2}) {
			t.Errorf("retried %v", retried)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		c.Delete(t, "/api/v1/queue/"+queueID1).Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/queue/"+queueID1).ExpectProblem(t, http.StatusNotFound, "not-found")
		c.Delete(t, "/api/v1/queue/"+queueID1).ExpectProblem(t, http.StatusNotFound, "not-found")
		if _, deleted := q.Calls(); !slices.Equal(deleted, []string{queueID1}) {
			t.Errorf("deleted %v", deleted)
		}
	})
}

// TestQueueHostile sends ids, cursors, node names and limits that are no
// such thing: each is 400 and the queue is left as it was.
func TestQueueHostile(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2)
	e := MustOpenEnv(t, WithQueue(q))
	c := e.Admin
	long := strings.Repeat("0", 300)
	for _, id := range []string{"..%2Fx", "%2e%2e", "..", long, strings.ToUpper(queueID1), queueID1 + "0", queueID1 + "%00",
		"0000000000000001-aaaaaaaaaaa%2F", "%2Fetc%2Fpasswd"} {
		t.Run(id, func(t *testing.T) {
			for _, r := range []Request{
				{Method: http.MethodGet, Path: "/api/v1/queue/" + id},
				{Method: http.MethodPost, Path: "/api/v1/queue/" + id + "/retry"},
				{Method: http.MethodDelete, Path: "/api/v1/queue/" + id},
			} {
				r.Invalid = len(id) > 64
				c.Do(t, r).ExpectProblem(t, http.StatusBadRequest, "invalid")
			}
		})
	}
	for _, query := range []string{"cursor=..%2Fx", "cursor=" + long, "node=..%2Fx", "node=" + long, "node=a%2Fb",
		"limit=0", "limit=1001", "limit=x"} {
		t.Run(query, func(t *testing.T) {
			c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/queue?" + query, Invalid: strings.HasPrefix(query, "limit") ||
				strings.Contains(query, long)}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		})
	}
	retried, deleted := q.Calls()
	if len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
	var p queuePage
	c.Get(t, "/api/v1/queue").Expect(t, http.StatusOK).JSON(t, &p)
	if got := p.ids(); !slices.Equal(got, []string{queueID1, queueID2}) {
		t.Errorf("queue now %v", got)
	}
}

// TestQueueForbidden: a domain administrator (and a plain user) reach
// none of the queue's operations, and change nothing.
func TestQueueForbidden(t *testing.T) {
	q := newFakeQueue(queueID1)
	e := MustOpenEnv(t, WithQueue(q))
	e.Admin.MustCreateDomain(t, "example.com")
	e.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "dadmin", "password": "dadmin-pass-1", "adminRights": "domain"})
	e.Admin.MustCreateAccount(t, "example.com", map[string]any{"mailbox": "user", "password": "user-pass-12"})
	dadmin := e.Admin.As("dadmin@example.com", "dadmin-pass-1")
	user := e.Admin.As("user@example.com", "user-pass-12")
	reqs := []Request{
		{Method: http.MethodGet, Path: "/api/v1/queue"},
		{Method: http.MethodGet, Path: "/api/v1/queue/stats"},
		{Method: http.MethodGet, Path: "/api/v1/queue/" + queueID1},
		{Method: http.MethodPost, Path: "/api/v1/queue/" + queueID1 + "/retry"},
		{Method: http.MethodDelete, Path: "/api/v1/queue/" + queueID1},
	}
	for _, r := range reqs {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			res := dadmin.Do(t, r)
			res.ExpectProblem(t, http.StatusForbidden, "forbidden")
			if strings.Contains(string(res.Body), "alice@example.com") {
				t.Errorf("the refusal shows the queue: %s", res.Body)
			}
			user.Do(t, r).ExpectProblem(t, http.StatusUnauthorized, "unauthorized")
		})
	}
	if retried, deleted := q.Calls(); len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
}

// TestQueueSecondary: a secondary lists and shows the cluster's queue and
// refuses retry and delete with 403 read-only naming the primary; with no
// primary elected, 503.
func TestQueueSecondary(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2)
	primary := MustOpenEnv(t, WithQueue(q))
	secondary := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: "node1", APIURL: primaryURL}, known: true}, WithQueue(q))
	orphan := MustOpenPeer(t, primary, fakeLeadership{role: mailcluster.RoleSecondary}, WithQueue(q))
	c := secondary.Admin

	var p queuePage
	c.Get(t, "/api/v1/queue").Expect(t, http.StatusOK).JSON(t, &p)
	if got := p.ids(); !slices.Equal(got, []string{queueID1, queueID2}) {
		t.Errorf("the secondary lists %v", got)
	}
	c.Get(t, "/api/v1/queue/"+queueID1).Expect(t, http.StatusOK)
	c.Get(t, "/api/v1/queue/stats").Expect(t, http.StatusOK)
	for _, r := range []Request{
		{Method: http.MethodPost, Path: "/api/v1/queue/" + queueID1 + "/retry"},
		{Method: http.MethodDelete, Path: "/api/v1/queue/" + queueID1},
	} {
		pr := c.Do(t, r).ExpectProblem(t, http.StatusForbidden, "read-only")
		if pr.Primary != primaryURL {
			t.Errorf("%s: primary %q", r.Method, pr.Primary)
		}
		orphan.Admin.Do(t, r).ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
	}
	if retried, deleted := q.Calls(); len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
}

// TestQueueNone: a node built without a queue answers 503.
func TestQueueNone(t *testing.T) {
	e := MustOpenEnv(t)
	e.Admin.Get(t, "/api/v1/queue").ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
	e.Admin.Get(t, "/api/v1/queue/stats").ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
	e.Admin.Get(t, "/api/v1/queue/"+queueID1).ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
}
