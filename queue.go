package mailcluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The states of one recipient of a queued message.
const (
	RcptPending   = "pending"   // not yet delivered; retried until the queue's maximum age
	RcptDelivered = "delivered" // accepted by the destination
	RcptFailed    = "failed"    // refused for good (5xx, or expired); a DSN went to the sender
)

// QueuedRecipient is one recipient of a queued message and its state.
type QueuedRecipient struct {
	Address  string    `json:"address"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	Reply    string    `json:"reply,omitempty"` // the last reply or failure, as the destination gave it
	Host     string    `json:"host,omitempty"`  // the host that gave Reply
	Updated  time.Time `json:"updated,omitzero"`
}

// QueuedMessage is a message in the outbound queue: owned by one node,
// stored on the shared path, delivered to recipients outside the
// cluster's domains.
type QueuedMessage struct {
	ID          string            `json:"id"`
	Node        string            `json:"node"`        // the node that owns (delivers) it
	From        string            `json:"from"`        // envelope sender; "" is the null sender of a DSN
	Recipients  []QueuedRecipient `json:"recipients"`  //
	Size        int64             `json:"size"`        // bytes of the message as queued
	Created     time.Time         `json:"created"`     //
	NextAttempt time.Time         `json:"nextAttempt"` //
	Attempts    int               `json:"attempts"`    // delivery attempts so far
	Warned      bool              `json:"delayWarned"` // a delay warning went to the sender
	Subject     string            `json:"subject,omitempty"`
}

// QueueStats are the counts of the outbound queue.
type QueueStats struct {
	Messages  int       `json:"messages"`
	Oldest    time.Time `json:"oldest,omitzero"`
	Deferred  int       `json:"deferred"` // messages that had at least one failed attempt
	Recipient int       `json:"recipients"`
}

// ErrQueueNotFound is wrapped by the outbound queue's errors for an id
// that is not (or no longer) queued.
var ErrQueueNotFound = errors.New("no such message in the outbound queue")

var reQueueID = regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-f]{12}$`)

// ValidQueueID reports whether id has the form of a queue id; an id from a
// client is checked before it names any file.
func ValidQueueID(id string) bool { return reQueueID.MatchString(id) }

// Settings of the outbound queue and of relaying, in the main ini file.
const (
	SectionQueue         = "Queue"
	KeyRetrySchedule     = "RetrySchedule"     // e.g. "5m,10m,20m,40m,1h"; the last repeats
	KeyQueueMaxAge       = "MaxAge"            // e.g. "5d"
	KeyDelayWarning      = "DelayWarning"      // e.g. "4h"; "0" sends none
	KeyMaxPerDestination = "MaxPerDestination" // deliveries in progress to one domain, per node
	KeyMaxDeliveries     = "MaxDeliveries"     // deliveries in progress, per node
	KeyTakeoverAfter     = "TakeoverAfter"     // e.g. "30s"

	SectionOutbound = "Outbound"
	// KeySmarthost is "host:port" of a relay that takes all outbound
	// mail; empty (default) delivers by MX.
	KeySmarthost = "Smarthost"
	// KeySmarthostUser is the AUTH user name at the smarthost (its
	// password is node configuration, never a replicated setting).
	KeySmarthostUser = "SmarthostUser"
	// KeySmarthostTLS is none, starttls (default) or tls (implicit TLS).
	KeySmarthostTLS = "SmarthostTLS"
	// KeyTLSRequiredDomains lists destination domains that must accept
	// STARTTLS (comma or space separated); others get TLS when offered.
	KeyTLSRequiredDomains = "TLSRequiredDomains"
	// KeyDNSServer is "host:port" of the DNS server asked for MX records;
	// empty (default) uses the system's resolver.
	KeyDNSServer = "DNSServer"
	// KeyMXPort is the port of MX hosts; default 25.
	KeyMXPort = "MXPort"

	// KeyRelayNetworks (in [SMTP]) lists client networks (CIDRs or
	// addresses) whose mail is relayed without authentication on the
	// inbound listener; empty by default.
	KeyRelayNetworks = "RelayNetworks"
)

// ParseQueueDuration parses a duration of [Queue]: a Go duration ("90s",
// "4h") or whole days ("5d"); "0" is zero. Negative values are refused.
func ParseQueueDuration(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 || d > 3650 {
			return 0, false
		}
		return time.Duration(d) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

func queueDurationRule(v string) string {
	if _, ok := ParseQueueDuration(v); !ok {
		return "must be a duration such as 90s, 4h or 5d"
	}
	return ""
}

func positiveRule(v string) string {
	if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 100000 {
		return "must be a whole number from 1 to 100000"
	}
	return ""
}

func hostPortRule(v string) string {
	if v == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return "must be host:port"
	}
	return ""
}

// ParseNetworks parses a comma or space separated list of IP addresses
// and CIDR prefixes.
func ParseNetworks(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func init() {
	for _, k := range []string{KeyQueueMaxAge, KeyDelayWarning, KeyTakeoverAfter} {
		settingRules[SectionQueue+"/"+k] = queueDurationRule
	}
	settingRules[SectionQueue+"/"+KeyRetrySchedule] = func(v string) string {
		for _, p := range strings.Split(v, ",") {
			if d, ok := ParseQueueDuration(p); !ok || d <= 0 {
				return "must be a comma-separated list of durations above zero, such as 5m,10m,1h"
			}
		}
		return ""
	}
	settingRules[SectionQueue+"/"+KeyMaxPerDestination] = positiveRule
	settingRules[SectionQueue+"/"+KeyMaxDeliveries] = positiveRule
	settingRules[SectionOutbound+"/"+KeySmarthost] = hostPortRule
	settingRules[SectionOutbound+"/"+KeyDNSServer] = hostPortRule
	settingRules[SectionOutbound+"/"+KeyMXPort] = func(v string) string {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
			return "must be a port number"
		}
		return ""
	}
	settingRules[SectionOutbound+"/"+KeySmarthostTLS] = func(v string) string {
		switch strings.ToLower(v) {
		case "none", "starttls", "tls":
			return ""
		}
		return "must be none, starttls or tls"
	}
	settingRules["SMTP/"+KeyRelayNetworks] = func(v string) string {
		if _, err := ParseNetworks(v); err != nil {
			return err.Error()
		}
		return ""
	}
}

// OutboundQueue is the outbound queue as the management edges see it,
// every node's queue on the shared path. It is satisfied by
// *mailqueue.Queue. Its errors for an unknown id wrap ErrQueueNotFound.
type OutboundQueue interface {
	// List returns up to limit messages, oldest first, after the id cursor;
	// node "" lists every node's queue; next is "" at the end.
	List(node string, limit int, cursor string) (msgs []QueuedMessage, next string, err error)
	Message(id string) (*QueuedMessage, error)
	// Retry asks the owning node to attempt the message now.
	Retry(id string) error
	// Delete removes the message without a notice to its sender.
	Delete(id string) error
	// Stats counts each node's queue.
	Stats() (map[string]QueueStats, error)
}
