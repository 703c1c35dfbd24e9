package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// MailingList is the JSON form of a mailing list.
type MailingList struct {
	Address     string    `json:"address"`
	Domain      string    `json:"domain"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Policy      string    `json:"policy"`
	ReplyTo     string    `json:"replyTo"`
	Owner       string    `json:"owner"` // "" when the list has none
	MemberCount int       `json:"memberCount"`
	Deleting    bool      `json:"deleting,omitempty"` // set while its members are being removed
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// ListMember is one member of a mailing list: an address (an account of
// the list's domain, or an outside address of any other domain) or a
// group of that domain (Group).
type ListMember struct {
	Address string `json:"address,omitempty"`
	Group   string `json:"group,omitempty"`
	// Type is set in answers: account, group or external (an outside
	// member). It is ignored in requests: the address's domain decides.
	Type string `json:"type,omitempty"`
}

// The types of list members in answers.
const (
	memberAccount  = "account"
	memberGroup    = "group"
	memberExternal = "external"
)

// MailingListPage is one page of a domain's mailing lists.
type MailingListPage struct {
	Lists      []MailingList `json:"lists"`
	NextCursor string        `json:"nextCursor"`
}

// ListMemberPage is one page of a mailing list's members.
type ListMemberPage struct {
	Members    []ListMember `json:"members"`
	NextCursor string       `json:"nextCursor"`
}

type listCreateRequest struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Policy      string       `json:"policy"`
	ReplyTo     string       `json:"replyTo"`
	Owner       string       `json:"owner"`
	Members     []ListMember `json:"members"`
}

type listUpdateRequest struct {
	Description   *string      `json:"description"`
	Policy        *string      `json:"policy"`
	ReplyTo       *string      `json:"replyTo"`
	Owner         *string      `json:"owner"` // "" removes the owner
	AddMembers    []ListMember `json:"addMembers"`
	RemoveMembers []ListMember `json:"removeMembers"`
}

func newListResponse(l *mailcluster.MailingList) MailingList {
	return MailingList{Address: l.Address(), Domain: l.Domain, Name: l.Name, Description: l.Description,
		Policy: string(l.Policy), ReplyTo: string(l.ReplyTo), Owner: l.Owner, MemberCount: l.MemberCount,
		Deleting: l.Deleting, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt}
}

func newListMember(m mailcluster.ListMember) ListMember {
	switch {
	case m.Group != "":
		return ListMember{Group: m.Group, Type: memberGroup}
	case m.External:
		return ListMember{Address: m.Address, Type: memberExternal}
	}
	return ListMember{Address: m.Address, Type: memberAccount}
}

// listMembers converts the members of a request (the service checks
// that each names exactly one of an address and a group).
func listMembers(in []ListMember) []mailcluster.ListMember {
	if in == nil {
		return nil
	}
	out := make([]mailcluster.ListMember, 0, len(in))
	for _, m := range in {
		out = append(out, mailcluster.ListMember{Address: m.Address, Group: m.Group})
	}
	return out
}

// parseOptional parses a value given in a PATCH (nil: unchanged).
func parseOptional[T any](v *string, parse func(string) (T, error)) (*T, error) {
	if v == nil {
		return nil, nil
	}
	p, err := parse(*v)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func listLocation(domain, name string) string {
	return domainLocation(domain) + "/lists/" + url.PathEscape(name)
}

func registerListRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/lists", s.handleListList)
	g.add(http.MethodPost, "/domains/:domain/lists", s.handleListCreate)
	g.add(http.MethodGet, "/domains/:domain/lists/:name", s.handleListGet)
	g.add(http.MethodPatch, "/domains/:domain/lists/:name", s.handleListUpdate)
	g.add(http.MethodDelete, "/domains/:domain/lists/:name", s.handleListDelete)
	g.add(http.MethodGet, "/domains/:domain/lists/:name/members", s.handleListMembers)
}

// handleListList answers GET /api/v1/domains/{domain}/lists.
func (s *Server) handleListList(c echo.Context) error {
	ls, next, err := domainPage(c, s.svc.FindLists, newListResponse)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, MailingListPage{Lists: ls, NextCursor: next})
}

// handleListCreate answers POST /api/v1/domains/{domain}/lists.
func (s *Server) handleListCreate(c echo.Context) error {
	var in listCreateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	policy, err := mailcluster.ParseListPolicy(in.Policy)
	if err != nil {
		return err
	}
	replyTo, err := mailcluster.ParseListReplyTo(in.ReplyTo)
	if err != nil {
		return err
	}
	l, err := s.svc.CreateList(c.Request().Context(), mailcluster.ListCreate{Domain: pathParam(c, "domain"),
		Name: in.Name, Description: in.Description, Policy: policy, ReplyTo: replyTo, Owner: in.Owner, Members: listMembers(in.Members)})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, listLocation(l.Domain, l.Name))
	return c.JSON(http.StatusCreated, newListResponse(l))
}

// handleListGet answers GET /api/v1/domains/{domain}/lists/{name}.
func (s *Server) handleListGet(c echo.Context) error {
	l, err := s.svc.FindList(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newListResponse(l))
}

// handleListUpdate answers PATCH /api/v1/domains/{domain}/lists/{name}.
func (s *Server) handleListUpdate(c echo.Context) error {
	var in listUpdateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	upd := mailcluster.ListUpdate{Description: in.Description, Owner: in.Owner,
		AddMembers: listMembers(in.AddMembers), RemoveMembers: listMembers(in.RemoveMembers)}
	var err error
	if upd.Policy, err = parseOptional(in.Policy, mailcluster.ParseListPolicy); err != nil {
		return err
	}
	if upd.ReplyTo, err = parseOptional(in.ReplyTo, mailcluster.ParseListReplyTo); err != nil {
		return err
	}
	l, err := s.svc.UpdateList(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name"), upd)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newListResponse(l))
}

// handleListDelete answers DELETE /api/v1/domains/{domain}/lists/{name}.
func (s *Server) handleListDelete(c echo.Context) error {
	if err := s.svc.DeleteList(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleListMembers answers GET /api/v1/domains/{domain}/lists/{name}/members.
func (s *Server) handleListMembers(c echo.Context) error {
	ms, next, err := memberPage(c, s.svc.FindListMembers, newListMember)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ListMemberPage{Members: ms, NextCursor: next})
}
