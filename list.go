package mailcluster

import (
	"strings"
	"time"
)

// ListPolicy says who may post to a mailing list.
type ListPolicy string

// Posting policies.
const (
	ListPostMembers   ListPolicy = "members"   // only members (by envelope sender); others get 550 5.7.1
	ListPostAnyone    ListPolicy = "anyone"    // anyone
	ListPostModerated ListPolicy = "moderated" // the owner's posts go out; anyone else's go to the owner for review
)

// ParseListPolicy accepts members/anyone/moderated in any case ("" is
// members).
func ParseListPolicy(s string) (ListPolicy, error) {
	switch p := ListPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return ListPostMembers, nil
	case ListPostMembers, ListPostAnyone, ListPostModerated:
		return p, nil
	}
	return "", Errorf(EINVALID, "Posting policy %q is not one of members, anyone, moderated.", s)
}

// ListReplyTo says where replies to list mail go.
type ListReplyTo string

// Reply-to modes.
const (
	ListReplyToSender ListReplyTo = "sender" // the message's own Reply-To/From are kept
	ListReplyToList   ListReplyTo = "list"   // Reply-To: is set to the list address
)

// ParseListReplyTo accepts sender/list in any case ("" is sender).
func ParseListReplyTo(s string) (ListReplyTo, error) {
	switch r := ListReplyTo(strings.ToLower(strings.TrimSpace(s))); r {
	case "":
		return ListReplyToSender, nil
	case ListReplyToSender, ListReplyToList:
		return r, nil
	}
	return "", Errorf(EINVALID, "Reply-to mode %q is not one of sender, list.", s)
}

// MailingList is a list address of a domain whose mail is delivered to
// every member. Members are accounts of the list's domain, groups of that
// domain (every account of the group receives) and outside addresses (of
// any other domain): outside members in domains the cluster serves get
// their copy locally, the others through the outbound queue.
type MailingList struct {
	Domain      string      `json:"domain"`
	Name        string      `json:"name"` // the local part, validated like a mailbox
	Description string      `json:"description"`
	Policy      ListPolicy  `json:"policy"`
	ReplyTo     ListReplyTo `json:"replyTo"`
	// Owner is the address of a local account of the list's domain: it
	// reviews posts of a moderated list and receives unsubscribe
	// requests (List-Unsubscribe). Required for a moderated list.
	Owner     string    `json:"owner,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Deleting is set while the list's members are being removed; such a
	// list receives no mail and takes no changes.
	Deleting bool `json:"deleting,omitempty"`
	// MemberCount is computed on read, never stored.
	MemberCount int `json:"memberCount"`
}

// Address returns name@domain.
func (l *MailingList) Address() string { return l.Name + "@" + l.Domain }

// ListMember is one member of a mailing list: exactly one of Address and
// Group (a group of the list's domain). An address of the list's domain
// must be an account of it; an address of any other domain is an outside
// member (a plain address as SplitAddress accepts it, of a domain name
// with at least two labels, at most MaxOutsideAddress bytes).
type ListMember struct {
	Address string `json:"address,omitempty"`
	Group   string `json:"group,omitempty"`
	// External is set on read for an outside member; the service decides
	// it from the address's domain, so it is ignored in changes.
	External bool `json:"external,omitempty"`
}

// MaxOutsideAddress is the longest outside member address (RFC 5321
// 4.5.3.1.3: a path holds at most 256 octets with its angle brackets).
const MaxOutsideAddress = 254

// MaxListMembers is the most members one list may have.
const MaxListMembers = 5000

// ListCreate is the input of Service.CreateList.
type ListCreate struct {
	Domain      string
	Name        string
	Description string
	Policy      ListPolicy  // "" is members
	ReplyTo     ListReplyTo // "" is sender
	Owner       string
	Members     []ListMember
}

// ListUpdate holds the changes to a list; nil leaves a field as it is.
// AddMembers and RemoveMembers change the membership in the same
// transaction (adding a present member or removing an absent one is not
// an error).
type ListUpdate struct {
	Description   *string
	Policy        *ListPolicy
	ReplyTo       *ListReplyTo
	Owner         *string
	AddMembers    []ListMember
	RemoveMembers []ListMember
}
