// Package mailstore is the node's mail storage on the shared path, used by
// every mail protocol: Maildir mailboxes (https://cr.yp.to/proto/maildir.html)
// with their file operations (messages written to tmp/, synced, and
// linked into place; directories synced), each mailbox confined below the
// mailbox roots before any file is touched; per-mailbox lock files that
// work across processes and nodes; and the Store that delivers, lists,
// opens, deletes and recounts messages. Every change to mail (a delivery,
// a deletion) is handed to a Reporter, which carries it to the primary so
// that all nodes agree on usage and quotas.
package mailstore
