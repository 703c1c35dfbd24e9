package mailcluster

import (
	"context"
	"time"
)

// Member is a node registered in the cluster by an administrator (or
// automatically with --auto-admit). Only registered nodes serve the
// configuration and take part in the election.
type Member struct {
	Name         string    `json:"name"`
	APIURL       string    `json:"apiUrl"`
	NodeKeyID    string    `json:"nodeKeyId"` // a hash of the node key, never the key
	Version      string    `json:"version"`
	TimeZone     string    `json:"timeZone"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// Admission finds a node that asks to join and checks it (version, unique
// node key, shared path, attachment linking), over the internal API.
type Admission interface {
	// Check returns the node's registration record, or an error whose
	// message says why it is refused. Errors: EINVALID (refused, unknown),
	// EUNAVAILABLE (cannot reach it).
	Check(ctx context.Context, nameOrAddress string, registered []Member) (*Member, error)
}

// ClusterLogFilter selects cluster-log entries.
type ClusterLogFilter struct {
	Since time.Time // only entries at or after
	Level string    // info, warn or error: that level and above
	Node  string    // read that node's log (over the internal API) instead of this node's
	Limit int       // the newest Limit entries (1-1000; 0 means 100)
}

// ValidLogLevel reports whether level is "", info, warn or error.
func ValidLogLevel(level string) bool {
	_, ok := levelRank[level]
	return ok
}

var levelRank = map[string]int{"": 0, "info": 1, "warn": 2, "error": 3}

// FilterEvents applies Since, Level and Limit (Node is not looked at).
func FilterEvents(evs []ClusterEvent, f ClusterLogFilter) []ClusterEvent {
	var out []ClusterEvent
	for _, e := range evs {
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			continue
		}
		if levelRank[e.Level] < levelRank[f.Level] {
			continue
		}
		out = append(out, e)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// RemoteLogReader reads another node's cluster log (cluster mode).
type RemoteLogReader interface {
	NodeLog(ctx context.Context, node string, f ClusterLogFilter) ([]ClusterEvent, error)
}
