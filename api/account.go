package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// Account is the JSON form of an account. It has no password or
// password hash field at all, so neither can ever be serialised (a
// request may carry a hash; an answer never does).
type Account struct {
	Address       string    `json:"address"`
	Domain        string    `json:"domain"`
	Mailbox       string    `json:"mailbox"`
	FullName      string    `json:"fullName"`
	FirstName     string    `json:"firstName"`
	LastName      string    `json:"lastName"`
	MailboxPath   string    `json:"mailboxPath"`
	Frozen        bool      `json:"frozen"`
	Disabled      bool      `json:"disabled"`
	QuotaBytes    int64     `json:"quotaBytes"`
	QuotaMessages int64     `json:"quotaMessages"`
	AdminRights   string    `json:"adminRights"`
	SendAs        []string  `json:"sendAs"` // never null: [] when empty
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// Usage is the mailbox usage the primary published; see the usage
	// resource for its times and a recount.
	Usage AccountUsage `json:"usage"`
}

// AccountUsage is the short usage summary inside an account.
type AccountUsage struct {
	Bytes    int64 `json:"bytes"`
	Messages int64 `json:"messages"`
}

// AccountPage is one page of a domain's accounts; NextCursor asks for the
// next one ("" on the last).
type AccountPage struct {
	Accounts   []Account `json:"accounts"`
	NextCursor string    `json:"nextCursor"`
}

type accountCreateRequest struct {
	Mailbox       string   `json:"mailbox"`
	FullName      string   `json:"fullName"`
	FirstName     string   `json:"firstName"`
	LastName      string   `json:"lastName"`
	Password      string   `json:"password"`
	PasswordHash  string   `json:"passwordHash"` // instead of password: a bcrypt hash of cost 10 or more
	MailboxPath   string   `json:"mailboxPath"`
	Frozen        bool     `json:"frozen"`
	Disabled      bool     `json:"disabled"`
	QuotaBytes    int64    `json:"quotaBytes"`
	QuotaMessages int64    `json:"quotaMessages"`
	AdminRights   string   `json:"adminRights"`
	SendAs        []string `json:"sendAs"`
	// Aliases to create for the account, and lists and groups of its
	// domain it joins, in the same transaction.
	Aliases []string `json:"aliases"`
	Lists   []string `json:"lists"`
	Groups  []string `json:"groups"`
}

type accountUpdateRequest struct {
	FullName      *string   `json:"fullName"`
	FirstName     *string   `json:"firstName"`
	LastName      *string   `json:"lastName"`
	Password      *string   `json:"password"`
	PasswordHash  *string   `json:"passwordHash"`
	MailboxPath   *string   `json:"mailboxPath"`
	Frozen        *bool     `json:"frozen"`
	Disabled      *bool     `json:"disabled"`
	QuotaBytes    *int64    `json:"quotaBytes"`
	QuotaMessages *int64    `json:"quotaMessages"`
	AdminRights   *string   `json:"adminRights"`
	SendAs        *[]string `json:"sendAs"` // replaces the list; [] clears it
	// Aliases, list and group memberships to add or remove, in the same
	// transaction as the other changes.
	AddAliases    []string `json:"addAliases"`
	RemoveAliases []string `json:"removeAliases"`
	AddLists      []string `json:"addLists"`
	RemoveLists   []string `json:"removeLists"`
	AddGroups     []string `json:"addGroups"`
	RemoveGroups  []string `json:"removeGroups"`
}

// Limits of the paging parameters (the Service enforces the page size too).
const (
	maxCursorLen = 64
	maxSearchLen = 256
)

// newAccountResponse returns the JSON form of an account with its published
// usage.
func (s *Server) newAccountResponse(ctx context.Context, a *mailcluster.Account) Account {
	p := a.Public()
	u, _ := s.svc.AccountUsage(ctx, p.Domain, p.Mailbox) // the account was authorized already
	return Account{Address: p.Address(), Domain: p.Domain, Mailbox: p.Mailbox, FullName: p.FullName,
		FirstName: p.FirstName, LastName: p.LastName, MailboxPath: p.MailboxPath, Frozen: p.Frozen,
		Disabled: p.Disabled, QuotaBytes: p.QuotaBytes, QuotaMessages: p.QuotaMessages,
		AdminRights: string(p.AdminRights), SendAs: append([]string{}, p.SendAs...), CreatedAt: p.CreatedAt,
		UpdatedAt: p.UpdatedAt, Usage: AccountUsage{Bytes: u.Bytes, Messages: u.Messages}}
}

func accountLocation(domain, mailbox string) string {
	return domainLocation(domain) + "/accounts/" + url.PathEscape(mailbox)
}

func registerAccountRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/domains/:domain/accounts", s.handleAccountList)
	g.add(http.MethodPost, "/domains/:domain/accounts", s.handleAccountCreate)
	g.add(http.MethodGet, "/domains/:domain/accounts/:mailbox", s.handleAccountGet)
	g.add(http.MethodPatch, "/domains/:domain/accounts/:mailbox", s.handleAccountUpdate)
	g.add(http.MethodDelete, "/domains/:domain/accounts/:mailbox", s.handleAccountDelete)
}

// handleAccountList answers GET /api/v1/domains/{domain}/accounts.
func (s *Server) handleAccountList(c echo.Context) error {
	f := mailcluster.AccountFilter{Domain: pathParam(c, "domain"), Cursor: c.QueryParam("cursor"), Search: c.QueryParam("search")}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return mailcluster.Errorf(mailcluster.EINVALID, "Query parameter limit must be a number from 1 to 1000.")
		}
		f.Limit = n
	}
	if len(f.Cursor) > maxCursorLen {
		return mailcluster.Errorf(mailcluster.EINVALID, "Query parameter cursor is longer than %d characters.", maxCursorLen)
	}
	if len(f.Search) > maxSearchLen {
		return mailcluster.Errorf(mailcluster.EINVALID, "Query parameter search is longer than %d characters.", maxSearchLen)
	}
	as, next, err := s.svc.FindAccounts(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := AccountPage{Accounts: make([]Account, 0, len(as)), NextCursor: next}
	for _, a := range as {
		out.Accounts = append(out.Accounts, s.newAccountResponse(c.Request().Context(), a))
	}
	return c.JSON(http.StatusOK, out)
}

// handleAccountCreate answers POST /api/v1/domains/{domain}/accounts.
func (s *Server) handleAccountCreate(c echo.Context) error {
	var in accountCreateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	rights, err := mailcluster.ParseAdminRights(in.AdminRights)
	if err != nil {
		return err
	}
	a, err := s.svc.CreateAccount(c.Request().Context(), mailcluster.AccountCreate{
		Domain: pathParam(c, "domain"), Mailbox: in.Mailbox, FullName: in.FullName, FirstName: in.FirstName,
		LastName: in.LastName, Password: in.Password, PasswordHash: in.PasswordHash, MailboxPath: in.MailboxPath, Frozen: in.Frozen,
		Disabled: in.Disabled, QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages, AdminRights: rights,
		SendAs: in.SendAs, Aliases: in.Aliases, Lists: in.Lists, Groups: in.Groups})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, accountLocation(a.Domain, a.Mailbox))
	out := s.newAccountResponse(c.Request().Context(), a)
	return writeAccount(c, http.StatusCreated, &out)
}

// handleAccountGet answers GET /api/v1/domains/{domain}/accounts/{mailbox}.
func (s *Server) handleAccountGet(c echo.Context) error {
	a, err := s.svc.FindAccount(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "mailbox"))
	if err != nil {
		return err
	}
	out := s.newAccountResponse(c.Request().Context(), a)
	return writeAccount(c, http.StatusOK, &out)
}

// handleAccountUpdate answers PATCH /api/v1/domains/{domain}/accounts/{mailbox}.
func (s *Server) handleAccountUpdate(c echo.Context) error {
	var in accountUpdateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	upd := mailcluster.AccountUpdate{FullName: in.FullName, FirstName: in.FirstName, LastName: in.LastName,
		Password: in.Password, PasswordHash: in.PasswordHash, MailboxPath: in.MailboxPath, Frozen: in.Frozen, Disabled: in.Disabled,
		QuotaBytes: in.QuotaBytes, QuotaMessages: in.QuotaMessages, SendAs: in.SendAs,
		AddAliases: in.AddAliases, RemoveAliases: in.RemoveAliases, AddLists: in.AddLists, RemoveLists: in.RemoveLists,
		AddGroups: in.AddGroups, RemoveGroups: in.RemoveGroups}
	if in.AdminRights != nil {
		rights, err := mailcluster.ParseAdminRights(*in.AdminRights)
		if err != nil {
			return err
		}
		upd.AdminRights = &rights
	}
	a, err := s.svc.UpdateAccount(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "mailbox"), upd)
	if err != nil {
		return err
	}
	out := s.newAccountResponse(c.Request().Context(), a)
	return writeAccount(c, http.StatusOK, &out)
}

// handleAccountDelete answers DELETE /api/v1/domains/{domain}/accounts/{mailbox}.
func (s *Server) handleAccountDelete(c echo.Context) error {
	if err := s.svc.DeleteAccount(c.Request().Context(), pathParam(c, "domain"), pathParam(c, "mailbox")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
