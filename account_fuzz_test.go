package mailcluster_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"mailcluster"
)

// FuzzSplitAddress feeds arbitrary addresses (as SMTP, Basic auth and the
// APIs pass them) to SplitAddress: it never panics, refuses with EINVALID,
// and what it accepts is a valid, normalized mailbox and domain that
// split again to themselves (normalization is idempotent).
func FuzzSplitAddress(f *testing.F) {
	for _, s := range []string{
		"alice@example.com", "ALICE@Example.COM.", " bob@example.com ", "a.b+c_d-e@sub.example.com",
		"@example.com", "alice@", "alice", "", "@", "a@b@c", "\"quoted\"@example.com", "alice@[127.0.0.1]",
		"al ice@example.com", "alice@exa mple.com", "alice@-example.com", "alice@example..com", ".alice@example.com",
		"alice.@example.com", "a..b@example.com", "ålice@example.com", "alice@exämple.com", "alice@xn--exmple-cua.com",
		"alice@localhost", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 65) + "@example.com",
		"alice@" + strings.Repeat("a", 63) + ".com", "alice@" + strings.Repeat("a.", 127) + "a",
		"alice\x00@example.com", "alice@example.com\r\n", "\xff@example.com", "alice@\xc3", "K@example.com",
		"alice@example.com\u2028",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		mailbox, domain, err := mailcluster.SplitAddress(addr)
		if err != nil {
			if mailcluster.ErrorCode(err) != mailcluster.EINVALID {
				t.Fatalf("SplitAddress(%q): error code %q", addr, mailcluster.ErrorCode(err))
			}
			if mailbox != "" || domain != "" {
				t.Fatalf("SplitAddress(%q) returned parts with an error", addr)
			}
			return
		}
		if err := mailcluster.ValidateMailbox(mailbox); err != nil {
			t.Fatalf("SplitAddress(%q) accepted mailbox %q: %v", addr, mailbox, err)
		}
		if err := mailcluster.ValidateDomainName(domain); err != nil {
			t.Fatalf("SplitAddress(%q) accepted domain %q: %v", addr, domain, err)
		}
		if mailcluster.NormalizeMailbox(mailbox) != mailbox || mailcluster.NormalizeDomain(domain) != domain {
			t.Fatalf("SplitAddress(%q) = %q, %q: not normalized", addr, mailbox, domain)
		}
		if !utf8.ValidString(mailbox) || !utf8.ValidString(domain) ||
			strings.ContainsAny(mailbox+domain, "@/\\ \t\r\n\x00<>\"") {
			t.Fatalf("SplitAddress(%q) = %q, %q: unsafe characters", addr, mailbox, domain)
		}
		m2, d2, err := mailcluster.SplitAddress(mailbox + "@" + domain)
		if err != nil || m2 != mailbox || d2 != domain {
			t.Fatalf("SplitAddress(%q) = %q, %q; again: %q, %q, %v", addr, mailbox, domain, m2, d2, err)
		}
		// The parts name a directory on the shared path: never a dot
		// entry, never a path.
		if mailbox == "." || mailbox == ".." || domain == "." || domain == ".." {
			t.Fatalf("SplitAddress(%q) = %q, %q: a dot entry", addr, mailbox, domain)
		}
	})
}
