package outbound_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/dnstest"
	"mailcluster/outbound"
)

func TestMXPreferenceAndFallback(t *testing.T) {
	dns := dnstest.Start(t)
	mx2 := startMX(t, "127.0.0.3", 0, nil, false)
	port := mx2.Port()
	mx3 := startMX(t, "127.0.0.4", port, nil, false)
	// mx1 (127.0.0.2) refuses connections on the port.
	dns.SetMX("dest.test", dnstest.MX{Host: "mx3.dest.test", Pref: 30},
		dnstest.MX{Host: "mx1.dest.test", Pref: 10}, dnstest.MX{Host: "mx2.dest.test", Pref: 20})
	dns.SetA("mx1.dest.test", "127.0.0.2")
	dns.SetA("mx2.dest.test", "127.0.0.3")
	dns.SetA("mx3.dest.test", "127.0.0.4")

	r := one(t, client(dns, port, nil).Deliver(context.Background(), "Dest.TEST", message("b@dest.test")))
	if !r.Delivered || r.Host != "mx2.dest.test" || r.Code != 250 || r.Rcpt != "b@dest.test" {
		t.Fatalf("result %+v", r)
	}
	got := mx2.Got()
	if len(got) != 1 || got[0].From != "a@sender.test" || strings.Join(got[0].Rcpts, ",") != "b@dest.test" ||
		got[0].Data != "X-Prefix: yes\r\n"+body {
		t.Fatalf("mx2 got %+v", got)
	}
	if n := len(mx3.Got()); n != 0 {
		t.Fatalf("mx3 (pref 30) got %d messages", n)
	}
	if dns.Queries() < 3 {
		t.Fatalf("the resolver was asked %d times", dns.Queries())
	}
}

