package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"mailcluster/schema"

	"github.com/hashicorp/consul/api"

	"mailcluster"
)

// Control implements mailcluster.ClusterControl over Consul's catalog and
// the nodes' own /health endpoints.
type Control struct {
	Client   *api.Client
	Cluster  string
	Self     string
	Election *Election
	// Store is read for registrations and clock readings.
	Store mailcluster.Store
	// Internal reads other nodes' cluster logs.
	Internal *InternalClient
	// HTTP fetches the nodes' /health; nil means a client with a 1 s timeout.
	HTTP *http.Client
}

var _ mailcluster.ClusterControl = (*Control)(nil)

// healthBody is the part of /health that Status reads.
type healthBody struct {
	Role  mailcluster.Role `json:"role"`
	Index uint64           `json:"index"`
	LagMS int64            `json:"lagMs"`
}

// Status implements mailcluster.ClusterControl.
func (c *Control) Status(ctx context.Context) (*mailcluster.ClusterStatus, error) {
	entries, _, err := c.Client.Health().Service(ServiceName, "cluster-"+c.Cluster, false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster status cannot be read from Consul.", Err: fmt.Errorf("cluster: health: %w", err)}
	}
	st := &mailcluster.ClusterStatus{Mode: mailcluster.ModeCluster, Cluster: c.Cluster}
	if p, ok := c.Election.Primary(); ok {
		st.Primary = &p
	}
	client := c.HTTP
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	st.Nodes = make([]mailcluster.NodeStatus, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		n := mailcluster.NodeStatus{Name: e.Service.Meta["node_name"], Version: e.Service.Meta["version"], Healthy: true, LagMS: -1,
			APIURL: "http://" + net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))}
		n.Self = n.Name == c.Self
		n.NeverPrimary = e.Service.Meta["never_primary"] == "true"
		n.Role = mailcluster.RoleSecondary
		for _, t := range e.Service.Tags {
			if t == string(mailcluster.RolePrimary) || t == string(mailcluster.RolePending) {
				n.Role = mailcluster.Role(t)
			}
		}
		for _, chk := range e.Checks {
			if chk.Status != api.HealthPassing && (chk.ServiceID == e.Service.ID || chk.CheckID == "serfHealth") {
				n.Healthy = false
				n.Detail = chk.Name + ": " + chk.Status
			}
		}
		st.Nodes[i] = n
		wg.Add(1)
		go func(n *mailcluster.NodeStatus) {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL+"/health", nil)
			if err != nil {
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				n.Healthy, n.Detail = false, "unreachable"
				return
			}
			defer resp.Body.Close()
			var h healthBody
			if json.NewDecoder(resp.Body).Decode(&h) == nil {
				n.Index, n.LagMS = h.Index, h.LagMS
				if h.Role != "" {
					n.Role = h.Role
				}
			}
		}(&st.Nodes[i])
	}
	wg.Wait()
	primaryVersion := ""
	for _, n := range st.Nodes {
		if st.Primary != nil && n.Name == st.Primary.Name {
			primaryVersion = n.Version
		}
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		n.Warnings = []string{}
		if c.Store != nil {
			_, n.Registered = c.Store.Get(schema.Server(n.Name))
			if kv, ok := c.Store.Get(schema.Clock(n.Name)); ok {
				var r ClockReading
				if json.Unmarshal(kv.Value, &r) == nil {
					n.OffsetMS = r.OffsetMS
					if r.Warning != "" {
						n.Warnings = append(n.Warnings, r.Warning)
					}
				}
			}
		}
		if primaryVersion != "" && n.Version != primaryVersion {
			n.Warnings = append(n.Warnings, "runs version "+n.Version+"; the primary runs "+primaryVersion)
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	return st, nil
}

// NodeLog implements mailcluster.RemoteLogReader: another node's cluster
// log over the internal API.
func (c *Control) NodeLog(ctx context.Context, node string, f mailcluster.ClusterLogFilter) ([]mailcluster.ClusterEvent, error) {
	entries, _, err := c.Client.Health().Service(ServiceName, "cluster-"+c.Cluster, false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster's nodes cannot be read from Consul.", Err: err}
	}
	for _, e := range entries {
		if e.Service.Meta["node_name"] == node {
			url := "http://" + net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
			evs, err := c.Internal.NodeLogFrom(ctx, url, f)
			if err != nil {
				return nil, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "Node " + node + " cannot be reached for its log.", Err: err}
			}
			return evs, nil
		}
	}
	return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "There is no node %q in cluster %s.", node, c.Cluster)
}

// Switchover implements mailcluster.ClusterControl: a named target must be
// a registered, healthy node.
func (c *Control) Switchover(ctx context.Context, target string) error {
	if target != "" {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		found := false
		for _, n := range st.Nodes {
			if n.Name == target && n.Healthy && !n.NeverPrimary {
				found = true
			}
		}
		if !found {
			return mailcluster.Errorf(mailcluster.EINVALID, "Node %q is not a healthy member of cluster %s that may become primary.", target, c.Cluster)
		}
	}
	if err := c.Election.Switchover(ctx, target, 0); err != nil {
		if err == ErrNotPrimary {
			return mailcluster.Errorf(mailcluster.EREADONLY, "This node is no longer the primary.")
		}
		return &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The switchover could not be started.", Err: err}
	}
	return nil
}
