package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
)

// NodeInfo is what a node tells about itself over the internal API
// (GET /internal/v1/info), for admission.
type NodeInfo struct {
	Name              string `json:"name"`
	APIURL            string `json:"apiUrl"`
	KeyID             string `json:"keyId"`
	Version           string `json:"version"`
	TimeZone          string `json:"timeZone"`
	SharedPathOK      bool   `json:"sharedPathOk"`
	SharedPathDetail  string `json:"sharedPathDetail"`
	AttachmentLinking bool   `json:"attachmentLinking"`
}

// Admitter finds nodes in Consul's catalog and checks them before they
// are registered. It implements mailcluster.Admission.
type Admitter struct {
	Client   *api.Client
	Cluster  string
	Internal *InternalClient
}

var _ mailcluster.Admission = (*Admitter)(nil)

// Candidates returns the nodes of the cluster that Consul knows, by name.
func (a *Admitter) Candidates(ctx context.Context) (map[string]string, error) {
	entries, _, err := a.Client.Health().Service(ServiceName, "cluster-"+a.Cluster, false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		if n := e.Service.Meta["node_name"]; n != "" {
			out[n] = "http://" + net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
		}
	}
	return out, nil
}

// Check implements mailcluster.Admission.
func (a *Admitter) Check(ctx context.Context, nameOrAddress string, registered []mailcluster.Member) (*mailcluster.Member, error) {
	cands, err := a.Candidates(ctx)
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster's nodes cannot be read from Consul.", Err: err}
	}
	apiURL, ok := cands[nameOrAddress]
	if !ok {
		want := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(nameOrAddress, "http://"), "https://"), "/")
		for _, u := range cands {
			if pu, err := url.Parse(u); err == nil && pu.Host == want {
				apiURL, ok = u, true
			}
		}
	}
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "No node %q of cluster %s is running: start it with --consul-addr and --cluster-name %s first.", nameOrAddress, a.Cluster, a.Cluster)
	}
	info, err := a.Internal.Info(ctx, apiURL)
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINVALID, Message: fmt.Sprintf("Node %q at %s cannot be checked over the internal API: it is unreachable, or its cluster secret differs.", nameOrAddress, apiURL), Err: err}
	}
	if info.Version != mailcluster.Version {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Node %s runs version %s; the cluster runs %s. All nodes must run the same version.", info.Name, info.Version, mailcluster.Version)
	}
	for _, r := range registered {
		if r.NodeKeyID == info.KeyID && r.Name != info.Name {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "Node %s has the same node key as the registered node %s; every node needs its own key.", info.Name, r.Name)
		}
	}
	if !info.SharedPathOK {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Node %s cannot use the shared path: %s", info.Name, info.SharedPathDetail)
	}
	if info.AttachmentLinking {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Node %s has attachment linking enabled, which cannot be used in a cluster; turn [AttachmentLinking] Enabled off first.", info.Name)
	}
	return &mailcluster.Member{Name: info.Name, APIURL: info.APIURL, NodeKeyID: info.KeyID, Version: info.Version, TimeZone: info.TimeZone}, nil
}

// Info asks a node about itself.
func (c *InternalClient) Info(ctx context.Context, baseURL string) (*NodeInfo, error) {
	var out NodeInfo
	if err := c.get(ctx, baseURL, "/internal/v1/info", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TimeProbe is a node's answer to a clock probe.
type TimeProbe struct {
	UnixNano int64  `json:"unixNano"`
	Zone     string `json:"zone"`
}

// Time asks a node for its clock.
func (c *InternalClient) Time(ctx context.Context, baseURL string) (*TimeProbe, error) {
	var out TimeProbe
	if err := c.get(ctx, baseURL, "/internal/v1/time", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NodeLogFrom reads a node's cluster log.
func (c *InternalClient) NodeLogFrom(ctx context.Context, baseURL string, f mailcluster.ClusterLogFilter) ([]mailcluster.ClusterEvent, error) {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"))
	}
	if f.Level != "" {
		q.Set("level", f.Level)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Entries []mailcluster.ClusterEvent `json:"entries"`
	}
	if err := c.get(ctx, baseURL, "/internal/v1/log?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

func (c *InternalClient) get(ctx context.Context, baseURL, path string, out any) error {
	return c.do(ctx, "GET", baseURL, path, nil, out)
}

// AutoAdmit registers, while isPrimary holds, every node of the cluster
// that Consul lists and that is not registered yet, through register
// (which runs the admission checks). A refused node is tried again after
// 2 s, then twice as long after each further refusal up to a minute (a
// node started together with the first one may be refused only until the
// primary has written its shared-path probe); each refusal is logged. It
// returns when ctx ends.
func (a *Admitter) AutoAdmit(ctx context.Context, isPrimary func() bool, registered func(name string) bool,
	register func(ctx context.Context, name string) error, log *slog.Logger) {
	type refusal struct {
		at    time.Time
		after time.Duration
	}
	refused := map[string]refusal{}
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !isPrimary() {
			continue
		}
		cands, err := a.Candidates(ctx)
		if err != nil {
			continue
		}
		for name := range cands {
			r, seen := refused[name]
			if registered(name) || seen && time.Since(r.at) < r.after {
				continue
			}
			if err := register(ctx, name); err != nil {
				r.after = min(max(2*r.after, 2*time.Second), time.Minute)
				r.at = time.Now()
				refused[name] = r
				log.Warn("auto-admit refused a node", "node", name, "reason", mailcluster.ErrorMessage(err))
			}
		}
	}
}
