package xmlapi

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleClusterInfo answers GetClusterInfo on any node:
//
//	<ClusterInfo>
//	  <Enabled>Yes|No</Enabled>
//	  <LocalNode id="KEYID" name="NAME" primary="Yes|No" role="ROLE"/>
//	  <Primary name="NAME" url="URL"/>
//	  <Nodes><Node name url role healthy registered version offsetMs lagMs self neverPrimary [detail]><Warning>..</Warning></Node>...</Nodes>
//	  <Servers><Server .../>...</Servers>
//	</ClusterInfo>
//
// Enabled is Yes in cluster mode. id is absent without a node key and
// <Primary> when no primary is known. <Nodes> are the nodes as this node
// sees them (itself only when standalone); <Servers> are the registered
// servers, sorted by name.
func (h *Handler) handleClusterInfo(ctx context.Context, _ params, result *etree.Element) error {
	st, err := h.svc.ClusterStatus(ctx)
	if err != nil {
		return err
	}
	svs, err := h.svc.Members(ctx)
	if err != nil {
		return err
	}
	info, err := h.svc.NodeInfo(ctx)
	if err != nil {
		return err
	}
	ci := result.CreateElement("ClusterInfo")
	addText(ci, "Enabled", mailcluster.FormatFlag(info.Mode == mailcluster.ModeCluster))
	local := ci.CreateElement("LocalNode")
	if info.KeyID != "" {
		local.CreateAttr("id", info.KeyID)
	}
	local.CreateAttr("name", info.Name)
	local.CreateAttr("primary", mailcluster.FormatFlag(info.Role == mailcluster.RolePrimary))
	local.CreateAttr("role", string(info.Role))
	primary := st.Primary
	if primary == nil {
		primary = info.Primary
	}
	if primary != nil {
		p := ci.CreateElement("Primary")
		p.CreateAttr("name", primary.Name)
		p.CreateAttr("url", primary.APIURL)
	}
	nodes := ci.CreateElement("Nodes")
	for i := range st.Nodes {
		addNodeStatus(nodes, &st.Nodes[i])
	}
	slices.SortFunc(svs, func(a, b mailcluster.Member) int { return cmp.Compare(a.Name, b.Name) })
	list := ci.CreateElement("Servers")
	for i := range svs {
		addServer(list, &svs[i])
	}
	return nil
}

// addNodeStatus appends <Node ...><Warning>..</Warning>...</Node>.
func addNodeStatus(parent *etree.Element, n *mailcluster.NodeStatus) {
	e := parent.CreateElement("Node")
	e.CreateAttr("name", n.Name)
	e.CreateAttr("url", n.APIURL)
	e.CreateAttr("role", string(n.Role))
	e.CreateAttr("healthy", mailcluster.FormatFlag(n.Healthy))
	e.CreateAttr("registered", mailcluster.FormatFlag(n.Registered))
	e.CreateAttr("version", n.Version)
	e.CreateAttr("offsetMs", strconv.FormatInt(n.OffsetMS, 10))
	e.CreateAttr("lagMs", strconv.FormatInt(n.LagMS, 10))
	e.CreateAttr("self", mailcluster.FormatFlag(n.Self))
	e.CreateAttr("neverPrimary", mailcluster.FormatFlag(n.NeverPrimary))
	if n.Detail != "" {
		e.CreateAttr("detail", n.Detail)
	}
	for _, w := range n.Warnings {
		addText(e, "Warning", w)
	}
}

// addServer appends <Server name url keyId version timeZone registered/>.
func addServer(parent *etree.Element, sv *mailcluster.Member) {
	e := parent.CreateElement("Server")
	e.CreateAttr("name", sv.Name)
	e.CreateAttr("url", sv.APIURL)
	e.CreateAttr("keyId", sv.NodeKeyID)
	e.CreateAttr("version", sv.Version)
	e.CreateAttr("timeZone", sv.TimeZone)
	e.CreateAttr("registered", formatTime(sv.RegisteredAt))
}

// handleClusterNodeAdd answers AddClusterNode with the registered server
// as <Server>. The node is named by <Node>, <Name> or <Address> (the
// first one given): its name, or its address as host:port or URL.
func (h *Handler) handleClusterNodeAdd(ctx context.Context, p params, result *etree.Element) error {
	node := p.strOr("Node", p.strOr("Name", p.strOr("Address", "")))
	if node == "" {
		return missing("Node (or Name or Address)")
	}
	sv, err := h.svc.AddMember(ctx, node)
	if err != nil {
		return err
	}
	addServer(result, sv)
	return nil
}

// handleClusterNodeRemove answers RemoveClusterNode with <Result/>.
func (h *Handler) handleClusterNodeRemove(ctx context.Context, p params, _ *etree.Element) error {
	name, err := p.required("Name")
	if err != nil {
		return err
	}
	return h.svc.RemoveMember(ctx, name)
}
