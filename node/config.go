package node

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

// Config is the node config: what is local to one machine and never
// replicated. cmd/mailcluster fills it from flags, the YAML file given
// with --config and MAILCLUSTER_<NAME> environment variables; the
// mapstructure tags are those names (the long flag names).
type Config struct {
	DataDir      string `mapstructure:"data-dir"`
	HTTPAddr     string `mapstructure:"http-addr"`
	NodeName     string `mapstructure:"node-name"`
	NodeKey      string `mapstructure:"node-key"`
	AdminAddress string `mapstructure:"admin-address"`
	LogLevel     string `mapstructure:"log-level"`
	LogFormat    string `mapstructure:"log-format"`

	TrustedProxies []string `mapstructure:"trusted-proxies"`

	HTTPSAddr      string `mapstructure:"https-addr"`
	SMTPAddr       string `mapstructure:"smtp-addr"`
	SubmissionAddr string `mapstructure:"submission-addr"`
	IMAPAddr       string `mapstructure:"imap-addr"`
	IMAPSAddr      string `mapstructure:"imaps-addr"`
	POP3Addr       string `mapstructure:"pop3-addr"`
	POP3SAddr      string `mapstructure:"pop3s-addr"`
	SMTPHostname   string `mapstructure:"smtp-hostname"`

	// IMAPRescan is how often an IMAP session reads its selected folder
	// again to find changes no notice told of (made while no primary was
	// reachable, or by other programs); 0 means 2 s.
	IMAPRescan time.Duration `mapstructure:"imap-rescan"`

	// MailSync is how deliveries make messages durable: "auto" (or
	// empty) shares one sync of the whole file system between
	// concurrent deliveries on ext4 and XFS and syncs file by file
	// elsewhere; "file" always syncs file by file (mailstore.SyncMethod).
	MailSync string `mapstructure:"mail-sync"`

	// HeapFloorMiB is the heap, in MiB, below which the Go garbage
	// collector does not run (see package gcfloor): 0 leaves the runtime's
	// default (a collection each time the heap doubles, from 4 MiB).
	// The serve command's default is 32.
	HeapFloorMiB int `mapstructure:"heap-floor"`

	ConsulAddr    string        `mapstructure:"consul-addr"`
	ConsulToken   string        `mapstructure:"consul-token"`
	ClusterName   string        `mapstructure:"cluster-name"`
	ClusterSecret string        `mapstructure:"cluster-secret"`
	AdvertiseAddr string        `mapstructure:"advertise-addr"`
	SharedPath    string        `mapstructure:"shared-path"`
	AutoAdmit     bool          `mapstructure:"auto-admit"`
	ProbeInterval time.Duration `mapstructure:"probe-interval"`
	NeverPrimary  bool          `mapstructure:"never-primary"`
	SessionTTL    time.Duration `mapstructure:"session-ttl"`

	// AdminPassword comes only from MAILCLUSTER_ADMIN_PASSWORD and is used
	// only on the first start.
	AdminPassword string `mapstructure:"-"`
	// SmarthostPassword is the password of [Outbound] SmarthostUser at the
	// smarthost; it comes only from MAILCLUSTER_SMARTHOST_PASSWORD (a
	// secret is never a replicated setting).
	SmarthostPassword string `mapstructure:"-"`
}

// maxHeapFloorMiB is the largest heap-floor: 64 GiB.
const maxHeapFloorMiB = 64 << 10

// ConfigError is a bad value in the node config: the node cannot start
// with it (the command exits with status 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configf(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

// Clustered reports whether the node joins a Consul cluster.
func (c *Config) Clustered() bool { return c.ConsulAddr != "" }

