package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"mailcluster"
)

// Config is the node config: what is local to one machine and never
// replicated. Every field comes from a flag, the YAML file given with
// --config, or an environment variable MAILCLUSTER_<NAME> (dashes become
// underscores); flags win over the environment, which wins over the file.
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
	SMTPHostname   string `mapstructure:"smtp-hostname"`

	ConsulAddr    string        `mapstructure:"consul-addr"`
	ConsulToken   string        `mapstructure:"consul-token"`
	ClusterName   string        `mapstructure:"cluster-name"`
	ClusterSecret string        `mapstructure:"cluster-secret"`
	AdvertiseAddr string        `mapstructure:"advertise-addr"`
	SharedPath    string        `mapstructure:"shared-path"`
	AutoAdmit     bool          `mapstructure:"auto-admit"`
	ProbeInterval time.Duration `mapstructure:"probe-interval"`
	TestClockSkew time.Duration `mapstructure:"test-clock-offset"`
	NeverPrimary  bool          `mapstructure:"never-primary"`
	SessionTTL    time.Duration `mapstructure:"session-ttl"`

	// AdminPassword comes only from MAILCLUSTER_ADMIN_PASSWORD and is used
	// only on the first start.
	AdminPassword string `mapstructure:"-"`
}

// usageError marks bad input on the command line or in the config: the
// process exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// isUsageError reports whether err should end the process with status 2.
func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// envPrefix is the prefix of every environment variable of the node config.
const envPrefix = "MAILCLUSTER"

// secretEnv lists variables that are read directly and never bound to flags.
var secretEnv = map[string]bool{"MAILCLUSTER_ADMIN_PASSWORD": true}

// addServeFlags declares the node config flags with their defaults.
func addServeFlags(fs *pflag.FlagSet) {
	host, _ := os.Hostname()
	fs.String("config", "", "YAML config file (keys as the long flag names)")
	fs.String("data-dir", "./data", "directory for the node's state, ini files and logs")
	fs.String("http-addr", "127.0.0.1:8080", "listen address of the REST API, XML-API and health endpoints")
	fs.String("node-name", host, "this node's name (default: the host name)")
	fs.String("node-key", "", "this node's unique key (default: generated once and kept in the data dir)")
	fs.String("admin-address", "admin@localhost", "full address of the first global administrator, created on the first start")
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.String("log-format", "text", "log format: text or json")
	fs.StringSlice("trusted-proxies", nil, "CIDRs of load balancers whose X-Forwarded-For names the client (for screening and logs)")
	fs.String("https-addr", "", "listen address of HTTPS for both APIs with the cluster's certificate (empty: off)")
	fs.String("smtp-addr", "127.0.0.1:2525", "listen address of inbound SMTP (empty: off)")
	fs.String("submission-addr", "127.0.0.1:2587", "listen address of SMTP submission with AUTH (empty: off)")
	fs.String("smtp-hostname", host, "host name announced by SMTP and written in Received fields")
	fs.String("consul-addr", "", "Consul HTTP address (host:port); empty runs standalone on the embedded store")
	fs.String("consul-token", "", "Consul ACL token (prefer MAILCLUSTER_CONSUL_TOKEN)")
	fs.String("cluster-name", "mail", "cluster name: the Consul KV prefix is mailcluster/<name>/")
	fs.String("cluster-secret", "", "secret shared by all nodes of the cluster, 16+ characters (prefer MAILCLUSTER_CLUSTER_SECRET)")
	fs.String("advertise-addr", "", "host:port other nodes and clients are told for the HTTP API (default: the listen address)")
	fs.Bool("never-primary", false, "never take the primary role")
	fs.String("shared-path", "", "path shared by all nodes (mailboxes, public folders, lock files, certificates)")
	fs.Bool("auto-admit", false, "as primary, register every node that asks to join and passes the checks (demos and tests)")
	fs.Duration("probe-interval", 30*time.Second, "how often the primary probes the nodes' clocks")
	fs.Duration("test-clock-offset", 0, "TESTS ONLY: report this node's clock shifted by this much to clock probes")
	_ = fs.MarkHidden("test-clock-offset")
	fs.Duration("session-ttl", time.Second, "TTL of the election session's health check (100ms-60s)")
}

// Clustered reports whether the node joins a Consul cluster.
func (c *Config) Clustered() bool { return c.ConsulAddr != "" }

