// Package kvstore keeps a node's local copy of the replicated state: a
// State is a bbolt file that serves every read (with counts of the keys
// under every "dir/" prefix maintained with the keys, change notification,
// read-your-writes waits and a rebuild-and-swap for full re-syncs), and
// BoltStore is the Store of a standalone node (a State written by local
// transactions, always primary). Nothing here talks to the network.
package kvstore
