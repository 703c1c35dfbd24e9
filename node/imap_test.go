package node_test

import (
	"crypto/tls"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster/node"
)

// TestIMAP starts a standalone node with both IMAP listeners: a client of
// each logs in with the node's certificate, and a session idling in INBOX
// sees a message delivered by the node's SMTP listener.
func TestIMAP(t *testing.T) {
	n, pool := startMailNode(t, func(c *node.Config) { c.IMAPAddr, c.IMAPSAddr = "127.0.0.1:0", "127.0.0.1:0" })
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
