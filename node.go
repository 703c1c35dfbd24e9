package mailcluster

import (
	"context"
	"time"
)

// Version is the mailcluster version, set at build time with
// -ldflags "-X mailcluster.Version=...".
var Version = "0.1.0-dev"

// Role is a node's part in the cluster.
type Role string

// Roles.
const (
	RolePrimary   Role = "primary"   // accepts writes
	RoleSecondary Role = "secondary" // serves the replicated state read-only
	RoleUnknown   Role = "unknown"   // not (yet) in contact with the cluster
	RolePending   Role = "pending"   // not registered: waits for an administrator
)

// Mode tells how a node keeps its replicated state.
type Mode string

// Modes.
const (
	ModeStandalone Mode = "standalone" // embedded store, always primary
	ModeCluster    Mode = "cluster"    // Consul store, elected primary
)

// PrimaryRef names the current primary.
type PrimaryRef struct {
	Name   string `json:"name"`
	APIURL string `json:"apiUrl"`
}

// Leadership tells a node's current role. Implementations are safe for
// concurrent use; Role changes as elections happen.
type Leadership interface {
	// Role returns the node's role at this instant.
	Role() Role
	// Primary returns the current primary, ok false when none is known.
	Primary() (ref PrimaryRef, ok bool)
}

// StaticLeadership is the Leadership of a standalone node: always primary.
type StaticLeadership struct{ Self PrimaryRef }

var _ Leadership = StaticLeadership{}

// Role returns RolePrimary.
func (l StaticLeadership) Role() Role { return RolePrimary }

// Primary returns the node itself.
func (l StaticLeadership) Primary() (PrimaryRef, bool) { return l.Self, true }

// NodeInfo describes the local node for the APIs.
type NodeInfo struct {
	Name    string      `json:"name"`
	KeyID   string      `json:"keyId,omitempty"` // a hash of the node key
	Mode    Mode        `json:"mode"`
	Role    Role        `json:"role"`
	Version string      `json:"version"`
	Primary *PrimaryRef `json:"primary,omitempty"`
	Index   uint64      `json:"index"`
	LagMS   int64       `json:"lagMs"` // replication lag; 0 standalone or in contact, -1 never synced
	// Problems lists what makes the node unhealthy (empty when healthy).
	Problems []string `json:"problems"`
}

// HealthCheck is a component that can make the node unhealthy.
type HealthCheck interface {
	// Problems returns what is wrong now, as sentences for operators.
	Problems() []string
}

// NodeStatus is one node as seen in the cluster status.
type NodeStatus struct {
	Name    string `json:"name"`
	APIURL  string `json:"apiUrl"`
	Role    Role   `json:"role"`
	Version string `json:"version"`
	Healthy bool   `json:"healthy"`
	Index   uint64 `json:"index"` // last applied index of its snapshot
	LagMS   int64  `json:"lagMs"` // replication lag; -1 when unknown
	Self    bool   `json:"self"`  // the node that answered
	// NeverPrimary marks a node that stays out of the election.
	NeverPrimary bool `json:"neverPrimary"`
	// Registered is false for a node that waits for an admin (pending).
	Registered bool `json:"registered"`
	// OffsetMS is the node's clock offset from the primary's (last probe).
	OffsetMS int64 `json:"offsetMs"`
	// Warnings: clock offset over 1 s, another time zone, another version.
	Warnings []string `json:"warnings"`
	Detail   string   `json:"detail"` // why a node is not healthy, if known
}

// ClusterStatus is the state of the whole cluster as one node sees it.
type ClusterStatus struct {
	Mode    Mode         `json:"mode"`
	Cluster string       `json:"cluster"`
	Primary *PrimaryRef  `json:"primary"`
	Nodes   []NodeStatus `json:"nodes"`
}

// ClusterControl is what the Service needs of the cluster machinery.
type ClusterControl interface {
	// Status lists every node. Errors: EUNAVAILABLE when Consul cannot be reached.
	Status(ctx context.Context) (*ClusterStatus, error)
	// Switchover hands the primary role to target ("" = any other node).
	// Errors: EREADONLY on a node that is not primary, EINVALID for an
	// unknown or unsuitable target, EUNAVAILABLE.
	Switchover(ctx context.Context, target string) error
}

// Lagger reports how far behind the cluster state the local snapshot may be.
type Lagger interface {
	// Lag is 0 while in contact, else the time since the last contact;
	// negative when there never was contact.
	Lag() time.Duration
}

// ValidNodeName reports whether s is a node name: 1-63 letters, digits,
// '.', '_' or '-', starting with a letter or digit (so "." and ".." are
// never names: a node name also names directories on the shared path).
func ValidNodeName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[0] == '-' || s[0] == '_' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
