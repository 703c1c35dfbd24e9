// Package outbound delivers one message to the recipients of one
// destination domain over SMTP (RFC 5321): the mail exchangers of the domain
// from DNS (section 5: MX by preference with ties in random order, the
// implicit MX, the null MX of RFC 7505) or a smarthost, opportunistic or
// required STARTTLS (RFC 3207), SIZE (RFC 1870) and AUTH PLAIN (RFC 4954,
// RFC 4616) to a smarthost over TLS only.
//
// It keeps no queue and no state between calls: the caller decides what to
// retry from the per-recipient results.
package outbound

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"mailcluster"
)

// TLSMode is how a connection is encrypted.
type TLSMode string

// TLS modes.
const (
	// TLSNone never encrypts (not even when the server offers STARTTLS).
	TLSNone TLSMode = "none"
	// TLSOpportunistic uses STARTTLS when the server offers it and sends in
	// clear otherwise (the default).
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSStartTLS requires STARTTLS: a server without it gets nothing.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit starts TLS at connect (port 465; smarthost only).
	TLSImplicit TLSMode = "tls"
)

// Valid reports whether m is a known mode ("" counts as the default).
func (m TLSMode) Valid() bool {
	switch m {
	case "", TLSNone, TLSOpportunistic, TLSStartTLS, TLSImplicit:
		return true
	}
	return false
}

// Smarthost is a relay that takes every message, whatever its domain.
type Smarthost struct {
	Host string // a name (resolved like an MX host) or an IP address
	// Port defaults to 465 with TLS mode "tls" and to 587 otherwise.
	Port int
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN, only over TLS: on a connection in clear the password is never
	// sent and delivery fails temporarily.
	Username, Password string
	TLS                TLSMode // "" = opportunistic
}

// Config shapes a Client. The zero value of every field is a documented
// default.
type Config struct {
	// HeloName is the name sent with EHLO; "" = the host name of the machine.
	HeloName string
	// DNSServer is "host:port" of the resolver asked for MX, A and AAAA
	// records; "" = the servers of /etc/resolv.conf, or Go's resolver when
	// that file cannot be read.
	DNSServer string
	// Port is the port of MX hosts; 0 = 25.
	Port int
	// Smarthost, when set, takes every message instead of the MX hosts.
	Smarthost *Smarthost
	// RequireTLS reports whether mail to domain must be encrypted: then
	// STARTTLS must succeed, else delivery fails temporarily. nil = never.
	RequireTLS func(domain string) bool
	// TLSConfig is the base TLS client configuration. Certificates of MX
	// hosts are not verified (opportunistic and required TLS protect against
	// passive listeners only, as Postfix's "may" and "encrypt"); a
	// smarthost's certificate is verified against Smarthost.Host unless
	// InsecureSkipVerify is set.
	TLSConfig *tls.Config
	// ConnectTimeout bounds the TCP connect (and the TLS handshake of
	// implicit TLS); 0 = 30s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each reply (the greeting, EHLO, MAIL, RCPT,
	// STARTTLS, AUTH, DATA's 354); 0 = 5m.
	CommandTimeout time.Duration
	// DataTimeout bounds sending the message and waiting for the reply to
	// its end; 0 = 10m.
	DataTimeout time.Duration
	// Log receives one line per connection attempt; nil = discarded.
	Log *slog.Logger
	// Pool, when set, keeps sessions open between messages to the same
	// host and DNS answers for their TTL, shared by every Client given the
	// same Pool; nil = every delivery opens its own session.
	Pool *Pool
}

// Message is one message to deliver.
type Message struct {
	// From is the envelope sender; "" is the null sender (DSNs).
	From string
	// Rcpts are the envelope recipients, all in the destination domain
	// (any domains with a smarthost).
	Rcpts []string
	// Prefix is sent before the message (header fields such as a
	// DKIM-Signature, CRLF-terminated); may be nil.
	Prefix []byte
	// Open opens the message (header and body, CRLF line endings); it is
	// called once per Deliver and the reader is closed before Deliver
	// returns.
	Open func() (io.ReadCloser, error)
	// Size is the size of Prefix and the message, announced with SIZE=.
	Size int64
}

