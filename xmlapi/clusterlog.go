package xmlapi

import (
	"context"
	"slices"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// maxLogLimit is the largest <Limit> of GetClusterLog.
const maxLogLimit = 1000

// handleClusterLog answers GetClusterLog:
//
//	<ClusterLog>
//	  <Entry time="RFC3339" level="info|warn|error" event="EVENT" node="NODE">
//	    <Message>..</Message>
//	    <Field name="NAME">VALUE</Field>...
//	  </Entry>...
//	</ClusterLog>
//
// Entries are in the order they were recorded, oldest first; fields are
// sorted by name. Parameters, all optional: <Since> (RFC 3339), <Level>
// (that level and above), <Node> (another node's log), <Limit> (1-1000,
// default 100: the newest entries).
func (h *Handler) handleClusterLog(ctx context.Context, p params, result *etree.Element) error {
	f := mailcluster.ClusterLogFilter{Level: p.strOr("Level", ""), Node: p.strOr("Node", "")}
	if since := p.strOr("Since", ""); since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return mailcluster.Errorf(mailcluster.EINVALID,
				"Parameter Since: %q is not an RFC 3339 time such as 2030-01-02T03:04:05Z.", clip(since))
		}
		f.Since = t
	}
	limit, err := p.int("Limit")
	if err != nil {
		return err
	}
	if limit != nil {
		if *limit < 1 || *limit > maxLogLimit {
			return mailcluster.Errorf(mailcluster.EINVALID, "Parameter Limit must be from 1 to %d.", maxLogLimit)
		}
		f.Limit = int(*limit)
	}
	evs, err := h.svc.ClusterLog(ctx, f)
	if err != nil {
		return err
	}
	list := result.CreateElement("ClusterLog")
	for i := range evs {
		addClusterEvent(list, &evs[i])
	}
	return nil
}

// addClusterEvent appends one <Entry>.
func addClusterEvent(parent *etree.Element, ev *mailcluster.ClusterEvent) {
	e := parent.CreateElement("Entry")
	e.CreateAttr("time", ev.Time.UTC().Format(time.RFC3339Nano))
	e.CreateAttr("level", ev.Level)
	e.CreateAttr("event", string(ev.Event))
	e.CreateAttr("node", ev.Node)
	addText(e, "Message", ev.Message)
	names := make([]string, 0, len(ev.Fields))
	for k := range ev.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fe := addText(e, "Field", ev.Fields[k])
		fe.CreateAttr("name", k)
	}
}
