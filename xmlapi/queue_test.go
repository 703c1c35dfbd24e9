package xmlapi_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/internal/queuetest"
	"mailcluster/service"
	"mailcluster/xmlapi"
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
	return func(o *service.Options) { o.Queue = q }
}

// queueIDs returns the ids of the <Message> elements of r's <Queue>.
func queueIDs(t *testing.T, r *Response) []string {
	t.Helper()
	q := r.Result().SelectElement("Queue")
	if q == nil {
		t.Fatalf("no Queue:\n%s", r.Body)
	}
	var out []string
	for _, m := range q.SelectElements("Message") {
		out = append(out, m.SelectAttrValue("id", ""))
	}
	if n := q.SelectAttrValue("count", ""); n != fmt.Sprint(len(out)) {
		t.Errorf("count %s for %d messages", n, len(out))
	}
	return out
}

func idParam(id string) string { return "<ID>" + id + "</ID>" }

func TestQueue(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2, queueID3)
	e := MustOpenEnv(t, WithQueue(q))

	t.Run("GetQueueList", func(t *testing.T) {
		r := e.Call(t, "GetQueueList", "").MustOK(t)
		if got := queueIDs(t, r); !slices.Equal(got, []string{queueID1, queueID2, queueID3}) {
			t.Fatalf("ids %v", got)
		}
		if next := r.Result().SelectElement("Queue").SelectAttrValue("next", "x"); next != "" {
			t.Errorf("next %q", next)
		}
		r = e.Call(t, "GetQueueList", "<Node>node2</Node>").MustOK(t)
		if got := queueIDs(t, r); !slices.Equal(got, []string{queueID2, queueID3}) {
			t.Errorf("node2's queue %v", got)
		}
	})
	t.Run("Paged", func(t *testing.T) {
		var got []string
		cursor := ""
		for range 5 {
			r := e.Call(t, "GetQueueList", "<Limit>2</Limit><Cursor>"+cursor+"</Cursor>").MustOK(t)
			page := queueIDs(t, r)
			if len(page) > 2 {
				t.Fatalf("page of %d", len(page))
			}
			got = append(got, page...)
			if cursor = r.Result().SelectElement("Queue").SelectAttrValue("next", ""); cursor == "" {
				break
			}
		}
		if !slices.Equal(got, []string{queueID1, queueID2, queueID3}) {
			t.Errorf("pages gave %v", got)
		}
	})
	t.Run("GetQueueMessage", func(t *testing.T) {
		r := e.Call(t, "GetQueueMessage", idParam(queueID2)).MustOK(t)
		m := r.Result().SelectElement("Message")
		if m == nil {
			t.Fatalf("no Message:\n%s", r.Body)
		}
		rcpts := m.SelectElements("Recipient")
		if m.SelectAttrValue("id", "") != queueID2 || m.SelectAttrValue("node", "") != "node2" ||
			m.SelectAttrValue("from", "") != "alice@example.com" || m.SelectAttrValue("size", "") != "200" ||
			m.SelectAttrValue("attempts", "") != "1" || m.SelectAttrValue("created", "") != "2030-01-02T03:05:05Z" ||
			m.SelectAttrValue("delayWarned", "") != "No" || r.Text("Message/Subject") != "subject "+queueID2 || len(rcpts) != 2 ||
			rcpts[0].SelectAttrValue("state", "") != "pending" || rcpts[0].SelectElement("Reply") != nil ||
			rcpts[1].SelectAttrValue("host", "") != "mx.remote.test" || rcpts[1].SelectElement("Reply").Text() != "250 2.0.0 ok" {
			t.Errorf("answer:\n%s", r.Body)
		}
		e.Call(t, "GetQueueMessage", idParam(queueIDAbsent)).MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "GetQueueMessage", "").MustStatus(t, xmlapi.StatusMissingParameter)
	})
	t.Run("GetQueueStats", func(t *testing.T) {
		r := e.Call(t, "GetQueueStats", "").MustOK(t)
		nodes := r.Result().FindElements("QueueStats/Node")
		if len(nodes) != 2 || nodes[0].SelectAttrValue("name", "") != "node1" || nodes[1].SelectAttrValue("name", "") != "node2" ||
			nodes[1].SelectAttrValue("messages", "") != "2" || nodes[1].SelectAttrValue("deferred", "") != "2" ||
			nodes[1].SelectAttrValue("recipients", "") != "4" || nodes[1].SelectAttrValue("oldest", "") != "2030-01-02T03:05:05Z" {
			t.Errorf("answer:\n%s", r.Body)
		}
	})
	t.Run("RetryQueueMessage", func(t *testing.T) {
		e.Call(t, "RetryQueueMessage", idParam(queueID3)).MustOK(t)
		e.Call(t, "RetryQueueMessage", idParam(queueIDAbsent)).MustStatus(t, xmlapi.StatusNotFound)
		if retried, _ := q.Calls(); !slices.Equal(retried, []string{queueID3}) {
			t.Errorf("retried %v", retried)
		}
	})
	t.Run("DeleteQueueMessage", func(t *testing.T) {
		e.Call(t, "DeleteQueueMessage", idParam(queueID1)).MustOK(t)
		e.Call(t, "GetQueueMessage", idParam(queueID1)).MustStatus(t, xmlapi.StatusNotFound)
		e.Call(t, "DeleteQueueMessage", idParam(queueID1)).MustStatus(t, xmlapi.StatusNotFound)
		if _, deleted := q.Calls(); !slices.Equal(deleted, []string{queueID1}) {
			t.Errorf("deleted %v", deleted)
		}
	})
}

