package xmlapi

import (
	"context"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"mailcluster"
)

// groupName returns the <Domain> and the group a request names: the
// first non-empty of <Group>, <GroupName> and <Name>. Groups have names,
// not addresses.
func groupName(p params) (domain, name string, err error) {
	if domain, err = p.required("Domain"); err != nil {
		return "", "", err
	}
	if path, v := p.firstOf("Group", "GroupName", "Name"); path != "" {
		return domain, v, nil
	}
	return "", "", missing("Group (or GroupName or Name)")
}

// groupRequests read the requests of the group operations.
var groupRequests = setRequest[mailcluster.GroupUpdate, *mailcluster.Group]{name: groupName, fields: groupFields, answer: (*Handler).answerGroup}

// handleGroupCreate answers CreateGroup with the new group, as
// GetGroupInfo answers it. Its members come in the same service call.
func (h *Handler) handleGroupCreate(ctx context.Context, p params, result *etree.Element) error {
	return groupRequests.write(ctx, h, p, result, func(domain, name string, f mailcluster.GroupUpdate) (*mailcluster.Group, error) {
		if len(f.RemoveMembers) > 0 {
			return nil, errNothingToRemove("Members/Member", "group", "UpdateGroup")
		}
		in := mailcluster.GroupCreate{Domain: domain, Name: name, Members: f.AddMembers}
		setIf(&in.Description, f.Description)
		setIf(&in.QuotaBytes, f.QuotaBytes)
		setIf(&in.QuotaMessages, f.QuotaMessages)
		return h.svc.CreateGroup(ctx, in)
	})
}

// handleGroupUpdate answers UpdateGroup with the changed group, as
// GetGroupInfo answers it. Only the elements present are changed; the
// members of <Members> are added, or removed with action="remove", in the
// same service call.
func (h *Handler) handleGroupUpdate(ctx context.Context, p params, result *etree.Element) error {
	return groupRequests.write(ctx, h, p, result, func(domain, name string, f mailcluster.GroupUpdate) (*mailcluster.Group, error) {
		return h.svc.UpdateGroup(ctx, domain, name, f)
	})
}

// handleGroupDelete answers DeleteGroup with <Result/>.
func (h *Handler) handleGroupDelete(ctx context.Context, p params, _ *etree.Element) error {
	return groupRequests.delete(ctx, p, h.svc.DeleteGroup)
}

// handleGroupInfo answers GetGroupInfo: the group's fields and members.
func (h *Handler) handleGroupInfo(ctx context.Context, p params, result *etree.Element) error {
	return groupRequests.info(ctx, h, p, result, h.svc.FindGroup)
}

// handleGroupList answers GetGroupList: <Groups count="N"> with a
// <Group> per group of <Domain>, in name order.
func (h *Handler) handleGroupList(ctx context.Context, p params, result *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	return addPaged(result, "Groups", func(cursor string, limit int) ([]*mailcluster.Group, string, error) {
		return h.svc.FindGroups(ctx, domain, cursor, limit)
	}, func(parent *etree.Element, g *mailcluster.Group) {
		e := parent.CreateElement("Group")
		e.CreateAttr("id", g.Name)
		e.CreateAttr("domain", g.Domain)
		e.CreateAttr("description", g.Description)
		e.CreateAttr("quotaBytes", strconv.FormatInt(g.QuotaBytes, 10))
		e.CreateAttr("quotaMessages", strconv.FormatInt(g.QuotaMessages, 10))
		e.CreateAttr("members", strconv.Itoa(g.MemberCount))
		if g.Deleting {
			e.CreateAttr("deleting", "Yes")
		}
	})
}

// groupFields decodes the optional <Description>, <QuotaBytes>,
// <QuotaMessages> (empty: unchanged, as for every number) and <Members>
// (<Member>, a mailbox or a full address, with an optional action) of
// CreateGroup and UpdateGroup. A group's members are accounts: a group
// attribute is refused.
func groupFields(p params) (mailcluster.GroupUpdate, error) {
	f := mailcluster.GroupUpdate{Description: p.str("Description")}
	var err error
	if f.QuotaBytes, err = p.int("QuotaBytes"); err != nil {
		return f, err
	}
	if f.QuotaMessages, err = p.int("QuotaMessages"); err != nil {
		return f, err
	}
	err = readMembers(p, &f.AddMembers, &f.RemoveMembers, func(c *etree.Element, addr string) (string, error) {
		if strings.TrimSpace(c.SelectAttrValue("group", "")) != "" {
			return "", mailcluster.Errorf(mailcluster.EINVALID,
				"Parameter Members/Member: the members of a group are accounts; a group cannot be a member of a group.")
		}
		if addr == "" {
			return "", mailcluster.Errorf(mailcluster.EINVALID, "Parameter Members/Member: an address is required.")
		}
		return addr, nil
	})
	return f, err
}

// answerGroup appends the <Group> element of GetGroupInfo: the group's
// fields and <Members count="N"> with each member's address.
func (h *Handler) answerGroup(ctx context.Context, parent *etree.Element, g *mailcluster.Group) error {
	e := etree.NewElement("Group")
	e.CreateAttr("id", g.Name)
	e.CreateAttr("domain", g.Domain)
	addText(e, "Name", g.Name)
	addText(e, "Domain", g.Domain)
	addText(e, "Description", g.Description)
	addText(e, "QuotaBytes", strconv.FormatInt(g.QuotaBytes, 10))
	addText(e, "QuotaMessages", strconv.FormatInt(g.QuotaMessages, 10))
	addText(e, "MemberCount", strconv.Itoa(g.MemberCount))
	addText(e, "Created", formatTime(g.CreatedAt))
	addText(e, "Updated", formatTime(g.UpdatedAt))
	if g.Deleting {
		e.CreateElement("Deleting")
	}
	if err := addPaged(e, "Members", func(cursor string, limit int) ([]string, string, error) {
		return h.svc.FindGroupMembers(ctx, g.Domain, g.Name, cursor, limit)
	}, func(members *etree.Element, addr string) {
		addText(members, "Member", addr)
	}); err != nil {
		return err
	}
	parent.AddChild(e)
	return nil
}
