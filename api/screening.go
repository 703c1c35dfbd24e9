package api

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"mailcluster/service"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// maxBlockSeconds bounds durationSeconds of a new block (ten years); a
// longer block is what "never" is for.
const maxBlockSeconds = 10 * 365 * 24 * 3600

// maxFailuresPerReport bounds the failures of one internal report.
const maxFailuresPerReport = 1000

// thawChallenge is the WWW-Authenticate of a refused thaw token. The token
// travels in the body, not in an HTTP authentication scheme, so the
// challenge is deliberately not Basic: a browser must not prompt for a
// password.
const thawChallenge = `ThawToken realm="mailcluster"`

// blockedIPResponse is the JSON form of mailcluster.BlockedIP; until is
// absent when the block never ends.
type blockedIPResponse struct {
	IP        string    `json:"ip"`
	Until     time.Time `json:"until,omitzero"`
	Offences  int       `json:"offences"`
	Reason    string    `json:"reason"`
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"createdAt"`
	Active    bool      `json:"active"`
}

type blockedIPListResponse struct {
	IPs []blockedIPResponse `json:"ips"`
}

// blockIPRequest is the body of POST /api/v1/screening/ips: until (RFC
// 3339, or "never") or durationSeconds, not both; neither means never.
type blockIPRequest struct {
	IP              string  `json:"ip"`
	Until           *string `json:"until"`
	DurationSeconds *int64  `json:"durationSeconds"`
	Reason          string  `json:"reason"`
}

// frozenAccountResponse is the JSON form of mailcluster.FrozenAccount,
// never with the token hash; tokenExpires is absent without a token.
type frozenAccountResponse struct {
	Address      string    `json:"address"`
	Since        time.Time `json:"since"`
	Reason       string    `json:"reason"`
	Source       string    `json:"source"`
	TokenExpires time.Time `json:"tokenExpires,omitzero"`
}

type frozenAccountListResponse struct {
	Accounts []frozenAccountResponse `json:"accounts"`
}

type freezeRequest struct {
	Address string `json:"address"`
	Reason  string `json:"reason"`
}

type thawRequest struct {
	Address string `json:"address"`
	Token   string `json:"token"`
}

// failureReport is the body of POST /internal/v1/screening/failures.
type failureReport struct {
	Failures []mailcluster.LoginFailure `json:"failures"`
}

func newBlockedIPResponse(b *mailcluster.BlockedIP, now time.Time) blockedIPResponse {
	return blockedIPResponse{IP: b.IP, Until: b.Until.UTC(), Offences: b.Offences, Reason: b.Reason, Source: b.Source,
		CreatedAt: b.CreatedAt.UTC(), Active: b.Active(now)}
}

func newFrozenAccountResponse(f *mailcluster.FrozenAccount) frozenAccountResponse {
	return frozenAccountResponse{Address: f.Address, Since: f.Since.UTC(), Reason: f.Reason, Source: f.Source,
		TokenExpires: f.TokenExpires.UTC()}
}

func registerScreeningRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/screening/ips", s.handleBlockedIPList)
	g.add(http.MethodPost, "/screening/ips", s.handleBlockIP)
	g.add(http.MethodDelete, "/screening/ips/:ip", s.handleUnblockIP)
	g.add(http.MethodGet, "/screening/accounts", s.handleFrozenAccountList)
	g.add(http.MethodPost, "/screening/accounts", s.handleFreezeAccount)
	g.add(http.MethodDelete, "/screening/accounts/:address", s.handleThawAccount)
	// The owner of a frozen account cannot log in: the thaw token is the
	// only credential, so the route has no Basic authentication.
	s.e.POST("/api/v1/screening/thaw", s.handleThawToken)
}

// handleBlockedIPList answers GET /api/v1/screening/ips, sorted by address.
func (s *Server) handleBlockedIPList(c echo.Context) error {
	bs, err := s.svc.ListBlockedIPs(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	out := blockedIPListResponse{IPs: make([]blockedIPResponse, 0, len(bs))}
	for i := range bs {
		out.IPs = append(out.IPs, newBlockedIPResponse(&bs[i], now))
	}
	slices.SortFunc(out.IPs, func(a, b blockedIPResponse) int { return cmp.Compare(a.IP, b.IP) })
	return c.JSON(http.StatusOK, out)
}

// handleBlockIP answers POST /api/v1/screening/ips with the new block.
func (s *Server) handleBlockIP(c echo.Context) error {
	var in blockIPRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	until, err := blockUntil(in, time.Now())
	if err != nil {
		return err
	}
	b, err := s.svc.BlockIP(c.Request().Context(), in.IP, until, in.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newBlockedIPResponse(b, time.Now()))
}

// blockUntil decodes the end of a block: the zero time means never.
func blockUntil(in blockIPRequest, now time.Time) (time.Time, error) {
	never := in.Until == nil || *in.Until == "" || strings.EqualFold(*in.Until, "never")
	switch {
	case in.DurationSeconds != nil && !never:
		return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID, "Give until or durationSeconds, not both.")
	case in.DurationSeconds != nil:
		if d := *in.DurationSeconds; d < 1 || d > maxBlockSeconds {
			return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID, "Member durationSeconds must be from 1 to %d.", maxBlockSeconds)
		}
		return now.Add(time.Duration(*in.DurationSeconds) * time.Second), nil
	case never:
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, *in.Until)
	if err != nil {
		return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID,
			`Member until must be an RFC 3339 time such as 2030-01-02T03:04:05Z, or "never".`)
	}
	return t, nil
}

// handleUnblockIP answers DELETE /api/v1/screening/ips/{ip}.
func (s *Server) handleUnblockIP(c echo.Context) error {
	if err := s.svc.UnblockIP(c.Request().Context(), pathParam(c, "ip")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleFrozenAccountList answers GET /api/v1/screening/accounts with the
// frozen accounts the caller may see, sorted by address.
func (s *Server) handleFrozenAccountList(c echo.Context) error {
	fs, err := s.svc.ListFrozenAccounts(c.Request().Context())
	if err != nil {
		return err
	}
	out := frozenAccountListResponse{Accounts: make([]frozenAccountResponse, 0, len(fs))}
	for i := range fs {
		out.Accounts = append(out.Accounts, newFrozenAccountResponse(&fs[i]))
	}
	slices.SortFunc(out.Accounts, func(a, b frozenAccountResponse) int { return cmp.Compare(a.Address, b.Address) })
	return c.JSON(http.StatusOK, out)
}

// handleFreezeAccount answers POST /api/v1/screening/accounts with the
// new screening record of the account.
func (s *Server) handleFreezeAccount(c echo.Context) error {
	var in freezeRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.svc.FreezeAccount(ctx, in.Address, in.Reason); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newFrozenAccountResponse(s.frozenRecord(c, in.Address, in.Reason)))
}

// frozenRecord reads back the record FreezeAccount wrote (the primary has
// applied its own write when FreezeAccount returns). Should it not be
// visible, the answer is built from the request.
func (s *Server) frozenRecord(c echo.Context, address, reason string) *mailcluster.FrozenAccount {
	if mailbox, domain, err := mailcluster.SplitAddress(address); err == nil {
		address = mailbox + "@" + domain
	}
	fs, err := s.svc.ListFrozenAccounts(c.Request().Context())
	if err == nil {
		for i := range fs {
			if fs[i].Address == address {
				return &fs[i]
			}
		}
	}
	s.log.Warn("frozen account not visible after freezing", "address", address, "error", err,
		"request_id", requestIDOf(c))
	return &mailcluster.FrozenAccount{Address: address, Since: time.Now(), Reason: reason, Source: "admin"}
}

// handleThawAccount answers DELETE /api/v1/screening/accounts/{address}.
func (s *Server) handleThawAccount(c echo.Context) error {
	if err := s.svc.ThawAccount(c.Request().Context(), pathParam(c, "address")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleThawToken answers POST /api/v1/screening/thaw: the owner of a
// frozen account thaws it with the token that was mailed to it. A wrong,
// used or expired token is 401 (and counts as a failed login of the
// client's address).
func (s *Server) handleThawToken(c echo.Context) error {
	c.Set(ctxChallenge, thawChallenge)
	var in thawRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if err := s.svc.RedeemThawToken(service.Anonymous(c.Request().Context()), in.Address, in.Token); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleInternalFailures answers POST /internal/v1/screening/failures:
// failed logins another node saw, counted by the primary.
func (s *Server) handleInternalFailures(c echo.Context) error {
	var r failureReport
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	if len(r.Failures) > maxFailuresPerReport {
		return mailcluster.Errorf(mailcluster.ETOOLARGE, "A report may hold at most %d failures.", maxFailuresPerReport)
	}
	if err := s.svc.ReportFailures(s.nodeContext(c), r.Failures); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
