// Package mailsvc is the mail service of a node: SMTP (RFC 5321) inbound
// and submission (RFC 6409) listeners on go-smtp, with ESMTP extensions
// (SIZE RFC 1870, 8BITMIME RFC 6152, PIPELINING RFC 2920, ENHANCEDSTATUSCODES
// RFC 2034, SMTPUTF8 RFC 6531, STARTTLS RFC 3207, AUTH PLAIN RFC 4616 and
// LOGIN), with caps on open connections per node and per client address
// and an idle timeout; submission only with the account's own sender
// addresses (envelope, From and Sender); delivery through the mailbox
// store (package mailstore) into Maildir mailboxes on the shared path;
// delivery to aliases, to postmaster@ and abuse@ of every
// domain and the bare postmaster (RFC 5321 4.5.1, RFC 2142), and to mailing
// lists with their header fields (List-Id RFC 2919, List-Post,
// List-Unsubscribe and List-Owner RFC 2369).
package mailsvc
