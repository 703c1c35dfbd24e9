package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"mailcluster"
	"mailcluster/client"
)

const queueID = "0000000000000001-aaaaaaaaaaaa"

func TestQueue(t *testing.T) {
	msg := `{"id":"` + queueID + `","node":"n2","from":"a@ex.com","recipients":[{"address":"b@remote.test","state":"pending","attempts":2,` +
		`"reply":"451 try later","host":"mx.remote.test","updated":"2030-01-02T03:04:05Z"}],"size":10,"created":"2030-01-02T03:00:00Z",` +
		`"nextAttempt":"2030-01-02T04:00:00Z","attempts":2,"delayWarned":true,"subject":"hi"}`
	c, f := mustOpen(t, map[string]answer{
		"GET /api/v1/queue?cursor=&limit=2&node=n2": {body: `{"messages":[` + msg + `],"nextCursor":"` + queueID + `"}`},
		"GET /api/v1/queue?cursor=" + queueID:       {body: `{"messages":[],"nextCursor":""}`},
		"GET /api/v1/queue/" + queueID:              {body: msg},
		"GET /api/v1/queue/stats":                   {body: `{"nodes":{"n2":{"messages":1,"deferred":1,"recipients":1,"oldest":"2030-01-02T03:00:00Z"}}}`},
		"POST /api/v1/queue/" + queueID + "/retry":  {status: http.StatusAccepted},
		"DELETE /api/v1/queue/" + queueID:           {status: http.StatusNoContent},
		"DELETE /api/v1/queue/0000000000000002-bbbbbbbbbbbb": {status: http.StatusForbidden, contentType: "application/problem+json",
			body: `{"type":"urn:mailcluster:problem:read-only","title":"Read-only node","status":403,"detail":"not the primary","primary":"http://10.0.0.1:8080"}`},
	})
	ctx := context.Background()

	p, err := c.Queue(ctx, "n2", "", 2)
	if err != nil || len(p.Messages) != 1 || p.NextCursor != queueID {
		t.Fatalf("page %+v, %v", p, err)
	}
	m := p.Messages[0]
	if m.ID != queueID || m.Node != "n2" || !m.DelayWarned || len(m.Recipients) != 1 || m.Recipients[0].Reply != "451 try later" ||
		m.Recipients[0].Updated == nil || m.NextAttempt.Hour() != 4 {
		t.Errorf("message %+v", m)
	}
	if p, err := c.Queue(ctx, "", queueID, 0); err != nil || len(p.Messages) != 0 || p.NextCursor != "" {
		t.Errorf("last page %+v, %v", p, err)
	}
	if m, err := c.QueuedMessage(ctx, queueID); err != nil || m.Subject != "hi" {
		t.Errorf("message %+v, %v", m, err)
	}
	st, err := c.QueueStats(ctx)
	if err != nil || st.Nodes["n2"].Messages != 1 || st.Nodes["n2"].Oldest == nil {
		t.Errorf("stats %+v, %v", st, err)
	}
	if err := c.RetryQueuedMessage(ctx, queueID); err != nil {
		t.Error(err)
	}
	if err := c.DeleteQueuedMessage(ctx, queueID); err != nil {
		t.Error(err)
	}
	err = c.DeleteQueuedMessage(ctx, "0000000000000002-bbbbbbbbbbbb")
	if client.ErrorCode(err) != mailcluster.EREADONLY {
		t.Errorf("err %v, want read-only", err)
	}
	for _, r := range f.requests {
		if r.Method == http.MethodPost && (r.Path != "/api/v1/queue/"+queueID+"/retry" || r.Body != "") {
			t.Errorf("retry sent %+v", r)
		}
	}
}

// TestQueueIDEscaped: an id is sent as one escaped path segment, whatever
// it holds.
func TestQueueIDEscaped(t *testing.T) {
	uris := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uris <- r.RequestURI
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "admin@localhost", "pw", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteQueuedMessage(context.Background(), "../x?y"); err != nil {
		t.Fatal(err)
	}
	if got := <-uris; got != "/api/v1/queue/..%2Fx%3Fy" {
		t.Errorf("request URI %q", got)
	}
}
