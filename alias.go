package mailcluster

import "time"

// Alias is an address of a domain that delivers to one account
// (sales@example.com -> frank@example.com). Mail to it is stored in the
// target's mailbox and counted in the target's quota. The target is an
// account of the same domain, or of any domain served here when a global
// administrator sets it.
type Alias struct {
	Domain    string    `json:"domain"`
	Name      string    `json:"name"`   // the local part, validated like a mailbox
	Target    string    `json:"target"` // the full address of a local account
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Address returns name@domain.
func (a *Alias) Address() string { return a.Name + "@" + a.Domain }

// MaxAliasesPerAccount is the most aliases that may point at one account.
const MaxAliasesPerAccount = 32

// Postmaster and Abuse are the local parts every domain accepts (RFC 5321
// 4.5.1; RFC 2142), delivered to the domain's Postmaster account unless an
// account, alias or list of that name exists.
const (
	Postmaster = "postmaster"
	Abuse      = "abuse"
)
