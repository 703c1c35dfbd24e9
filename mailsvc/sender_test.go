package mailsvc_test

import (
	"context"
	"testing"

	"mailcluster/service"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailcluster"
)

// submitAs opens a submission session authenticated as address.
func submitAs(t *testing.T, e *env, address, password string) *smtp.Client {
	t.Helper()
	c := dialTLS(t, e.submission)
	if err := c.Auth(sasl.NewPlainClient("", address, password)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSubmissionSender checks that an authenticated user submits mail only
// with its own address, or one its account's SendAs allows, as the
// envelope sender and in the From and Sender fields.
func TestSubmissionSender(t *testing.T) {
	e := MustOpenEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	denied := smtp.EnhancedCode{5, 7, 1}
	body := func(header string) string { return header + "To: bob@example.com\r\nSubject: s\r\n\r\nHi.\r\n" }
	// sent submits one message from alice's session to bob and reports
	// whether bob got it.
	sent := func(t *testing.T, c *smtp.Client, from, header string) (bool, error) {
		t.Helper()
		before := len(messages(t, e, "bob@example.com"))
		err := send(c, from, []string{"bob@example.com"}, body(header))
		if err != nil {
			_ = c.Reset()
		}
		return len(messages(t, e, "bob@example.com")) == before+1, err
	}
	wantSent := func(t *testing.T, c *smtp.Client, from, header string) {
		t.Helper()
		if ok, err := sent(t, c, from, header); err != nil || !ok {
			t.Fatalf("MAIL FROM:<%s> with %q: delivered %v, %v", from, header, ok, err)
		}
	}
	wantRefused := func(t *testing.T, c *smtp.Client, from, header string, code int) {
		t.Helper()
		ok, err := sent(t, c, from, header)
		wantReply(t, err, code, denied)
		if ok {
			t.Fatalf("MAIL FROM:<%s> with %q was delivered", from, header)
		}
	}

	t.Run("OK", func(t *testing.T) {
		c := submitAs(t, e, "alice@example.com", "alice-pass-1")
		wantSent(t, c, "alice@example.com", "From: Alice <alice@example.com>\r\n")
		wantSent(t, c, "ALICE@Example.COM", "From: alice@EXAMPLE.com\r\nSender: Alice@example.com\r\n")
		wantSent(t, c, "alice@example.com", "") // no From: nobody is named
	})
	t.Run("ErrOtherEnvelopeSender", func(t *testing.T) {
		c := submitAs(t, e, "alice@example.com", "alice-pass-1")
		wantReply(t, c.Mail("bob@example.com", nil), 553, denied)
		wantReply(t, c.Mail("alice@other.test", nil), 553, denied)
		wantReply(t, c.Mail("", nil), 553, denied) // the null sender
		// The session goes on with an allowed sender.
		wantSent(t, c, "alice@example.com", "From: alice@example.com\r\n")
	})
	t.Run("ErrForgedHeader", func(t *testing.T) {
		c := submitAs(t, e, "alice@example.com", "alice-pass-1")
		for _, h := range []string{
			"From: Bob <bob@example.com>\r\n",
			"From: \"alice@example.com\" <bob@example.com>\r\n",
			"From: alice@example.com, bob@example.com\r\n",
			"From: alice@example.com\r\nFrom: bob@example.com\r\n",
			"From: alice@example.com\r\nSender: bob@example.com\r\n",
			"From: not an address\r\n",
			"From: undisclosed:;\r\n",
			"Subject: x\r\nbroken header line\r\n",
		} {
			wantRefused(t, c, "alice@example.com", h, 550)
		}
	})
	t.Run("SendAs", func(t *testing.T) {
		// Changed while the session is open: the next MAIL sees it.
		c := submitAs(t, e, "alice@example.com", "alice-pass-1")
		wantReply(t, c.Mail("info@example.com", nil), 553, denied)
		sendAs := []string{"Info@Example.com", "@other.test"}
		if _, err := e.svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{SendAs: &sendAs}); err != nil {
			t.Fatal(err)
		}
		wantSent(t, c, "info@example.com", "From: Info <info@example.com>\r\n")
		wantSent(t, c, "anyone@OTHER.test", "From: alice@example.com\r\nSender: x@other.test\r\n")
		wantRefused(t, c, "bob@example.com", "From: info@example.com\r\n", 553)
		wantRefused(t, c, "alice@example.com", "From: bob@example.com\r\n", 550)
		wantRefused(t, c, "x@sub.other.test", "From: alice@example.com\r\n", 553)
		// And taken back.
		none := []string{}
		if _, err := e.svc.UpdateAccount(ctx, "example.com", "alice", mailcluster.AccountUpdate{SendAs: &none}); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, c, "info@example.com", "From: info@example.com\r\n", 553)
	})
	t.Run("InboundUnchanged", func(t *testing.T) {
		// Port 25 takes any sender for local delivery.
		c := dial(t, e.inbound)
		wantSent(t, c, "bob@example.com", "From: bob@example.com\r\n")
		wantSent(t, c, "", "From: someone@remote.test\r\n")
	})
}
