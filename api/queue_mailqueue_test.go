package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/mailqueue"
)

// TestQueueSpool runs the queue routes over the real queue on a spool
// directory holding messages of two nodes: the listing, stats, one
// message, retry (the owner's retry mark) and delete (the message's
// directory gone), and hostile ids that touch no file.
func TestQueueSpool(t *testing.T) {
	spool := mailqueue.Spool{Dir: t.TempDir()}
	q := &mailqueue.Queue{Spool: spool, Node: "n1"}
	var ids []string
	for i, m := range []struct{ node, to, subject string }{
		{"n1", "bob@remote.test", "first"}, {"n2", "carol@remote.test", "second"}, {"n1", "dave@remote.test", "third"},
	} {
		if err := spool.Init(m.node); err != nil {
			t.Fatal(err)
		}
		env := &mailqueue.Envelope{From: "alice@example.com",
			Rcpts: []mailcluster.QueuedRecipient{{Address: m.to, State: mailcluster.RcptPending}}}
		header := []byte("From: alice@example.com\r\nTo: " + m.to + "\r\nSubject: " + m.subject + "\r\n\r\n")
		if err := spool.Write(m.node, env, header, strings.NewReader("body "+m.subject+"\r\n"), 1<<20, nil); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		ids = append(ids, env.ID)
	}
	e := MustOpenEnv(t, WithQueue(q))
	c := e.Admin

	var p queuePage
	c.Get(t, "/api/v1/queue").Expect(t, http.StatusOK).JSON(t, &p)
	if got := p.ids(); !slices.Equal(got, ids) {
		t.Fatalf("queue %v, want %v", got, ids)
	}
	if m := p.Messages[1]; m.Node != "n2" || m.From != "alice@example.com" || m.Subject != "second" ||
		len(m.Recipients) != 1 || m.Recipients[0].Address != "carol@remote.test" || m.Recipients[0].State != "pending" || m.Size == 0 {
		t.Errorf("message %+v", m)
	}
	c.Get(t, "/api/v1/queue?node=n1&limit=1").Expect(t, http.StatusOK).JSON(t, &p)
	if got := p.ids(); !slices.Equal(got, ids[:1]) || p.NextCursor != ids[0] {
		t.Errorf("n1's first page %v next %q", got, p.NextCursor)
	}
	var st struct {
		Nodes map[string]struct{ Messages, Recipients int }
	}
	c.Get(t, "/api/v1/queue/stats").Expect(t, http.StatusOK).JSON(t, &st)
	if st.Nodes["n1"].Messages != 2 || st.Nodes["n2"].Messages != 1 || st.Nodes["n2"].Recipients != 1 {
		t.Errorf("stats %+v", st)
	}

	msgDir := func(node, id string) string { return filepath.Join(spool.Dir, "nodes", node, "msgs", id) }
	// Hostile ids and cursors answer 400 and touch nothing.
	for _, id := range []string{"..%2F..%2Fnodes", "%2e%2e", strings.Repeat("0", 200), strings.ToUpper(ids[0])} {
		long := len(id) > 64
		c.Do(t, Request{Method: http.MethodDelete, Path: "/api/v1/queue/" + id, Invalid: long}).ExpectProblem(t, http.StatusBadRequest, "invalid")
		c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/queue/" + id + "/retry", Invalid: long}).
			ExpectProblem(t, http.StatusBadRequest, "invalid")
	}
	c.Get(t, "/api/v1/queue?cursor=..%2Fx").ExpectProblem(t, http.StatusBadRequest, "invalid")
	for i, id := range ids {
		node := []string{"n1", "n2", "n1"}[i]
		if _, err := os.Stat(filepath.Join(msgDir(node, id), "message")); err != nil {
			t.Fatalf("after the hostile requests: %v", err)
		}
	}

	var m struct{ ID, Node, Subject string }
	c.Get(t, "/api/v1/queue/"+ids[1]).Expect(t, http.StatusOK).JSON(t, &m)
	if m.ID != ids[1] || m.Node != "n2" || m.Subject != "second" {
		t.Errorf("message %+v", m)
	}
	c.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/queue/" + ids[1] + "/retry"}).Expect(t, http.StatusAccepted)
	if _, err := os.Stat(filepath.Join(spool.Dir, "nodes", "n2", "retry", ids[1])); err != nil {
		t.Errorf("no retry mark for the owner n2: %v", err)
	}
	c.Delete(t, "/api/v1/queue/"+ids[2]).Expect(t, http.StatusNoContent)
	if _, err := os.Stat(msgDir("n1", ids[2])); !os.IsNotExist(err) {
		t.Errorf("the deleted message's directory: %v", err)
	}
	c.Get(t, "/api/v1/queue/"+ids[2]).ExpectProblem(t, http.StatusNotFound, "not-found")
	c.Delete(t, "/api/v1/queue/"+ids[2]).ExpectProblem(t, http.StatusNotFound, "not-found")
	c.Get(t, "/api/v1/queue").Expect(t, http.StatusOK).JSON(t, &p)
	if got := p.ids(); !slices.Equal(got, ids[:2]) {
		t.Errorf("queue after the delete %v", got)
	}
}