// Result is the outcome for one recipient.
type Result struct {
	Rcpt      string
	Delivered bool
	// Permanent is set for failures that must not be retried (bounce).
	// Neither Delivered nor Permanent: retry later.
	Permanent bool
	// Code is the remote reply code; 0 when there was no reply (connection
	// or DNS error, or a failure found here).
	Code int
	// Enhanced is the enhanced status code (RFC 3463), "5.1.1", when known.
	Enhanced string
	// Text is the remote reply's text or a description of the failure; it
	// never holds a secret.
	Text string
	// Host is the MX host or smarthost that answered ("" when none did).
	Host string
}

// Client delivers messages. It is safe for concurrent use; it holds no
// connection between calls except in its Config.Pool.
type Client struct {
	cfg      Config
	helo     string
	log      *slog.Logger
	resolver *resolver
	invalid  error // from Config.Validate
}

// Defaults of Config.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
	DefaultPort           = 25
)

// maxAttempts bounds the connections one Deliver makes (RFC 5321 5.1: a
// client should not try an unbounded number of addresses).
const maxAttempts = 10

// Validate checks cfg; the error (code EINVALID) names the bad field.
// New does not check: a Client made from an invalid Config fails every
// delivery temporarily.
func (cfg Config) Validate() error {
	if cfg.HeloName != "" && !validHelo(cfg.HeloName) {
		return mailcluster.Errorf(mailcluster.EINVALID, "outbound: the EHLO name %q is not a host name", cfg.HeloName)
	}
	if cfg.DNSServer != "" {
		if _, _, err := net.SplitHostPort(cfg.DNSServer); err != nil {
			return mailcluster.Errorf(mailcluster.EINVALID, "outbound: the DNS server %q is not host:port", cfg.DNSServer)
		}
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return mailcluster.Errorf(mailcluster.EINVALID, "outbound: port %d out of range", cfg.Port)
	}
	if sh := cfg.Smarthost; sh != nil {
		switch {
		case sh.Host == "" || strings.ContainsAny(sh.Host, " /:\r\n") && net.ParseIP(sh.Host) == nil:
			return mailcluster.Errorf(mailcluster.EINVALID, "outbound: the smarthost %q is not a host name or IP address", sh.Host)
		case sh.Port < 0 || sh.Port > 65535:
			return mailcluster.Errorf(mailcluster.EINVALID, "outbound: smarthost port %d out of range", sh.Port)
		case !sh.TLS.Valid():
			return mailcluster.Errorf(mailcluster.EINVALID, "outbound: unknown TLS mode %q (none, opportunistic, starttls, tls)", sh.TLS)
		case sh.Password != "" && sh.Username == "":
			return mailcluster.Errorf(mailcluster.EINVALID, "outbound: a smarthost password needs a user name")
		}
	}
	return nil
}

// validHelo reports whether name can follow EHLO: a host name or an
// address literal, without spaces or control characters.
func validHelo(name string) bool {
	if len(name) > 255 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_[]:", r)) {
			return false
		}
	}
	return true
}

// New returns a Client for cfg (see Config.Validate).
func New(cfg Config) *Client {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	if cfg.Port <= 0 {
		cfg.Port = DefaultPort
	}
	c := &Client{cfg: cfg, helo: cfg.HeloName, log: cfg.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.invalid = cfg.Validate()
	if c.invalid != nil {
		c.log.Error("outbound: invalid configuration", "err", c.invalid)
	}
	if c.helo == "" {
		c.helo, _ = os.Hostname()
		if !validHelo(c.helo) || c.helo == "" {
			c.helo = "localhost"
		}
	}
	c.resolver = newResolver(cfg.DNSServer, cfg.Pool)
	return c
}

// Deliver sends m to its recipients in domain and returns one Result per
// recipient, in the order of m.Rcpts. It tries the MX hosts of domain (or
// the smarthost) in order until one answers with a greeting; a host that
// cannot be reached, or answers 4xx before the transaction started, passes
// the message to the next. Replies to RCPT apply to their recipient, the
// reply to the end of DATA to every accepted recipient. ctx ends the
// delivery: what was not confirmed is then a temporary failure.
func (c *Client) Deliver(ctx context.Context, domain string, m Message) []Result {
	d := &delivery{c: c, domain: strings.TrimSuffix(strings.ToLower(domain), "."), msg: m,
		results: make([]Result, len(m.Rcpts))}
	if c.invalid != nil {
		for i, rcpt := range m.Rcpts {
			d.results[i] = temporary("", "4.3.5", "the outbound configuration is invalid").result(rcpt)
		}
		return d.results
	}
	d.run(ctx)
	return d.results
}
