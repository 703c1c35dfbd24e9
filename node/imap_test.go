package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/smtp"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster"
	"mailcluster/node"
	"mailcluster/service"
)

// TestIMAP starts a standalone node with both IMAP listeners: a client of
// each logs in with the node's certificate, and a session idling in INBOX
// sees a message delivered by the node's SMTP listener.
func TestIMAP(t *testing.T) {
	data := t.TempDir()
	n := node.New(&node.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", SMTPAddr: "127.0.0.1:0", SMTPHostname: "mx.test",
		IMAPAddr: "127.0.0.1:0", IMAPSAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler), nil)
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := n.Service.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Service.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(data, "tls", "selfsigned.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool}

	starttls, err := imapclient.DialStartTLS(n.IMAPAddr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer starttls.Close()
	if err := starttls.Login("alice@example.com", "alice-pass-1").Wait(); err != nil {
		t.Fatalf("login over STARTTLS: %v", err)
	}

	var mu sync.Mutex
	var exists uint32
	c, err := imapclient.DialTLS(n.IMAPSAddr, &imapclient.Options{TLSConfig: tc, UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = *d.NumMessages
				mu.Unlock()
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.com", "alice-pass-1").Wait(); err != nil {
		t.Fatalf("login over implicit TLS: %v", err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{}).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: x@remote.test\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
	if err := sendPlain(n.SMTPAddr, "x@remote.test", "alice@example.com", msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := exists
		mu.Unlock()
		if got == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle session saw no EXISTS after an SMTP delivery")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// sendPlain sends a message over SMTP without STARTTLS (smtp.SendMail
// would start TLS and not trust the node's self-signed certificate).
func sendPlain(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
