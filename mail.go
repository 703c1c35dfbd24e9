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

// UsageDelta is one change to mail: a delivery (+) or a deletion (-),
// and the folder change it made. A change that moves no usage (flags, a
// move between folders, a new folder) is a delta of zero bytes and
// messages with its Folder and Kind.
type UsageDelta struct {
	Seq      uint64    `json:"seq"` // per-node sequence, increasing
	Domain   string    `json:"domain"`
	Mailbox  string    `json:"mailbox"`
	Bytes    int64     `json:"bytes"`
	Messages int64     `json:"messages"`
	At       time.Time `json:"at"` // when the change happened on disk
	// Folder is the IMAP name of the folder changed ("INBOX", "Sent");
	// empty for a change of usage only. Kind says what changed in it.
	Folder string         `json:"folder,omitempty"`
	Kind   MailChangeKind `json:"kind,omitempty"`
}

// MailChangeKind says what a change to mail did to a folder.
type MailChangeKind string

// The kinds of folder changes.
const (
	MailDelivered MailChangeKind = "delivery" // a message delivered (SMTP, a thaw-token notice)
	MailAppended  MailChangeKind = "append"   // messages added by IMAP APPEND, COPY or MOVE
	MailFlags     MailChangeKind = "flags"    // flags of messages changed
	MailExpunged  MailChangeKind = "expunge"  // messages removed (EXPUNGE, MOVE away, a deletion through the API)
	MailFolder    MailChangeKind = "folder"   // the folder was created, deleted or renamed
)

// Valid reports whether k is one of the kinds.
func (k MailChangeKind) Valid() bool {
	switch k {
	case MailDelivered, MailAppended, MailFlags, MailExpunged, MailFolder:
		return true
	}
	return false
}

// MailChange is a folder change as the primary publishes it: one folder
// of an account, what happened to it (every kind since it was last
// published), and the reporting node's sequence number of its latest
// change.
type MailChange struct {
	Domain  string           `json:"domain"`
	Mailbox string           `json:"mailbox"`
	Folder  string           `json:"folder"`
	Kinds   []MailChangeKind `json:"kinds"`
	Seq     uint64           `json:"seq"`
}

// ReportMark is the primary's record of one node's reports
// (reports/<node>), written in the transaction that applies each report:
// the last sequence number applied (Epoch names the node's outbox), and
// the folder changes of the latest reports, one per folder, so that every
// node learns which folders changed on the others. Changes holds every
// folder change with a sequence number in (From, Seq]; a reader that last
// saw a sequence number below From has missed some.
type ReportMark struct {
	Epoch   string       `json:"epoch"`
	Seq     uint64       `json:"seq"`
	From    uint64       `json:"from,omitempty"`
	Changes []MailChange `json:"changes,omitempty"`
}

// MarkChangesKept is how many folder changes of earlier reports a
// ReportMark keeps besides those of the latest one.
const MarkChangesKept = 16

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
