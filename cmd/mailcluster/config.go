package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"mailcluster/node"
)

// usageError marks bad input on the command line or in the config: the
// process exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// isUsageError reports whether err should end the process with status 2:
// bad usage, or a config the node refuses (*node.ConfigError).
func isUsageError(err error) bool {
	var u usageError
	var c *node.ConfigError
	return errors.As(err, &u) || errors.As(err, &c)
}

// envPrefix is the prefix of every environment variable of the node config.
const envPrefix = "MAILCLUSTER"

// secretEnv lists variables that are read directly and never bound to flags.
var secretEnv = map[string]bool{"MAILCLUSTER_ADMIN_PASSWORD": true, "MAILCLUSTER_SMARTHOST_PASSWORD": true}

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
	fs.String("imap-addr", "127.0.0.1:1143", "listen address of IMAP with STARTTLS (empty: off)")
	fs.String("imaps-addr", "", "listen address of IMAP over implicit TLS, port 993 style (empty: off)")
	fs.String("pop3-addr", "127.0.0.1:1110", "listen address of POP3 with STLS (empty: off)")
	fs.String("pop3s-addr", "", "listen address of POP3 over implicit TLS, port 995 style (empty: off)")
	fs.Duration("imap-rescan", 2*time.Second, "how often IMAP sessions read their folder again to find changes no notice told of (100ms-24h)")
	fs.String("mail-sync", "auto", "how deliveries make messages durable: auto (concurrent deliveries share one sync of the file system on ext4 and XFS, file by file elsewhere) or file")
	fs.Int("heap-floor", 32, "MiB of heap below which the garbage collector does not run (0: the Go runtime's default, from 4 MiB)")
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
	fs.Duration("session-ttl", time.Second, "TTL of the election session's health check (100ms-60s)")
	hooks := pflag.NewFlagSet("test hooks", pflag.ContinueOnError)
	for _, h := range testHooks {
		h.flags(hooks)
	}
	hooks.VisitAll(func(f *pflag.Flag) { f.Annotations = map[string][]string{testOnly: {"true"}} })
	fs.AddFlagSet(hooks)
}

// testHook adds flags to `serve` that change a node for a test. Only test
// builds register any (files with a build tag, such as clockskew.go with
// -tags clockskew); a normal build has none, so it refuses their flags
// like any unknown flag. Their flags are not part of node.Config: no
// environment variable or config file key reaches them.
type testHook struct {
	// flags declares the hook's flags.
	flags func(fs *pflag.FlagSet)
	// apply reads them and changes the node before it runs; an error is
	// bad usage.
	apply func(fs *pflag.FlagSet, n *node.Node, log *slog.Logger) error
}

// testHooks are the hooks of this build (none in a normal build).
var testHooks []testHook

// testOnly annotates the flags of test hooks.
const testOnly = "mailcluster-test-only"

// applyTestHooks lets every test hook change n (see testHook).
func applyTestHooks(fs *pflag.FlagSet, n *node.Node, log *slog.Logger) error {
	for _, h := range testHooks {
		if err := h.apply(fs, n, log); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// loadConfig merges file, environment and flags into a validated
// node.Config. Every field comes from a flag, the YAML file given with
// --config, or an environment variable MAILCLUSTER_<NAME> (dashes become
// underscores); flags win over the environment, which wins over the file.
func loadConfig(fs *pflag.FlagSet) (*node.Config, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	known := map[string]bool{}
	var bindErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" || f.Annotations[testOnly] != nil {
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
	var c node.Config
	if err := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		return nil, usagef("config: %v", err)
	}
	c.AdminPassword = os.Getenv("MAILCLUSTER_ADMIN_PASSWORD")
	c.SmarthostPassword = os.Getenv("MAILCLUSTER_SMARTHOST_PASSWORD")
	if err := c.Validate(); err != nil {
		return nil, usageError{err}
	}
	return &c, nil
}

func knownEnv(known map[string]bool) string {
	var names []string
	for k := range known {
		names = append(names, envPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_")))
	}
	names = append(names, "MAILCLUSTER_ADMIN_PASSWORD", "MAILCLUSTER_SMARTHOST_PASSWORD")
	sort.Strings(names)
	return strings.Join(names, ", ")
}
