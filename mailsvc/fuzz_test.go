package mailsvc_test

import (
	"bufio"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/mailsvc"
)

// addressSeeds are envelope addresses as SMTP clients send them, odd ones
// included (besides testdata/fuzz).
var addressSeeds = []string{
	"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.Com.", "bob@example.com", "off@example.com",
	"ice@example.com", "nobody@example.com", "x@elsewhere.test", "admin@localhost", "postmaster", "Postmaster@example.com", "abuse@example.com", "",
	"@example.com", "alice@", "a@b@example.com", `"alice"@example.com`, `"a b"@example.com`, "alice@[127.0.0.1]",
	"alice@[IPv6:::1]", "@relay.test:alice@example.com", "alice@example.com ", " alice@example.com", "al<ice@example.com",
	"al>ice@example.com", "alice@exa\x00mple.com", "ålice@example.com", "alice@exämple.com", "\xff\xfe@example.com",
	"alice+tag@example.com", "a..b@example.com", ".alice@example.com", "alice@-example.com", "alice@example..com",
	strings.Repeat("a", 65) + "@example.com", "alice@" + strings.Repeat("b", 300) + ".com", "\\@example.com",
}

// FuzzSplitAny checks the split of envelope addresses that the SMTP
// session applies before any lookup: it never panics; what it accepts
// splits at the last '@' into two non-empty parts without the characters
// that end a path or a line; and the domain it returns normalizes to the
// one SplitAddress finds, so that the local-domain check and the account
// lookup look at the same domain.
func FuzzSplitAny(f *testing.F) {
	for _, s := range addressSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		local, domain, err := mailsvc.SplitAny(addr)
		if err != nil {
			if local != "" || domain != "" {
				t.Fatalf("SplitAny(%q) returned parts with an error", addr)
			}
			return
		}
		if local == "" || domain == "" || local+"@"+domain != addr || strings.Contains(domain, "@") {
			t.Fatalf("SplitAny(%q) = %q, %q", addr, local, domain)
		}
		if strings.ContainsAny(addr, " <>\r\n") {
			t.Fatalf("SplitAny(%q) accepted a path or line delimiter", addr)
		}
		mailbox, dom, err := mailcluster.SplitAddress(addr)
		if err != nil {
			return
		}
		if dom != mailcluster.NormalizeDomain(domain) {
			t.Fatalf("SplitAny(%q) domain %q normalizes to %q; SplitAddress says %q", addr, domain, mailcluster.NormalizeDomain(domain), dom)
		}
		if m2, d2, err := mailcluster.SplitAddress(mailbox + "@" + dom); err != nil || m2 != mailbox || d2 != dom {
			t.Fatalf("SplitAddress(%q) = %q, %q; again: %q, %q, %v", addr, mailbox, dom, m2, d2, err)
		}
	})
}

// reReplyLine is one line of an SMTP reply (RFC 5321 4.2).
var reReplyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSMTPRcpt sends RCPT TO:<addr> with arbitrary addresses to a real
// inbound listener over TCP, pipelined with EHLO, MAIL and QUIT. Every
// answer is a well-formed reply; the RCPT is accepted (250) only for an
// address the service resolves (an enabled account, an alias to one, a
// list, postmaster@ or abuse@) and otherwise refused permanently (5xx):
// never 421 (go-smtp's answer to a panic in the session) nor a temporary
// 4xx (an error that smtpError did not classify); and the listener keeps
// serving.
func FuzzSMTPRcpt(f *testing.F) {
	for _, s := range addressSeeds {
		f.Add(s)
	}
	e := mustOpenEnvLog(f, slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, addr string) {
		if strings.ContainsAny(addr, "\r\n") || len(addr) > 1000 {
			return // another command, or over the line limit (TestHostileSMTP)
		}
		c, err := net.DialTimeout("tcp", e.inbound, 5*time.Second)
		if err != nil {
			t.Fatalf("the listener stopped serving: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("EHLO fuzz.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<" + addr + ">\r\nQUIT\r\n")); err != nil {
			t.Fatal(err)
		}
		var final []string
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			line := sc.Text()
			if !reReplyLine.MatchString(line) {
				t.Fatalf("RCPT TO:<%q>: malformed reply line %q", addr, line)
			}
			if line[3] == ' ' {
				final = append(final, line)
			}
		}
		if len(final) != 5 || !strings.HasPrefix(final[0], "220 ") || !strings.HasPrefix(final[1], "250") ||
			!strings.HasPrefix(final[2], "250 ") || !strings.HasPrefix(final[4], "221 ") {
			t.Fatalf("RCPT TO:<%q>: replies %q", addr, final)
		}
		rcpt := final[3]
		switch rcpt[0] {
		case '2':
			mailbox, domain, err := mailcluster.SplitAddress(addr)
			if err != nil {
				return // go-smtp decoded a quoted or routed path; the session saw another text
			}
			r, err := mustLocal(e.svc).ResolveRecipient(mailbox+"@"+domain, "s@remote.test")
			if err != nil || r.List == nil && (len(r.Accounts) == 0 || r.Accounts[0].Disabled) {
				t.Fatalf("RCPT TO:<%q> accepted (%q) for no enabled account, alias, list or postmaster: %v", addr, rcpt, err)
			}
		case '5':
		default:
			t.Fatalf("RCPT TO:<%q>: reply %q, want 250 or a permanent refusal", addr, rcpt)
		}
	})
}