// loadConfig merges file, environment and flags into a validated Config.
func loadConfig(fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	known := map[string]bool{}
	var bindErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		known[f.Name] = true
		if err := v.BindPFlag(f.Name, f); err != nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix+"_") || secretEnv[name] {
			continue
		}
		key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, envPrefix+"_")), "_", "-")
		if !known[key] {
			return nil, usagef("unknown environment variable %s (known: %s)", name, knownEnv(known))
		}
	}
	if path, _ := fs.GetString("config"); path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, usagef("config file %s: %v", path, err)
		}
		for _, k := range v.AllKeys() {
			if !known[k] {
				return nil, usagef("config file %s: unknown key %q", path, k)
			}
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		return nil, usagef("config: %v", err)
	}
	c.AdminPassword = os.Getenv("MAILCLUSTER_ADMIN_PASSWORD")
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func knownEnv(known map[string]bool) string {
	var names []string
	for k := range known {
		names = append(names, envPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_")))
	}
	names = append(names, "MAILCLUSTER_ADMIN_PASSWORD")
	sort.Strings(names)
	return strings.Join(names, ", ")
}

var reNodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// validate checks every value and makes DataDir absolute.
func (c *Config) validate() error {
	if c.DataDir == "" {
		return usagef("data-dir: must not be empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return usagef("data-dir %q: %v", c.DataDir, err)
	}
	c.DataDir = abs
	if err := validateListenAddr("http-addr", c.HTTPAddr); err != nil {
		return err
	}
	for name, addr := range map[string]string{"smtp-addr": c.SMTPAddr, "submission-addr": c.SubmissionAddr, "https-addr": c.HTTPSAddr} {
		if addr == "" {
			continue
		}
		if err := validateListenAddr(name, addr); err != nil {
			return err
		}
	}
	if c.SMTPHostname == "" || strings.ContainsAny(c.SMTPHostname, " \t\r\n<>()[]") || len(c.SMTPHostname) > 253 {
		return usagef("smtp-hostname %q: must be a host name", c.SMTPHostname)
	}
	if !reNodeName.MatchString(c.NodeName) {
		return usagef("node-name %q: use 1-63 letters, digits, '.', '_' or '-'", c.NodeName)
	}
	if c.NodeKey != "" && (len(c.NodeKey) < 16 || len(c.NodeKey) > 256) {
		return usagef("node-key: must be 16 to 256 characters long")
	}
	if _, _, err := mailcluster.SplitAddress(c.AdminAddress); err != nil {
		return usagef("admin-address: %s", mailcluster.ErrorMessage(err))
	}
	if pw := c.AdminPassword; pw != "" && (len(pw) < mailcluster.DefaultMinPasswordLength || len(pw) > 72) {
		return usagef("MAILCLUSTER_ADMIN_PASSWORD: must be %d to 72 characters long", mailcluster.DefaultMinPasswordLength)
	}
	for _, p := range c.TrustedProxies {
		if _, err := parseProxy(p); err != nil {
			return usagef("trusted-proxies: %q is not an IP address or CIDR", p)
		}
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return usagef("log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return usagef("log-format %q: use text or json", c.LogFormat)
	}
	return nil
}

var reClusterName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (c *Config) validateCluster() error {
	if !reClusterName.MatchString(c.ClusterName) {
		return usagef("cluster-name %q: use 1-63 lower-case letters, digits, '_' or '-'", c.ClusterName)
	}
	if c.SessionTTL < 100*time.Millisecond || c.SessionTTL > time.Minute {
		return usagef("session-ttl %s: must be between 100ms and 60s", c.SessionTTL)
	}
	if c.SharedPath != "" && !filepath.IsAbs(c.SharedPath) {
		return usagef("shared-path %q: must be an absolute path", c.SharedPath)
	}
	if c.ProbeInterval < 100*time.Millisecond {
		return usagef("probe-interval %s: must be at least 100ms", c.ProbeInterval)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		if err != nil || host == "" || port == "0" {
			return usagef("advertise-addr %q: want host:port with a real host and port", c.AdvertiseAddr)
		}
	}
	if !c.Clustered() {
		if c.NeverPrimary {
			return usagef("never-primary: only meaningful with consul-addr (a standalone node is always primary)")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.ConsulAddr); err != nil {
		return usagef("consul-addr %q: want host:port (%v)", c.ConsulAddr, err)
	}
	if len(c.ClusterSecret) < 16 {
		return usagef("cluster-secret: a cluster needs a secret of at least 16 characters (MAILCLUSTER_CLUSTER_SECRET)")
	}
	return nil
}

func validateListenAddr(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q: want host:port (%v)", name, addr, err)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return usagef("%s %q: host must be an IP address or localhost", name, addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usagef("%s %q: bad port", name, addr)
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

// proxies returns the parsed --trusted-proxies.
func (c *Config) proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := parseProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
