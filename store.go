package mailcluster

import "context"

// KV is one replicated key with the store index of its last change.
type KV struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

// OpVerb is the kind of one operation in a Txn.
type OpVerb int

// Operation kinds; they mirror Consul's KV transaction verbs.
const (
	OpSet       OpVerb = iota + 1 // write Value unconditionally
	OpCAS                         // write Value if ModifyIndex still equals Index (0: key must not exist)
	OpDelete                      // delete the key if present
	OpDeleteCAS                   // delete the key if ModifyIndex still equals Index
	OpCheck                       // fail unless ModifyIndex equals Index (0: key must not exist)
)

// Op is one operation of a transaction.
type Op struct {
	Verb  OpVerb
	Key   string
	Value []byte
	Index uint64
}

// SharedGetter is an optional ability of a Store: Get without copying
// the value, for readers that only decode it.
type SharedGetter interface {
	// GetShared returns one key as Get does, but its Value may be shared
	// with the store's cache: the caller must neither modify nor keep it.
	GetShared(key string) (KV, bool)
}

// Store is the replicated key-value state. Keys are relative to the cluster
// prefix ("domains/example.com"). Reads come from the node's in-memory
// snapshot and never block on the network.
//
// Implementations are safe for concurrent use.
type Store interface {
	// Get returns one key from the snapshot.
	Get(key string) (KV, bool)
	// List returns the keys under prefix in key order, starting after the
	// key "after" (exclusive, "" for the first), at most limit (<=0: all).
	List(prefix, after string, limit int) []KV
	// Count returns the number of keys under prefix.
	Count(prefix string) int
	// Txn applies all ops atomically, or none. It returns the new store
	// index once the local snapshot has applied it (read-your-writes).
	// Errors: ECONFLICT when a CAS or check fails; EREADONLY when this node
	// may not write (fenced: a deposed primary cannot); EUNAVAILABLE when
	// the store cannot be reached; EINVALID for a malformed transaction.
	Txn(ctx context.Context, ops []Op) (uint64, error)
	// Index returns the index the snapshot has applied.
	Index() uint64
	// Notify returns a channel that receives (coalesced) after each applied
	// change to a key under prefix, and a func that stops it.
	Notify(prefix string) (<-chan struct{}, func())
}
