package mailcluster

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Settings of [Screening] in the main ini file.
const (
	SectionScreening     = "Screening"
	KeyScreeningEnabled  = "Enabled"          // Yes
	KeyIPFailures        = "IPFailures"       // 5 distinct failures ...
	KeyIPWindow          = "IPWindow"         // ... within 600 seconds block the IP
	KeyBlockDuration     = "BlockDuration"    // 1800 seconds, doubled per repeat offence
	KeyMaxBlockDuration  = "MaxBlockDuration" // 604800 seconds (a week)
	KeyAccountFailures   = "AccountFailures"  // 10 distinct failures ...
	KeyAccountWindow     = "AccountWindow"    // ... within 86400 seconds freeze the account
	KeyAllowIPs          = "AllowIPs"         // comma-separated IPs and CIDRs never blocked
	KeyAllowAccounts     = "AllowAccounts"    // comma-separated addresses never frozen
	KeyThawTokenLifetime = "ThawTokenHours"   // 48
)

// ScreeningConfig is [Screening] parsed, with defaults.
type ScreeningConfig struct {
	Enabled          bool
	IPFailures       int
	IPWindow         time.Duration
	BlockDuration    time.Duration
	MaxBlockDuration time.Duration
	AccountFailures  int
	AccountWindow    time.Duration
	AllowIPs         []netip.Prefix
	AllowAccounts    map[string]bool
	ThawTokenTTL     time.Duration
}

// BlockedIP is a blocked client address. Until zero means no expiry.
// Offences counts how often the address was blocked automatically; each
// repeat doubles the block.
type BlockedIP struct {
	IP        string    `json:"ip"`
	Until     time.Time `json:"until,omitzero"`
	Offences  int       `json:"offences"`
	Reason    string    `json:"reason"`
	Source    string    `json:"source"` // auto, admin, local (decided by a node without a primary)
	CreatedAt time.Time `json:"createdAt"`
}

// Active reports whether the block holds at now.
func (b *BlockedIP) Active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// FrozenAccount is an account frozen by screening or an admin. A frozen
// account receives mail but cannot log in. TokenHash is the SHA-256 of the
// single-use thaw token sent to the account's mailbox; never shown.
type FrozenAccount struct {
	Address      string    `json:"address"`
	Since        time.Time `json:"since"`
	Reason       string    `json:"reason"`
	Source       string    `json:"source"`
	TokenHash    string    `json:"tokenHash,omitempty"`
	TokenExpires time.Time `json:"tokenExpires,omitzero"`
}

// LoginFailure is one failed login, reported to the primary.
type LoginFailure struct {
	Time    time.Time `json:"time"`
	IP      string    `json:"ip"`
	Address string    `json:"address,omitempty"` // the account tried, when it exists
	Hash    string    `json:"hash"`              // keyed hash of address and password: repeats count once
	Node    string    `json:"node"`
	Proto   string    `json:"proto"` // smtp, imap, pop3, api (REST and XML-API), thaw
}

// FailureSink receives login failures; it forwards them to the primary
// (queueing them while none is reachable). Report must not block.
type FailureSink interface {
	Report(f LoginFailure)
}

// Notifier delivers the thaw-token message to a frozen account's mailbox.
type Notifier interface {
	NotifyFrozen(ctx context.Context, a *Account, token string, expires time.Time) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, a *Account, token string, expires time.Time) error

// NotifyFrozen calls f.
func (f NotifierFunc) NotifyFrozen(ctx context.Context, a *Account, token string, expires time.Time) error {
	return f(ctx, a, token, expires)
}

type clientIPKey struct{}

// NewContextWithClientIP records the client's address for screening.
func NewContextWithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// ClientIPFromContext returns the address set by NewContextWithClientIP.
func ClientIPFromContext(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// NormalizeIP parses an IP address (v4, v6, v4-in-v6) into its canonical
// text form. Errors: EINVALID.
func NormalizeIP(s string) (string, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", Errorf(EINVALID, "%q is not an IP address.", s)
	}
	a = a.Unmap().WithZone("")
	var buf [64]byte
	if b := a.AppendTo(buf[:0]); string(b) == s {
		return s, nil // already canonical: no new string
	}
	return a.String(), nil
}

// AllowedIP reports whether ip is on the allow-list.
func (c *ScreeningConfig) AllowedIP(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.AllowIPs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
