// Package cluster keeps the replicated state of a mailcluster node: the
// Store implementations (an embedded bbolt file for a standalone node; Consul
// KV for a cluster), the in-memory snapshot every read is served from, and
// the materialisation of ini settings on disk.
package cluster