// TestQueueHostile: ids, cursors, node names and limits that are no such
// thing answer status 3 and leave the queue as it was.
func TestQueueHostile(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2)
	e := MustOpenEnv(t, WithQueue(q))
	long := strings.Repeat("0", 300)
	for _, id := range []string{"../x", "%2e%2e", "..", long, strings.ToUpper(queueID1), queueID1 + "0", queueID1 + "/",
		"/etc/passwd", queueID1 + "\u00a0x"} {
		for _, op := range []string{"GetQueueMessage", "RetryQueueMessage", "DeleteQueueMessage"} {
			t.Run(op+" "+id, func(t *testing.T) {
				e.Call(t, op, idParam(id)).MustStatus(t, xmlapi.StatusInvalidParameter)
			})
		}
	}
	for _, params := range []string{"<Cursor>../x</Cursor>", "<Cursor>" + long + "</Cursor>", "<Node>../x</Node>",
		"<Node>" + long + "</Node>", "<Limit>0</Limit>", "<Limit>1001</Limit>", "<Limit>x</Limit>"} {
		t.Run("GetQueueList "+params, func(t *testing.T) {
			e.Call(t, "GetQueueList", params).MustStatus(t, xmlapi.StatusInvalidParameter)
		})
	}
	retried, deleted := q.Calls()
	if len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
	if got := queueIDs(t, e.Call(t, "GetQueueList", "").MustOK(t)); !slices.Equal(got, []string{queueID1, queueID2}) {
		t.Errorf("queue now %v", got)
	}
}

// TestQueueForbidden: a domain administrator gets status 9 from every
// queue operation, and changes nothing.
func TestQueueForbidden(t *testing.T) {
	q := newFakeQueue(queueID1)
	e := MustOpenEnv(t, WithQueue(q))
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "dadmin",
		Password: authzPassword("dadmin@example.com"), AdminRights: mailcluster.AdminDomain})
	for _, c := range []struct{ op, params string }{
		{"GetQueueList", ""}, {"GetQueueStats", ""}, {"GetQueueMessage", idParam(queueID1)},
		{"RetryQueueMessage", idParam(queueID1)}, {"DeleteQueueMessage", idParam(queueID1)},
	} {
		t.Run(c.op, func(t *testing.T) {
			r := e.as(t, "dadmin@example.com", c.op, c.params)
			r.MustStatus(t, xmlapi.StatusForbidden)
			if strings.Contains(r.Body, "alice@example.com") {
				t.Errorf("the refusal shows the queue:\n%s", r.Body)
			}
		})
	}
	if retried, deleted := q.Calls(); len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
}

// TestQueueSecondary: a secondary answers the reads with the cluster's
// queue and refuses retry and delete with status 6 naming the primary.
func TestQueueSecondary(t *testing.T) {
	q := newFakeQueue(queueID1, queueID2)
	e := MustOpenEnv(t, WithQueue(q))
	svc := service.New(e.Store, fakeLeadership{role: mailcluster.RoleSecondary,
		primary: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}, ok: true}, e.Log,
		service.Options{NodeName: "node2", Mode: mailcluster.ModeCluster, Queue: q})
	_, url := e.Serve(t, svc)
	if got := queueIDs(t, CallAt(t, url, "GetQueueList", "").MustOK(t)); !slices.Equal(got, []string{queueID1, queueID2}) {
		t.Errorf("the secondary lists %v", got)
	}
	CallAt(t, url, "GetQueueMessage", idParam(queueID2)).MustOK(t)
	CallAt(t, url, "GetQueueStats", "").MustOK(t)
	for _, op := range []string{"RetryQueueMessage", "DeleteQueueMessage"} {
		msg := CallAt(t, url, op, idParam(queueID1)).MustStatus(t, xmlapi.StatusReadOnly)
		if !strings.Contains(msg, primaryURL) {
			t.Errorf("%s: message %q does not name the primary", op, msg)
		}
	}
	if retried, deleted := q.Calls(); len(retried) != 0 || len(deleted) != 0 {
		t.Errorf("retried %v, deleted %v", retried, deleted)
	}
}

// TestQueueNone: a node without a queue answers status 7.
func TestQueueNone(t *testing.T) {
	e := MustOpenEnv(t)
	e.Call(t, "GetQueueList", "").MustStatus(t, xmlapi.StatusUnavailable)
	e.Call(t, "GetQueueStats", "").MustStatus(t, xmlapi.StatusUnavailable)
}
