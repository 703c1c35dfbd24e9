// Package imapsvc is the IMAP service of a node (IMAP4rev2 RFC 9051 and
// IMAP4rev1 RFC 3501, on go-imap's imapserver): a listener with STARTTLS
// and one with implicit TLS (RFC 8314), both with the cluster's
// certificates; login (LOGIN, AUTHENTICATE PLAIN RFC 4616) only over TLS,
// or from the loopback interface when [IMAP] AllowPlaintextLoopback
// allows it, and only through the domain service's screening (failures
// counted, blocked client addresses refused at connect, frozen and
// disabled accounts refused); folders and messages of the shared
// Maildir through package mailstore (stable UIDs on shared storage,
// flags in file names, quota and usage as for a delivery), with
// UIDPLUS (RFC 4315), MOVE (RFC 6851), NAMESPACE (RFC 2342), SPECIAL-USE
// (RFC 6154), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819),
// ESEARCH (RFC 4731), SEARCHRES (RFC 5182), IDLE (RFC 2177), UNSELECT
// (RFC 3691), ENABLE (RFC 5161), APPENDLIMIT (RFC 7889), STATUS=SIZE
// (RFC 8438) and QUOTA (RFC 9208: the account's quota and usage under
// one root; SETQUOTA refused). Sessions of one node that select the same
// folder share one view of it, which learns of changes from the store's
// Hub and by reading the folder again every few seconds.
package imapsvc