func TestMail4xxNextHost(t *testing.T) {
	dns := dnstest.Start(t)
	mx1 := startMX(t, "127.0.0.2", 0, nil, false)
	mx1.MailReply = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	mx2 := startMX(t, "127.0.0.3", mx1.Port(), nil, false)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx1.dest.test", Pref: 10}, dnstest.MX{Host: "mx2.dest.test", Pref: 20})
	dns.SetA("mx1.dest.test", "127.0.0.2")
	dns.SetA("mx2.dest.test", "127.0.0.3")
	r := one(t, client(dns, mx1.Port(), nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if !r.Delivered || r.Host != "mx2.dest.test" || len(mx2.Got()) != 1 {
		t.Fatalf("result %+v, mx2 got %d", r, len(mx2.Got()))
	}
	// Both refuse MAIL with 4xx: temporary, with the last reply.
	mx2.MailReply = mx1.MailReply
	r = one(t, client(dns, mx1.Port(), nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || r.Code != 451 || r.Enhanced != "4.3.0" || !strings.Contains(r.Text, "try later") {
		t.Fatalf("both 4xx: %+v", r)
	}
}

func TestAllHostsDown(t *testing.T) {
	dns := dnstest.Start(t)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx1.dest.test", Pref: 10})
	dns.SetA("mx1.dest.test", "127.0.0.2")
	port := freePort(t)
	r := one(t, client(dns, port, nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || r.Code != 0 || !strings.Contains(r.Text, "connection refused") ||
		!strings.Contains(r.Text, "mx1.dest.test") {
		t.Fatalf("result %+v", r)
	}
}

func TestImplicitMX(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.5", 0, nil, false)
	dns.SetA("dest.test", "127.0.0.5") // no MX record
	// From a null sender (a DSN).
	m := message("b@dest.test")
	m.From = ""
	r := one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", m))
	if got := mx.Got(); !r.Delivered || r.Host != "dest.test" || len(got) != 1 || got[0].From != "" {
		t.Fatalf("result %+v, got %+v", r, got)
	}
}

func TestDNSFailures(t *testing.T) {
	dns := dnstest.Start(t)
	port := freePort(t)
	c := client(dns, port, nil)
	t.Run("NullMX", func(t *testing.T) {
		dns.SetMX("null.test", dnstest.MX{Host: ".", Pref: 0})
		r := one(t, c.Deliver(context.Background(), "null.test", message("b@null.test")))
		if r.Delivered || !r.Permanent || r.Enhanced != "5.1.10" || r.Code != 0 {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("NXDomain", func(t *testing.T) {
		dns.SetNXDomain("gone.test")
		r := one(t, c.Deliver(context.Background(), "gone.test", message("b@gone.test")))
		if r.Delivered || !r.Permanent || r.Enhanced != "5.1.2" || r.Code != 0 {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("ServFail", func(t *testing.T) {
		dns.SetServFail("broken.test")
		r := one(t, c.Deliver(context.Background(), "broken.test", message("b@broken.test")))
		if r.Delivered || r.Permanent || r.Code != 0 || !strings.HasPrefix(r.Enhanced, "4.") {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("NoAddress", func(t *testing.T) {
		dns.SetMX("empty.test") // the name exists, without MX or address
		r := one(t, c.Deliver(context.Background(), "empty.test", message("b@empty.test")))
		if r.Delivered || !r.Permanent || r.Enhanced != "5.1.2" {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("MXHostUnknown", func(t *testing.T) {
		dns.SetMX("lame.test", dnstest.MX{Host: "nowhere.lame.test", Pref: 10})
		r := one(t, c.Deliver(context.Background(), "lame.test", message("b@lame.test")))
		if r.Delivered || r.Permanent || !strings.Contains(r.Text, "nowhere.lame.test") {
			t.Fatalf("result %+v", r)
		}
	})
}

func TestRcptReplies(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	mx.RcptReply = func(to string) error {
		switch {
		case strings.HasPrefix(to, "busy@"):
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
		case strings.HasPrefix(to, "nouser@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	dns.SetA("dest.test", "127.0.0.2")
	rs := client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test",
		message("busy@dest.test", "ok@dest.test", "nouser@dest.test", "bad address@dest.test"))
	if len(rs) != 4 {
		t.Fatalf("results %+v", rs)
	}
	if r := rs[0]; r.Rcpt != "busy@dest.test" || r.Delivered || r.Permanent || r.Code != 450 || r.Enhanced != "4.2.1" ||
		!strings.Contains(r.Text, "mailbox busy") {
		t.Fatalf("busy: %+v", r)
	}
	if r := rs[1]; r.Rcpt != "ok@dest.test" || !r.Delivered {
		t.Fatalf("ok: %+v", r)
	}
	if r := rs[2]; r.Delivered || !r.Permanent || r.Code != 550 || r.Enhanced != "5.1.1" {
		t.Fatalf("nouser: %+v", r)
	}
	if r := rs[3]; r.Delivered || !r.Permanent || r.Enhanced != "5.1.3" {
		t.Fatalf("bad address: %+v", r)
	}
	got := mx.Got()
	if len(got) != 1 || strings.Join(got[0].Rcpts, ",") != "ok@dest.test" {
		t.Fatalf("server got %+v", got)
	}
}

func TestDataRejected(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	mx.DataReply = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}
	dns.SetA("dest.test", "127.0.0.2")
	rs := client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", message("x@dest.test", "y@dest.test"))
	for _, r := range rs {
		if r.Delivered || !r.Permanent || r.Code != 554 || r.Enhanced != "5.6.0" || r.Host != "dest.test" {
			t.Fatalf("result %+v", r)
		}
	}
	if len(rs) != 2 || rs[0].Rcpt != "x@dest.test" || rs[1].Rcpt != "y@dest.test" {
		t.Fatalf("results %+v", rs)
	}
}

func TestSTARTTLSOpportunistic(t *testing.T) {
	dns := dnstest.Start(t)
	srvTLS, _ := serverTLS(t, "mx.dest.test")
	mx := startMX(t, "127.0.0.2", 0, srvTLS, false)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	dns.SetA("mx.dest.test", "127.0.0.2")
	// The MX certificate is not trusted by the client: opportunistic TLS
	// does not verify it.
	r := one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	got := mx.Got()
	if !r.Delivered || len(got) != 1 || !got[0].TLS {
		t.Fatalf("result %+v, got %+v", r, got)
	}
	// Without STARTTLS on the server the message goes in clear.
	plain := startMX(t, "127.0.0.3", mx.Port(), nil, false)
	dns.SetA("mx.dest.test", "127.0.0.3")
	r = one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if got := plain.Got(); !r.Delivered || len(got) != 1 || got[0].TLS {
		t.Fatalf("plain: result %+v, got %+v", r, got)
	}
}

func TestTLSRequired(t *testing.T) {
	dns := dnstest.Start(t)
	plain := startMX(t, "127.0.0.2", 0, nil, false)
	dns.SetMX("dest.test", dnstest.MX{Host: "mx.dest.test", Pref: 10})
	dns.SetA("mx.dest.test", "127.0.0.2")
	required := func(cfg *outbound.Config) {
		cfg.RequireTLS = func(domain string) bool { return domain == "dest.test" }
	}
	r := one(t, client(dns, plain.Port(), required).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || !strings.Contains(r.Text, "TLS required but not offered by mx.dest.test") {
		t.Fatalf("result %+v", r)
	}
	if mails, _ := plain.Counts(); mails != 0 || len(plain.Got()) != 0 {
		t.Fatalf("the server saw %d MAIL commands", mails)
	}
	// With STARTTLS offered it goes through.
	srvTLS, _ := serverTLS(t, "mx.dest.test")
	secure := startMX(t, "127.0.0.3", plain.Port(), srvTLS, false)
	dns.SetA("mx.dest.test", "127.0.0.3")
	r = one(t, client(dns, plain.Port(), required).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if got := secure.Got(); !r.Delivered || len(got) != 1 || !got[0].TLS {
		t.Fatalf("secure: result %+v, got %+v", r, got)
	}
}

func TestSmarthostAuth(t *testing.T) {
	dns := dnstest.Start(t)
	srvTLS, cliTLS := serverTLS(t, "relay.test")
	sh := startMX(t, "127.0.0.6", 0, srvTLS, false)
	sh.User, sh.Pass = "relayuser", "s3cret-relay-pass"
	dns.SetA("relay.test", "127.0.0.6")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() {
		if logs.Len() == 0 {
			t.Error("nothing was logged")
		}
		if strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "wrong-pass") {
			t.Errorf("a password is in the log:\n%s", logs.String())
		}
	}()
	smarthost := func(user, pass string, mode outbound.TLSMode) func(*outbound.Config) {
		return func(cfg *outbound.Config) {
			cfg.Log = log
			cfg.TLSConfig = cliTLS
			cfg.Smarthost = &outbound.Smarthost{Host: "relay.test", Port: sh.Port(), Username: user, Password: pass, TLS: mode}
		}
	}
	// Any domain, no MX lookup: the smarthost takes it over STARTTLS
	// (certificate verified against relay.test) after AUTH PLAIN.
	c := client(dns, 1, smarthost("relayuser", "s3cret-relay-pass", outbound.TLSStartTLS))
	rs := c.Deliver(context.Background(), "far.example", message("b@far.example", "c@other.example"))
	got := sh.Got()
	if len(rs) != 2 || !rs[0].Delivered || !rs[1].Delivered || rs[0].Host != "relay.test" {
		t.Fatalf("results %+v", rs)
	}
	if len(got) != 1 || !got[0].TLS || got[0].User != "relayuser" || len(got[0].Rcpts) != 2 {
		t.Fatalf("smarthost got %+v", got)
	}

	t.Run("WrongPassword", func(t *testing.T) {
		c := client(dns, 1, smarthost("relayuser", "wrong-pass", outbound.TLSStartTLS))
		r := one(t, c.Deliver(context.Background(), "far.example", message("b@far.example")))
		if r.Delivered || r.Permanent || !strings.Contains(r.Text, "authentication") || strings.Contains(r.Text, "wrong-pass") {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("UntrustedCertificate", func(t *testing.T) {
		// The certificate is for relay.test, not for the name configured.
		dns.SetA("other-name.test", "127.0.0.6")
		c := client(dns, 1, func(cfg *outbound.Config) {
			cfg.TLSConfig = cliTLS
			cfg.Smarthost = &outbound.Smarthost{Host: "other-name.test", Port: sh.Port(), Username: "relayuser", Password: "s3cret-relay-pass", TLS: outbound.TLSStartTLS}
		})
		before, _ := sh.Counts()
		r := one(t, c.Deliver(context.Background(), "far.example", message("b@far.example")))
		after, _ := sh.Counts()
		if r.Delivered || r.Permanent || !strings.Contains(r.Text, "TLS") || after != before {
			t.Fatalf("result %+v, MAIL commands %d -> %d", r, before, after)
		}
	})
}

func TestSmarthostRefusesAuthInClear(t *testing.T) {
	dns := dnstest.Start(t)
	sh := startMX(t, "127.0.0.6", 0, nil, true) // offers AUTH without TLS
	sh.User, sh.Pass = "relayuser", "s3cret-relay-pass"
	for _, mode := range []outbound.TLSMode{outbound.TLSNone, outbound.TLSOpportunistic} {
		c := client(dns, 1, func(cfg *outbound.Config) {
			cfg.Smarthost = &outbound.Smarthost{Host: "127.0.0.6", Port: sh.Port(), Username: "relayuser", Password: "s3cret-relay-pass", TLS: mode}
		})
		r := one(t, c.Deliver(context.Background(), "far.example", message("b@far.example")))
		if r.Delivered || r.Permanent || !strings.Contains(r.Text, "in clear") || strings.Contains(r.Text, "s3cret") {
			t.Fatalf("%s: result %+v", mode, r)
		}
	}
	if mails, auths := sh.Counts(); mails != 0 || auths != 0 {
		t.Fatalf("the server saw %d MAIL and %d AUTH", mails, auths)
	}
}

func TestCancelStopsSlowServer(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	mx.DataBlock = make(chan struct{})
	dns.SetA("dest.test", "127.0.0.2")
	c := client(dns, mx.Port(), func(cfg *outbound.Config) {
		cfg.CommandTimeout, cfg.DataTimeout = time.Minute, time.Minute
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := one(t, c.Deliver(ctx, "dest.test", message("b@dest.test")))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deliver took %v after the cancel", d)
	}
	if r.Delivered || r.Permanent {
		t.Fatalf("result %+v", r)
	}
}

func TestDataTimeout(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	mx.DataBlock = make(chan struct{})
	dns.SetA("dest.test", "127.0.0.2")
	c := client(dns, mx.Port(), func(cfg *outbound.Config) { cfg.DataTimeout = 300 * time.Millisecond })
	start := time.Now()
	r := one(t, c.Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if d := time.Since(start); d > 5*time.Second || r.Delivered || r.Permanent || !strings.Contains(r.Text, "timeout") {
		t.Fatalf("after %v: %+v", d, r)
	}
}

func TestSTARTTLSBrokenFallsBackToClear(t *testing.T) {
	dns := dnstest.Start(t)
	broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate")
	}}
	mx := startMX(t, "127.0.0.2", 0, broken, false)
	dns.SetA("dest.test", "127.0.0.2")
	r := one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if got := mx.Got(); !r.Delivered || len(got) != 1 || got[0].TLS {
		t.Fatalf("result %+v, got %+v", r, got)
	}
	// When TLS is required, the broken handshake is a temporary failure.
	c := client(dns, mx.Port(), func(cfg *outbound.Config) { cfg.RequireTLS = func(string) bool { return true } })
	r = one(t, c.Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || !strings.Contains(r.Text, "TLS handshake") || len(mx.Got()) != 1 {
		t.Fatalf("required: result %+v", r)
	}
}

func TestSizeLimit(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false) // SIZE 1048576
	dns.SetA("dest.test", "127.0.0.2")
	m := message("b@dest.test")
	m.Size = 2 << 20
	r := one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", m))
	if r.Delivered || !r.Permanent || r.Enhanced != "5.3.4" {
		t.Fatalf("result %+v", r)
	}
	if mails, _ := mx.Counts(); mails != 0 {
		t.Fatalf("the server saw %d MAIL", mails)
	}
}

func TestMessageOpenFails(t *testing.T) {
	dns := dnstest.Start(t)
	mx := startMX(t, "127.0.0.2", 0, nil, false)
	dns.SetA("dest.test", "127.0.0.2")
	m := message("b@dest.test")
	m.Open = func() (io.ReadCloser, error) { return nil, errors.New("disk gone") }
	r := one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", m))
	if r.Delivered || r.Permanent || strings.Contains(r.Text, "disk gone") {
		t.Fatalf("result %+v", r)
	}
	// A read error in the middle: the end of data is never sent.
	m.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), errReader{})), nil
	}
	r = one(t, client(dns, mx.Port(), nil).Deliver(context.Background(), "dest.test", m))
	if r.Delivered || r.Permanent || len(mx.Got()) != 0 {
		t.Fatalf("read error: result %+v, server got %d", r, len(mx.Got()))
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read error") }

func TestSmarthostImplicitTLS(t *testing.T) {
	dns := dnstest.Start(t)
	srvTLS, cliTLS := serverTLS(t, "relay.test")
	sh := startMXImplicitTLS(t, "127.0.0.6", srvTLS)
	sh.User, sh.Pass = "relayuser", "s3cret-relay-pass"
	dns.SetA("relay.test", "127.0.0.6")
	c := client(dns, 1, func(cfg *outbound.Config) {
		cfg.TLSConfig = cliTLS
		cfg.Smarthost = &outbound.Smarthost{Host: "relay.test", Port: sh.Port(), Username: "relayuser", Password: "s3cret-relay-pass", TLS: outbound.TLSImplicit}
	})
	r := one(t, c.Deliver(context.Background(), "", message("b@far.example")))
	if got := sh.Got(); !r.Delivered || len(got) != 1 || !got[0].TLS || got[0].User != "relayuser" {
		t.Fatalf("result %+v, got %+v", r, got)
	}
}

func TestMXTiesShuffled(t *testing.T) {
	dns := dnstest.Start(t)
	a := startMX(t, "127.0.0.2", 0, nil, false)
	b := startMX(t, "127.0.0.3", a.Port(), nil, false)
	dns.SetMX("dest.test", dnstest.MX{Host: "a.dest.test", Pref: 10}, dnstest.MX{Host: "b.dest.test", Pref: 10})
	dns.SetA("a.dest.test", "127.0.0.2")
	dns.SetA("b.dest.test", "127.0.0.3")
	c := client(dns, a.Port(), nil)
	// 30 deliveries all to one of two equal hosts: probability 2^-29.
	for range 30 {
		if r := one(t, c.Deliver(context.Background(), "dest.test", message("b@dest.test"))); !r.Delivered {
			t.Fatalf("result %+v", r)
		}
	}
	if len(a.Got()) == 0 || len(b.Got()) == 0 {
		t.Fatalf("a got %d, b got %d: ties not shuffled", len(a.Got()), len(b.Got()))
	}
}
