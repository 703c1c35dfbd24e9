// Package pop3svc is the POP3 service of a node (RFC 1939): a listener
// with STLS (RFC 2595) and one with implicit TLS (RFC 8314), both with
// the cluster's certificates; CAPA (RFC 2449) with response codes
// (RFC 2449, RFC 3206); login by USER/PASS or AUTH PLAIN (RFC 5034,
// RFC 4616) only over TLS, or from the loopback interface when [POP3]
// AllowPlaintextLoopback allows it, and only through the domain service's
// screening (failures counted as "pop3", blocked client addresses refused
// at connect, frozen and disabled accounts refused); TOP and UIDL.
//
// The maildrop is the account's INBOX in the shared Maildir (package
// mailstore), read once at login: messages are numbered in UID order,
// their sizes are those of the message with CRLF line ends (as RETR sends
// it), and a message's UIDL is "<UIDVALIDITY>.<UID>", its IMAP UID
// prefixed with the folder's UIDVALIDITY so that it stays unique when the
// folder is created again. DELE only marks a message in the session; QUIT
// in the TRANSACTION state enters the UPDATE state and removes the marked
// messages through the store's expunge (the \Deleted flag, then the
// expunge), which reports the usage freed and tells the node's Hub, so
// IMAP sessions see an EXPUNGE like any other. A session that ends
// without QUIT (a dropped connection, the idle timeout) removes nothing.
//
// Locking: RFC 1939 has a server lock the maildrop for the length of a
// session. Here IMAP sessions (on this node and others) share the
// mailbox, and POP3 must not lock them out, so a POP3 session takes no
// lock of its own: the store's per-account lock file guards each change,
// and a message removed by another session meanwhile is answered with
// "-ERR" by RETR and TOP and is simply gone at QUIT. Two POP3 sessions of
// one account may run at once in the same way.
//
// Bounds: a command line is at most 4096 bytes (longer: "-ERR" and the
// connection is closed), a session in the AUTHORIZATION state takes at
// most 30 commands and 3 failed logins, at most 10 unknown or misplaced
// commands, and at most 1000 commands plus 10 per message after login; a
// connection without a byte received or sent for [POP3] IdleTimeout
// seconds (default 600, the RFC's minimum autologout timer) is closed.
package pop3svc
