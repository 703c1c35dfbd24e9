package xmlapi

import (
	"context"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"mailcluster"
)

// listName returns the domain and name of the list a request names:
// <ListName>, <List> or <Name> (the first non-empty one), a list name
// with <Domain> or the list's full address.
func listName(p params) (domain, name string, err error) {
	return p.domainObject("ListName", "List", "Name")
}

// listRequests read the requests of the list operations.
var listRequests = setRequest[mailcluster.ListUpdate, *mailcluster.MailingList]{name: listName, fields: listFields, answer: (*Handler).answerList}

// handleListCreate answers CreateList with the new list, as GetListInfo
// answers it. Its members come in the same service call.
func (h *Handler) handleListCreate(ctx context.Context, p params, result *etree.Element) error {
	return listRequests.write(ctx, h, p, result, func(domain, name string, f mailcluster.ListUpdate) (*mailcluster.MailingList, error) {
		if len(f.RemoveMembers) > 0 {
			return nil, errNothingToRemove("Members/Member", "list", "UpdateList")
		}
		in := mailcluster.ListCreate{Domain: domain, Name: name, Members: f.AddMembers}
		setIf(&in.Description, f.Description)
		setIf(&in.Policy, f.Policy)
		setIf(&in.ReplyTo, f.ReplyTo)
		setIf(&in.Owner, f.Owner)
		return h.svc.CreateList(ctx, in)
	})
}

// handleListUpdate answers UpdateList with the changed list, as
// GetListInfo answers it. Only the elements present are changed; the
// members of <Members> are added, or removed with action="remove", in the
// same service call.
func (h *Handler) handleListUpdate(ctx context.Context, p params, result *etree.Element) error {
	return listRequests.write(ctx, h, p, result, func(domain, name string, f mailcluster.ListUpdate) (*mailcluster.MailingList, error) {
		return h.svc.UpdateList(ctx, domain, name, f)
	})
}

// handleListDelete answers DeleteList with <Result/>.
func (h *Handler) handleListDelete(ctx context.Context, p params, _ *etree.Element) error {
	return listRequests.delete(ctx, p, h.svc.DeleteList)
}

// handleListInfo answers GetListInfo: the list's fields and its members.
func (h *Handler) handleListInfo(ctx context.Context, p params, result *etree.Element) error {
	return listRequests.info(ctx, h, p, result, h.svc.FindList)
}

// handleListList answers GetListList: <Lists count="N"> with a <List>
// per list of <Domain>, in name order.
func (h *Handler) handleListList(ctx context.Context, p params, result *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	return addPaged(result, "Lists", func(cursor string, limit int) ([]*mailcluster.MailingList, string, error) {
		return h.svc.FindLists(ctx, domain, cursor, limit)
	}, func(parent *etree.Element, l *mailcluster.MailingList) {
		e := parent.CreateElement("List")
		e.CreateAttr("id", l.Address())
		e.CreateAttr("name", l.Name)
		e.CreateAttr("description", l.Description)
		e.CreateAttr("policy", string(l.Policy))
		e.CreateAttr("replyTo", string(l.ReplyTo))
		e.CreateAttr("owner", l.Owner)
		e.CreateAttr("members", strconv.Itoa(l.MemberCount))
		if l.Deleting {
			e.CreateAttr("deleting", "Yes")
		}
	})
}

// listFields decodes the optional <Description>, <Policy>, <ReplyTo>,
// <Owner> and <Members> of CreateList and UpdateList. An empty <Policy>
// or <ReplyTo> leaves the value as it is (the default on create), as an
// empty flag does; an empty <Description> or <Owner> clears it.
func listFields(p params) (mailcluster.ListUpdate, error) {
	f := mailcluster.ListUpdate{Description: p.str("Description"), Owner: p.str("Owner")}
	if s := p.str("Policy"); s != nil && *s != "" {
		pol, err := mailcluster.ParseListPolicy(*s)
		if err != nil {
			return f, mailcluster.Errorf(mailcluster.EINVALID,
				"Parameter Policy: %q is not one of members, anyone, moderated.", clip(*s))
		}
		f.Policy = &pol
	}
	if s := p.str("ReplyTo"); s != nil && *s != "" {
		r, err := mailcluster.ParseListReplyTo(*s)
		if err != nil {
			return f, mailcluster.Errorf(mailcluster.EINVALID, "Parameter ReplyTo: %q is not one of sender, list.", clip(*s))
		}
		f.ReplyTo = &r
	}
	err := readMembers(p, &f.AddMembers, &f.RemoveMembers, func(c *etree.Element, addr string) (mailcluster.ListMember, error) {
		group := strings.TrimSpace(c.SelectAttrValue("group", ""))
		switch {
		case addr != "" && group != "":
			return mailcluster.ListMember{}, mailcluster.Errorf(mailcluster.EINVALID,
				"Parameter Members/Member: give an address or a group attribute, not both.")
		case addr != "":
			return mailcluster.ListMember{Address: addr}, nil
		case group != "":
			return mailcluster.ListMember{Group: group}, nil
		}
		return mailcluster.ListMember{}, mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter Members/Member: an address, or a group attribute naming a group, is required.")
	})
	return f, err
}

// answerList appends the <List> element of GetListInfo: the list's
// fields and <Members count="N">, each member an address
// (<Member>bob@example.com</Member>), an outside address
// (<Member type="external">zed@example.net</Member>) or a group
// (<Member group="sales"/>).
func (h *Handler) answerList(ctx context.Context, parent *etree.Element, l *mailcluster.MailingList) error {
	e := etree.NewElement("List")
	e.CreateAttr("id", l.Address())
	addText(e, "Name", l.Name)
	addText(e, "Domain", l.Domain)
	addText(e, "Address", l.Address())
	addText(e, "Description", l.Description)
	addText(e, "Policy", string(l.Policy))
	addText(e, "ReplyTo", string(l.ReplyTo))
	addText(e, "Owner", l.Owner)
	addText(e, "MemberCount", strconv.Itoa(l.MemberCount))
	addText(e, "Created", formatTime(l.CreatedAt))
	addText(e, "Updated", formatTime(l.UpdatedAt))
	if l.Deleting {
		e.CreateElement("Deleting")
	}
	if err := addPaged(e, "Members", func(cursor string, limit int) ([]mailcluster.ListMember, string, error) {
		return h.svc.FindListMembers(ctx, l.Domain, l.Name, cursor, limit)
	}, func(members *etree.Element, m mailcluster.ListMember) {
		me := members.CreateElement("Member")
		switch {
		case m.Group != "":
			me.CreateAttr("group", m.Group)
		case m.External:
			me.CreateAttr("type", "external")
			me.SetText(m.Address)
		default:
			me.SetText(m.Address)
		}
	}); err != nil {
		return err
	}
	parent.AddChild(e)
	return nil
}