// Validate checks every value and makes DataDir absolute. Errors are
// *ConfigError.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return configf("data-dir: must not be empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return configf("data-dir %q: %v", c.DataDir, err)
	}
	c.DataDir = abs
	if err := validateListenAddr("http-addr", c.HTTPAddr); err != nil {
		return err
	}
	for name, addr := range map[string]string{"smtp-addr": c.SMTPAddr, "submission-addr": c.SubmissionAddr, "https-addr": c.HTTPSAddr,
		"imap-addr": c.IMAPAddr, "imaps-addr": c.IMAPSAddr, "pop3-addr": c.POP3Addr, "pop3s-addr": c.POP3SAddr} {
		if addr == "" {
			continue
		}
		if err := validateListenAddr(name, addr); err != nil {
			return err
		}
	}
	if c.IMAPRescan != 0 && (c.IMAPRescan < 100*time.Millisecond || c.IMAPRescan > 24*time.Hour) {
		return configf("imap-rescan %s: must be between 100ms and 24h", c.IMAPRescan)
	}
	if _, err := mailstore.ParseSyncMethod(c.MailSync); err != nil {
		return configf("mail-sync %q: use auto or file", c.MailSync)
	}
	if c.HeapFloorMiB < 0 || c.HeapFloorMiB > maxHeapFloorMiB {
		return configf("heap-floor %d: must be between 0 and %d (MiB)", c.HeapFloorMiB, maxHeapFloorMiB)
	}
	if c.SMTPHostname == "" || strings.ContainsAny(c.SMTPHostname, " \t\r\n<>()[]") || len(c.SMTPHostname) > 253 {
		return configf("smtp-hostname %q: must be a host name", c.SMTPHostname)
	}
	if !mailcluster.ValidNodeName(c.NodeName) {
		return configf("node-name %q: use 1-63 letters, digits, '.', '_' or '-'", c.NodeName)
	}
	if c.NodeKey != "" && (len(c.NodeKey) < 16 || len(c.NodeKey) > 256) {
		return configf("node-key: must be 16 to 256 characters long")
	}
	if _, _, err := mailcluster.SplitAddress(c.AdminAddress); err != nil {
		return configf("admin-address: %s", mailcluster.ErrorMessage(err))
	}
	if pw := c.AdminPassword; pw != "" && (len(pw) < mailcluster.DefaultMinPasswordLength || len(pw) > 72) {
		return configf("MAILCLUSTER_ADMIN_PASSWORD: must be %d to 72 characters long", mailcluster.DefaultMinPasswordLength)
	}
	for _, p := range c.TrustedProxies {
		if _, err := parseProxy(p); err != nil {
			return configf("trusted-proxies: %q is not an IP address or CIDR", p)
		}
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return configf("log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return configf("log-format %q: use text or json", c.LogFormat)
	}
	return nil
}

var reClusterName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (c *Config) validateCluster() error {
	if !reClusterName.MatchString(c.ClusterName) {
		return configf("cluster-name %q: use 1-63 lower-case letters, digits, '_' or '-'", c.ClusterName)
	}
	if c.SessionTTL < 100*time.Millisecond || c.SessionTTL > time.Minute {
		return configf("session-ttl %s: must be between 100ms and 60s", c.SessionTTL)
	}
	if c.SharedPath != "" && !filepath.IsAbs(c.SharedPath) {
		return configf("shared-path %q: must be an absolute path", c.SharedPath)
	}
	if c.ProbeInterval < 100*time.Millisecond {
		return configf("probe-interval %s: must be at least 100ms", c.ProbeInterval)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		if err != nil || host == "" || port == "0" {
			return configf("advertise-addr %q: want host:port with a real host and port", c.AdvertiseAddr)
		}
	}
	if !c.Clustered() {
		if c.NeverPrimary {
			return configf("never-primary: only meaningful with consul-addr (a standalone node is always primary)")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.ConsulAddr); err != nil {
		return configf("consul-addr %q: want host:port (%v)", c.ConsulAddr, err)
	}
	if len(c.ClusterSecret) < 16 {
		return configf("cluster-secret: a cluster needs a secret of at least 16 characters (MAILCLUSTER_CLUSTER_SECRET)")
	}
	return nil
}

func validateListenAddr(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return configf("%s %q: want host:port (%v)", name, addr, err)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return configf("%s %q: host must be an IP address or localhost", name, addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return configf("%s %q: bad port", name, addr)
	}
	return nil
}

// parseProxy parses an IP or CIDR of --trusted-proxies.
func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Proxies returns the parsed TrustedProxies (invalid entries skipped;
// Validate refuses them).
func (c *Config) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := parseProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
