package mailcluster

import (
	"time"
)

// Message summarizes one stored message of a mailbox.
type Message struct {
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
	From     string    `json:"from"`
	Subject  string    `json:"subject"`
}

// Usage is an account's mailbox usage, cluster-wide.
type Usage struct {
	Bytes       int64     `json:"bytes"`
	Messages    int64     `json:"messages"`
	UpdatedAt   time.Time `json:"updatedAt"`
	RecountedAt time.Time `json:"recountedAt,omitzero"`
}

// UsageDelta is one change to mail: a delivery (+) or a deletion (-).
type UsageDelta struct {
	Seq      uint64    `json:"seq"` // per-node sequence, increasing
	Domain   string    `json:"domain"`
	Mailbox  string    `json:"mailbox"`
	Bytes    int64     `json:"bytes"`
	Messages int64     `json:"messages"`
	At       time.Time `json:"at"` // when the change happened on disk
}

// UsageReport carries a node's changes to mail to the primary.
type UsageReport struct {
	Node string `json:"node"`
	// Epoch names the node's outbox; sequence numbers restart with a new
	// one (e.g. after the node's data dir was rebuilt).
	Epoch  string       `json:"epoch"`
	Deltas []UsageDelta `json:"deltas"`
}

// MaxReportDeltas is the most deltas one report may carry.
const MaxReportDeltas = 100
