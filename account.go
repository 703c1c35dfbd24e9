package mailcluster

import (
	"strings"
	"time"
)

// AdminRights is an account's management permission.
type AdminRights string

// Admin rights.
const (
	AdminNone   AdminRights = "none"   // a mail user, no API access
	AdminDomain AdminRights = "domain" // manages the accounts of its own domain
	AdminGlobal AdminRights = "global" // manages everything
)

// ParseAdminRights accepts none/domain/global in any case ("" is none).
func ParseAdminRights(s string) (AdminRights, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "no":
		return AdminNone, nil
	case "domain":
		return AdminDomain, nil
	case "global":
		return AdminGlobal, nil
	}
	return "", Errorf(EINVALID, "Admin rights %q are not one of none, domain, global.", s)
}

// Account is a mailbox of a domain. PasswordHash is a bcrypt hash; it is
// stored in the replicated state but never returned by an API.
type Account struct {
	Domain        string      `json:"domain"`
	Mailbox       string      `json:"mailbox"`
	FullName      string      `json:"fullName"`
	FirstName     string      `json:"firstName"`
	LastName      string      `json:"lastName"`
	PasswordHash  string      `json:"passwordHash,omitempty"`
	MailboxPath   string      `json:"mailboxPath"`
	Frozen        bool        `json:"frozen"`
	Disabled      bool        `json:"disabled"`
	QuotaBytes    int64       `json:"quotaBytes"`    // 0: unlimited
	QuotaMessages int64       `json:"quotaMessages"` // 0: unlimited
	AdminRights   AdminRights `json:"adminRights"`
	// SendAs lists the other sender addresses this account may use in
	// submitted mail (MAIL FROM and From:), besides its own address: full
	// addresses, or "@domain" for every address of a domain. Empty: only
	// its own address.
	SendAs    []string  `json:"sendAs,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Address returns mailbox@domain.
func (a *Account) Address() string { return a.Mailbox + "@" + a.Domain }

// Public returns a copy without the password hash, for API answers.
func (a *Account) Public() *Account {
	c := *a
	c.PasswordHash = ""
	return &c
}

// AccountCreate is the input of Service.CreateAccount.
type AccountCreate struct {
	Domain    string
	Mailbox   string
	FullName  string
	FirstName string
	LastName  string
	// Password, or PasswordHash: a bcrypt hash of cost 10 or more made
	// elsewhere (imports, test data), stored as it is. Exactly one is given.
	Password      string
	PasswordHash  string
	MailboxPath   string // optional; computed from [NewAccounts] MailboxPath when empty
	Frozen        bool
	Disabled      bool
	QuotaBytes    int64
	QuotaMessages int64
	AdminRights   AdminRights
	SendAs        []string
	// Aliases (local parts or full addresses of the account's domain, or
	// of another local domain for a global administrator), Lists (list
	// names or addresses of the account's domain) and Groups (group names
	// of its domain) are created or joined in the same transaction as the
	// account.
	Aliases []string
	Lists   []string
	Groups  []string
}

// AccountUpdate holds the fields to change; nil leaves a field as it is.
type AccountUpdate struct {
	FullName      *string
	FirstName     *string
	LastName      *string
	Password      *string
	PasswordHash  *string // a bcrypt hash of cost 10 or more instead of Password
	MailboxPath   *string
	Frozen        *bool
	Disabled      *bool
	QuotaBytes    *int64
	QuotaMessages *int64
	AdminRights   *AdminRights
	SendAs        *[]string
	// Aliases, list and group memberships to add or remove, in the same
	// transaction as the other changes (see AccountCreate). Adding what is
	// there or removing what is not is not an error.
	AddAliases    []string
	RemoveAliases []string
	AddLists      []string
	RemoveLists   []string
	AddGroups     []string
	RemoveGroups  []string
}

// AccountFilter selects accounts of one domain, in mailbox order.
type AccountFilter struct {
	Domain string
	Search string // case-insensitive substring of mailbox or names
	Limit  int    // 1..1000; 0 means 100
	Cursor string // the last mailbox of the previous page
}

// NormalizeMailbox lower-cases a mailbox (local part).
func NormalizeMailbox(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ValidateMailbox reports whether a normalized mailbox is acceptable: 1-64
// characters of letters, digits and . _ + -, no leading, trailing or
// doubled dot. The set is kept narrow because the mailbox becomes a
// directory name on the shared path.
func ValidateMailbox(s string) error {
	if s == "" {
		return Errorf(EINVALID, "Mailbox is required.")
	}
	if len(s) > 64 {
		return Errorf(EINVALID, "Mailbox %q is longer than 64 characters.", s)
	}
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return Errorf(EINVALID, "Mailbox %q may not start or end with a dot or contain two dots in a row.", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
			return Errorf(EINVALID, "Mailbox %q contains an invalid character %q.", s, r)
		}
	}
	return nil
}

// SplitAddress splits and normalizes mailbox@domain.
func SplitAddress(addr string) (mailbox, domain string, err error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", Errorf(EINVALID, "%q is not an address of the form mailbox@domain.", addr)
	}
	mailbox, domain = NormalizeMailbox(addr[:i]), NormalizeDomain(addr[i+1:])
	if err := ValidateMailbox(mailbox); err != nil {
		return "", "", err
	}
	if err := ValidateDomainName(domain); err != nil {
		return "", "", err
	}
	return mailbox, domain, nil
}

// MaySendAs reports whether the account may use sender as the envelope
// sender or From: address of submitted mail: its own address, or one its
// SendAs list names (an address, or "@domain" for the whole domain).
// Addresses compare case-insensitively.
func (a *Account) MaySendAs(sender string) bool {
	sender = strings.ToLower(strings.TrimSpace(sender))
	if sender == strings.ToLower(a.Address()) {
		return true
	}
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 {
		return false
	}
	for _, allowed := range a.SendAs {
		allowed = strings.ToLower(allowed)
		if allowed == sender || strings.HasPrefix(allowed, "@") && allowed == sender[at:] {
			return true
		}
	}
	return false
}
