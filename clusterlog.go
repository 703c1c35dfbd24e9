package mailcluster

import "time"

// EventKind names what a cluster-log entry records. Its value is the
// "event" string of the JSON line and of the APIs that read the log; every
// kind a node records is one of the constants below.
type EventKind string

// The kinds of cluster events, by what records them.
const (
	// EventJoin: the node started and is joining the cluster (fields:
	// cluster, consul, version, never_primary).
	EventJoin EventKind = "join"
	// EventQueueTakeover: the primary handed a gone node's outbound queue
	// to the live nodes.
	EventQueueTakeover EventKind = "queue-takeover"
	// EventLeave: the node stopped.
	EventLeave EventKind = "leave"
	// EventElection: this node became the primary (field: elections).
	EventElection EventKind = "election"
	// EventStepDown: this node stopped being the primary (field: role).
	EventStepDown EventKind = "step-down"
	// EventRegistered: this node was admitted and serves as a secondary.
	EventRegistered EventKind = "registered"
	// EventVersionMismatch: this node runs another version than it was
	// registered with and will not become primary (fields: running,
	// registered).
	EventVersionMismatch EventKind = "version-mismatch"
	// EventSettingsOverwritten: a settings file edited on this node's disk
	// was overwritten from the replicated state (field: file).
	EventSettingsOverwritten EventKind = "settings-overwritten"

	// EventRegistration: the primary registered a node (field: node).
	EventRegistration EventKind = "registration"
	// EventRegistrationRefused: a node failed the admission checks (field:
	// node; the message says why).
	EventRegistrationRefused EventKind = "registration-refused"
	// EventUnregistered: a node was removed from the cluster (field: node).
	EventUnregistered EventKind = "unregistered"
	// EventReplicationApplied: replicated changes were applied to this
	// node's snapshot, at most every 10 s (fields: index, keys).
	EventReplicationApplied EventKind = "replication-applied"
	// EventClockWarning: a node's clock is off by more than 1 s or it runs
	// in another time zone (fields: node, offset_ms, zone).
	EventClockWarning EventKind = "clock-warning"

	// EventIPBlocked: dynamic screening blocked a client address (fields:
	// ip, until, offences).
	EventIPBlocked EventKind = "ip-blocked"
	// EventAccountFrozen: an account was frozen (fields: address, source:
	// auto for dynamic screening, admin for an administrator).
	EventAccountFrozen EventKind = "account-frozen"
	// EventAccountThawed: a frozen account was thawed (field: address).
	EventAccountThawed EventKind = "account-thawed"
	// EventFreezeSkipped: screening would have frozen the last usable
	// global administrator, which stays usable (field: address).
	EventFreezeSkipped EventKind = "freeze-skipped"
	// EventScreeningLocal: no primary is reachable; this node decides
	// dynamic screening on its own copy and keeps the failures.
	EventScreeningLocal EventKind = "screening-local"
	// EventScreeningPrimaryBack: a primary is reachable again and its
	// screening state replaces this node's own decisions.
	EventScreeningPrimaryBack EventKind = "screening-primary-back"

	// EventCertificateProblem: this node cannot serve a replicated
	// certificate and reports unhealthy (fields: name, problem).
	EventCertificateProblem EventKind = "certificate-problem"
	// EventCertificateExpiry: a certificate expires within 30, 7 or 1
	// days (fields: name, not_after).
	EventCertificateExpiry EventKind = "certificate-expiry"

	// EventDomainDeleteStarted: the primary started (or, after a failover
	// or a failure, resumed) deleting a domain (fields: domain, accounts,
	// by, resumed).
	EventDomainDeleteStarted EventKind = "domain-delete-started"
	// EventDomainDeleteFinished: a domain and everything under it are
	// gone (fields: domain, accounts: how many this run deleted,
	// transactions).
	EventDomainDeleteFinished EventKind = "domain-delete-finished"
	// EventDomainDeleteFailed: a deletion stopped before the end; the
	// domain stays marked and the next primary, or the next request to
	// delete it, resumes it (fields: domain, accounts: deleted so far,
	// code).
	EventDomainDeleteFailed EventKind = "domain-delete-failed"
	// EventReplicationResync: a node re-read the whole replicated state
	// (another epoch of the feed, a head behind it, entries pruned past
	// its position; fields: epoch, seq).
	EventReplicationResync EventKind = "replication-resync"
	// EventExternalWrite: the primary found records changed in Consul
	// outside mailcluster and published Consul's content to every node
	// (fields: count, keys: the first ten).
	EventExternalWrite EventKind = "external-write"
)

// ClusterEvent is one entry of the cluster log: joins, leaves, elections,
// replication applied, refusals and warnings.
type ClusterEvent struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"` // info, warn, error
	Event   EventKind         `json:"event"`
	Node    string            `json:"node"` // the node that recorded it
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// ClusterLog records cluster events. Implementations are safe for
// concurrent use and never record secrets.
type ClusterLog interface {
	// Record appends an event; Time and Node are filled in when empty.
	Record(ev ClusterEvent)
	// Events returns up to limit of the newest events, oldest first.
	Events(limit int) ([]ClusterEvent, error)
}
