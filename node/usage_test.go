package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/node"
	"mailcluster/service"
)

// TestStandaloneUsageAcrossRestart delivers from 8 SMTP clients at once
// into one mailbox of a standalone node (its own primary): every accepted
// message is counted once in the published usage, and a restart over the
// same data (the outbox sends again what it had not removed yet) neither
// loses nor repeats a count.
func TestStandaloneUsageAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() *node.Node {
		n := node.New(&node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
			AdminPassword: "admin-pass-1", SMTPAddr: "127.0.0.1:0", SMTPHostname: "mx.test"}, slog.New(slog.DiscardHandler), nil)
		if err := n.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := n.Service.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Service.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	const clients, each = 8, 5
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := deliver(n.SMTPAddr, fmt.Sprintf("message %d of client %d", i, c)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	usage := func(n *node.Node) mailcluster.Usage {
		l, err := n.Service.Local(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l.Usage("example.com", "alice")
	}
	waitUsage := func(n *node.Node, want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for usage(n).Messages != want {
			if time.Now().After(deadline) {
				t.Fatalf("published usage %+v, want %d messages", usage(n), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUsage(n, clients*each)
	bytes := usage(n).Bytes
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = start()
	defer n.Close()
	// One more delivery after the restart: once it is counted, the outbox
	// has sent everything it had, again or not.
	if err := deliver(n.SMTPAddr, "after the restart"); err != nil {
		t.Fatal(err)
	}
	waitUsage(n, clients*each+1)
	time.Sleep(100 * time.Millisecond)
	if u := usage(n); u.Messages != clients*each+1 || u.Bytes <= bytes {
		t.Fatalf("usage after the restart = %+v, want %d messages and more than %d bytes", u, clients*each+1, bytes)
	}
}

// deliver sends one message to alice@example.com over plain SMTP.
func deliver(addr, subject string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("bob@sender.test"); err != nil {
		return err
	}
	if err := c.Rcpt("alice@example.com"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "From: bob@sender.test\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nHello.\r\n", subject); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
