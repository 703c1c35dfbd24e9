// Package kvstore keeps a node's local copy of the replicated state: the
// in-memory snapshot every read is served from (with change notification
// and read-your-writes waits), the bbolt file that persists it across
// restarts, and the Store of a standalone node (a bbolt file, always
// primary). Nothing here talks to the network.
package kvstore
