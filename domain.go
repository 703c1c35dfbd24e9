package mailcluster

import (
	"strings"
	"time"
)

// Domain is a mail domain served by the cluster.
type Domain struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	MaxAccounts int    `json:"maxAccounts"` // 0: unlimited
	// Postmaster is the address of the local account that receives mail
	// to postmaster@ and abuse@ of the domain when no account, alias or
	// list of that name exists. "" means the first global administrator.
	Postmaster string    `json:"postmaster,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`

	// Deleting is set while the domain is being deleted: from then on it
	// takes no new accounts, no account or domain changes and no mail,
	// and its accounts are removed in bounded steps until the record
	// itself goes. Nil for a domain in service.
	Deleting *DomainDeletion `json:"deleting,omitempty"`

	// AccountCount is computed on read, never stored.
	AccountCount int `json:"accountCount"`
}

// DomainDeletion describes a deletion under way.
type DomainDeletion struct {
	Since    time.Time `json:"since"`    // when it was asked for
	By       string    `json:"by"`       // who asked for it (an address or a system caller's name)
	Accounts int       `json:"accounts"` // how many accounts the domain had then
}

// DomainUpdate holds the fields to change; nil leaves a field as it is.
type DomainUpdate struct {
	Description *string
	MaxAccounts *int
	Postmaster  *string // "" resets to the first global administrator
}

// NormalizeDomain lower-cases a domain name and strips one trailing dot.
func NormalizeDomain(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// ValidateDomainName reports whether name (already normalized) is a valid
// host name: labels of letters, digits and inner hyphens, 1-63 characters
// each, 253 in all. A single label such as "localhost" is allowed.
func ValidateDomainName(name string) error {
	if name == "" {
		return Errorf(EINVALID, "Domain name is required.")
	}
	if len(name) > 253 {
		return Errorf(EINVALID, "Domain name %q is longer than 253 characters.", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return Errorf(EINVALID, "Domain name %q has an empty or too long label.", name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return Errorf(EINVALID, "Domain name %q has a label that starts or ends with a hyphen.", name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return Errorf(EINVALID, "Domain name %q contains an invalid character %q.", name, r)
			}
		}
	}
	return nil
}
