package service_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/mailqueue"
	"mailcluster/service"
)

func TestQueueOperations(t *testing.T) {
	spool := mailqueue.Spool{Dir: t.TempDir()}
	if err := spool.Init("n1"); err != nil {
		t.Fatal(err)
	}
	q := &mailqueue.Queue{Spool: spool, Node: "n1"}
	id, err := q.Enqueue("a@example.com", []string{"x@far.test"}, nil, strings.NewReader("Subject: s\r\n\r\nx\r\n"), 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := MustOpenService(t, nil, func(o *service.Options) { o.Queue = q })
	ctx := service.SystemContext(context.Background(), "test")
	dctx := service.NewContextWithCaller(ctx, &mailcluster.Account{Domain: "example.com", Mailbox: "dadmin", AdminRights: mailcluster.AdminDomain})

	msgs, next, err := svc.QueuedMessages(ctx, "", 10, "")
	if err != nil || len(msgs) != 1 || msgs[0].ID != id || next != "" || msgs[0].Subject != "s" {
		t.Fatalf("QueuedMessages: %+v %q %v", msgs, next, err)
	}
	// Only global administrators: queued mail is every domain's.
	_, _, err = svc.QueuedMessages(dctx, "", 10, "")
	wantCode(t, err, mailcluster.EFORBIDDEN)
	wantCode(t, svc.DeleteQueuedMessage(dctx, id), mailcluster.EFORBIDDEN)
	// Bad input is refused before any file is named.
	for _, bad := range []string{"", "..", "../n1", strings.Repeat("a", 29), strings.ToUpper(id)} {
		wantCode(t, svc.RetryQueuedMessage(ctx, bad), mailcluster.EINVALID)
		_, err := svc.QueuedMessage(ctx, bad)
		wantCode(t, err, mailcluster.EINVALID)
	}
	for _, node := range []string{"..", ".", "a/b", "-x"} {
		_, _, err := svc.QueuedMessages(ctx, node, 10, "")
		wantCode(t, err, mailcluster.EINVALID)
	}
	for _, limit := range []int{0, 1001} {
		_, _, err := svc.QueuedMessages(ctx, "", limit, "")
		wantCode(t, err, mailcluster.EINVALID)
	}
	if _, _, err := svc.QueuedMessages(ctx, "", 1000, ""); err != nil {
		t.Fatalf("limit 1000: %v", err)
	}
	_, err = svc.QueuedMessage(ctx, "18ed74049ef8c108-6c818265acba")
	wantCode(t, err, mailcluster.ENOTFOUND)
	if st, err := svc.QueueStats(ctx); err != nil || st["n1"].Messages != 1 || st["n1"].Recipient != 1 {
		t.Fatalf("QueueStats: %+v %v", st, err)
	}
	if err := svc.RetryQueuedMessage(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteQueuedMessage(ctx, id); err != nil {
		t.Fatal(err)
	}
	wantCode(t, svc.DeleteQueuedMessage(ctx, id), mailcluster.ENOTFOUND)
	if ids, _ := spool.IDs("n1"); len(ids) != 0 {
		t.Fatalf("still queued: %v", ids)
	}
	// A service without a queue says so.
	bare, _ := MustOpenService(t, nil)
	_, _, err = bare.QueuedMessages(ctx, "", 10, "")
	wantCode(t, err, mailcluster.EUNAVAILABLE)
}
