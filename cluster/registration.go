package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
)

// ServiceName is the Consul service every node registers.
const ServiceName = "mailcluster"

// Registration registers the node as an instance of the Consul service
// "mailcluster", tagged with its current role and with an HTTP check on
// /health, so the Consul UI and load balancers see every node's health and
// role. Meta carries version, node_key_id and time_zone, and
// MetaInternalURL when the node serves its internal API over HTTPS.
type Registration struct {
	Client   *api.Client
	NodeName string
	Cluster  string
	APIAddr  string // advertised host:port of the HTTP API
	// InternalURL, when set, is the https URL of the node's HTTPS listener,
	// where other nodes call its internal API (MetaInternalURL).
	InternalURL string
	NodeKeyID   string
	// NeverPrimary is published in meta so switchovers never target the node.
	NeverPrimary bool
	Log          *slog.Logger

	mu   sync.Mutex
	role mailcluster.Role
}

// ServiceID is this node's service instance id.
func (r *Registration) ServiceID() string { return "mailcluster-" + r.Cluster + "-" + r.NodeName }

// Register (re-)registers the instance with the role as its tag; Consul
// keeps the check's status across re-registration.
func (r *Registration) Register(role mailcluster.Role) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	host, portStr, err := net.SplitHostPort(r.APIAddr)
	if err != nil {
		return fmt.Errorf("cluster: advertise address %q: %w", r.APIAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	zone, _ := time.Now().Zone()
	tag := string(role)
	if role == mailcluster.RoleUnknown {
		tag = string(mailcluster.RoleSecondary)
	}
	reg := &api.AgentServiceRegistration{
		ID:      r.ServiceID(),
		Name:    ServiceName,
		Tags:    []string{tag, "cluster-" + r.Cluster},
		Address: host,
		Port:    port,
		Meta: map[string]string{
			"version":       mailcluster.Version,
			"node_key_id":   r.NodeKeyID,
			"time_zone":     zone,
			"node_name":     r.NodeName,
			"cluster":       r.Cluster,
			"never_primary": strconv.FormatBool(r.NeverPrimary),
		},
		Check: &api.AgentServiceCheck{
			CheckID:  r.ServiceID() + "-health",
			Name:     "mailcluster " + r.NodeName + " /health",
			HTTP:     "http://" + r.APIAddr + "/health",
			Method:   "GET",
			Interval: "1s",
			Timeout:  "1s",
		},
	}
	if r.InternalURL != "" {
		reg.Meta[MetaInternalURL] = r.InternalURL
	}
	if err := r.Client.Agent().ServiceRegister(reg); err != nil {
		return fmt.Errorf("cluster: register service: %w", err)
	}
	r.role = role
	return nil
}

// Run keeps the registration current: it re-registers on role changes
// sent on roles and every 30 s (a restarted agent forgets services), and
// deregisters when ctx ends.
func (r *Registration) Run(ctx context.Context, roles <-chan mailcluster.Role, current func() mailcluster.Role) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = r.Client.Agent().ServiceDeregisterOpts(r.ServiceID(), (&api.QueryOptions{}).WithContext(dctx))
			cancel()
			return
		case <-roles:
		case <-tick.C:
		case <-retry.C:
		}
		if err := r.Register(current()); err != nil {
			r.Log.Warn("registering with consul", "err", err)
			retry.Reset(time.Second)
		}
	}
}
