package mailcluster

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
	Mode    Mode        `json:"mode"`
	Role    Role        `json:"role"`
	Version string      `json:"version"`
	Primary *PrimaryRef `json:"primary,omitempty"`
	Index   uint64      `json:"index"`
}
