// Package mailstore is the node's mail storage on the shared path, used by
// every mail protocol: Maildir mailboxes (https://cr.yp.to/proto/maildir.html)
// with Maildir++ folders, their file operations (messages written to tmp/,
// synced, and linked into place; directories synced; on ext4 and XFS the
// concurrent deliveries share one sync of the whole file system instead:
// SyncMethod), each mailbox
// confined below the mailbox roots before any file is touched; per-mailbox
// lock files that work across processes and nodes; the Store that
// delivers, lists, opens, deletes and recounts messages; the folders of an
// account with stable IMAP UIDs (RFC 9051 2.3.1.1) kept in a UID map per
// folder that any node may update under the account's lock (uids.go); and
// the Hub that tells a node's readers that a folder changed. Every change
// to mail (a delivery, an append, a copy, a deletion) is handed to a
// Reporter, which carries it to the primary so that all nodes agree on
// usage and quotas.
package mailstore
