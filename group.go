package mailcluster

import "time"

// Group is a named set of accounts of one domain (the classic XML-API's
// GroupMembership). A group can be a member of a mailing list of its
// domain (every account of the group receives) and can carry default
// quotas for its members that have none of their own: an account whose
// QuotaBytes (QuotaMessages) is 0 gets the smallest non-zero default of
// its groups.
type Group struct {
	Domain        string    `json:"domain"`
	Name          string    `json:"name"` // validated like a mailbox
	Description   string    `json:"description"`
	QuotaBytes    int64     `json:"quotaBytes"`    // default for members without their own; 0: none
	QuotaMessages int64     `json:"quotaMessages"` // default for members without their own; 0: none
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// Deleting is set while the group's members are being removed.
	Deleting bool `json:"deleting,omitempty"`
	// MemberCount is computed on read, never stored.
	MemberCount int `json:"memberCount"`
}

// MaxGroupMembers is the most accounts one group may have.
const MaxGroupMembers = 5000

// GroupCreate is the input of Service.CreateGroup. Members are mailboxes
// (local parts) or full addresses of accounts of the group's domain.
type GroupCreate struct {
	Domain        string
	Name          string
	Description   string
	QuotaBytes    int64
	QuotaMessages int64
	Members       []string
}

// GroupUpdate holds the changes to a group; nil leaves a field as it is.
type GroupUpdate struct {
	Description   *string
	QuotaBytes    *int64
	QuotaMessages *int64
	AddMembers    []string
	RemoveMembers []string
}

// Recipient is what an address served here resolves to for delivery.
type Recipient struct {
	// Address is the address as resolved, normalized.
	Address string
	// Accounts receive one copy each (an account, an alias's target,
	// the postmaster, or a list's members with groups expanded, without
	// duplicates, disabled accounts left out).
	Accounts []*Account
	// List is set when Address is a mailing list: the copies carry its
	// list headers (RFC 2369, RFC 2919) and its reply-to mode.
	List *MailingList
	// Review is set when a post to a moderated list from someone other
	// than its owner goes to the owner (the only entry of Accounts) for
	// review instead of to the members.
	Review bool
	// External holds a list's outside members in domains the cluster does
	// not serve (normalized addresses, without duplicates): the list's
	// copy goes to them through the outbound queue. Empty for a post held
	// for review and for every other kind of recipient.
	External []string
}
