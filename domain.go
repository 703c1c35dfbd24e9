package mailcluster

import (
	"strings"
	"time"
)

// Domain is a mail domain served by the cluster.
type Domain struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	MaxAccounts int       `json:"maxAccounts"` // 0: unlimited
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`

	// AccountCount is computed on read, never stored.
	AccountCount int `json:"accountCount"`
}

// DomainUpdate holds the fields to change; nil leaves a field as it is.
type DomainUpdate struct {
	Description *string
	MaxAccounts *int
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
	for _, label := range strings.Split(name, ".") {
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
