package mailcluster

import "time"

// ClusterEvent is one entry of the cluster log: joins, leaves, elections,
// replication applied, refusals and warnings.
type ClusterEvent struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"` // info, warn, error
	Event   string            `json:"event"` // e.g. election, settings-overwritten, join-refused
	Node    string            `json:"node"`  // the node that recorded it
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
