package xmlapi

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// maxBlockMinutes bounds <Minutes> of BlockIP (ten years); a longer block
// is what "never" is for.
const maxBlockMinutes = 10 * 365 * 24 * 60

// handleScreeningGet answers GetDynamicScreening:
// <DynamicScreening><BlockedIPs><IP .../>...</BlockedIPs><FrozenAccounts><Account .../>...</FrozenAccounts></DynamicScreening>.
// <Get> selects the lists: <BlockedIPs/>, <FrozenAccounts/> or <All/>
// (the default when <Get> is absent). Both lists are sorted by address.
func (h *Handler) handleScreeningGet(ctx context.Context, p params, result *etree.Element) error {
	get := p.find("Get")
	all := get == nil || get.SelectElement("All") != nil
	ds := result.CreateElement("DynamicScreening")
	if all || get.SelectElement("BlockedIPs") != nil {
		bs, err := h.svc.ListBlockedIPs(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(bs, func(a, b mailcluster.BlockedIP) int { return cmp.Compare(a.IP, b.IP) })
		list := ds.CreateElement("BlockedIPs")
		now := time.Now()
		for i := range bs {
			addBlockedIP(list, &bs[i], now)
		}
	}
	if all || get.SelectElement("FrozenAccounts") != nil {
		fs, err := h.svc.ListFrozenAccounts(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(fs, func(a, b mailcluster.FrozenAccount) int { return cmp.Compare(a.Address, b.Address) })
		list := ds.CreateElement("FrozenAccounts")
		for i := range fs {
			addFrozenAccount(list, &fs[i])
		}
	}
	return nil
}

// addBlockedIP appends <IP address until offences source created
// active>reason</IP>; until is absent when the block never ends.
func addBlockedIP(parent *etree.Element, b *mailcluster.BlockedIP, now time.Time) {
	e := parent.CreateElement("IP")
	e.CreateAttr("address", b.IP)
	if !b.Until.IsZero() {
		e.CreateAttr("until", formatTime(b.Until))
	}
	e.CreateAttr("offences", strconv.Itoa(b.Offences))
	e.CreateAttr("source", b.Source)
	e.CreateAttr("created", formatTime(b.CreatedAt))
	e.CreateAttr("active", mailcluster.FormatFlag(b.Active(now)))
	e.SetText(b.Reason)
}

// addFrozenAccount appends <Account address since source
// tokenExpires>reason</Account>; tokenExpires is absent without a thaw
// token. The token hash is never written.
func addFrozenAccount(parent *etree.Element, f *mailcluster.FrozenAccount) {
	e := parent.CreateElement("Account")
	e.CreateAttr("address", f.Address)
	e.CreateAttr("since", formatTime(f.Since))
	e.CreateAttr("source", f.Source)
	if !f.TokenExpires.IsZero() {
		e.CreateAttr("tokenExpires", formatTime(f.TokenExpires))
	}
	e.SetText(f.Reason)
}

// handleBlockIP answers BlockIP with the new block as <IP>. <Until> (RFC
// 3339, or "never") and <Minutes> are alternatives; neither means never.
func (h *Handler) handleBlockIP(ctx context.Context, p params, result *etree.Element) error {
	ip, err := p.required("IP")
	if err != nil {
		return err
	}
	until, err := blockUntil(p, time.Now())
	if err != nil {
		return err
	}
	b, err := h.svc.BlockIP(ctx, ip, until, p.strOr("Reason", ""))
	if err != nil {
		return err
	}
	addBlockedIP(result, b, time.Now())
	return nil
}

// blockUntil decodes <Until> or <Minutes>: the zero time means never.
func blockUntil(p params, now time.Time) (time.Time, error) {
	minutes, err := p.int("Minutes")
	if err != nil {
		return time.Time{}, err
	}
	until := p.strOr("Until", "")
	never := until == "" || strings.EqualFold(until, "never")
	switch {
	case minutes != nil && !never:
		return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID, "Give Until or Minutes, not both.")
	case minutes != nil:
		if *minutes < 1 || *minutes > maxBlockMinutes {
			return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID, "Parameter Minutes must be from 1 to %d.", maxBlockMinutes)
		}
		return now.Add(time.Duration(*minutes) * time.Minute), nil
	case never:
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, until)
	if err != nil {
		return time.Time{}, mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter Until: %q is not an RFC 3339 time such as 2030-01-02T03:04:05Z, or Never.", clip(until))
	}
	return t, nil
}

// handleUnblockIP answers UnblockIP with <Result/>.
func (h *Handler) handleUnblockIP(ctx context.Context, p params, _ *etree.Element) error {
	ip, err := p.required("IP")
	if err != nil {
		return err
	}
	return h.svc.UnblockIP(ctx, ip)
}

// handleFreezeAccount answers FreezeAccount with the account's new
// screening record as <Account>.
func (h *Handler) handleFreezeAccount(ctx context.Context, p params, result *etree.Element) error {
	address, err := screenedAddress(p)
	if err != nil {
		return err
	}
	reason := p.strOr("Reason", "")
	if err := h.svc.FreezeAccount(ctx, address, reason); err != nil {
		return err
	}
	addFrozenAccount(result, h.frozenRecord(ctx, address, reason))
	return nil
}

// frozenRecord reads back the record FreezeAccount wrote (the primary has
// applied its own write when FreezeAccount returns). Should it not be
// visible, the answer is built from the request.
func (h *Handler) frozenRecord(ctx context.Context, address, reason string) *mailcluster.FrozenAccount {
	if mailbox, domain, err := mailcluster.SplitAddress(address); err == nil {
		address = mailbox + "@" + domain
	}
	fs, err := h.svc.ListFrozenAccounts(ctx)
	if err == nil {
		for i := range fs {
			if fs[i].Address == address {
				return &fs[i]
			}
		}
	}
	h.log.Warn("xmlapi: frozen account not visible after freezing", "address", address, "err", err)
	return &mailcluster.FrozenAccount{Address: address, Since: time.Now(), Reason: reason, Source: "admin"}
}

// handleThawAccount answers ThawAccount with <Result/>.
func (h *Handler) handleThawAccount(ctx context.Context, p params, _ *etree.Element) error {
	address, err := screenedAddress(p)
	if err != nil {
		return err
	}
	return h.svc.ThawAccount(ctx, address)
}

// screenedAddress returns <Address>, or <Mailbox>@<Domain> when it is
// absent.
func screenedAddress(p params) (string, error) {
	if a := p.strOr("Address", ""); a != "" {
		return a, nil
	}
	if !p.has("Domain") && !p.has("Mailbox") {
		return "", missing("Address (or Domain and Mailbox)")
	}
	domain, mailbox, err := accountName(p)
	if err != nil {
		return "", err
	}
	return mailbox + "@" + domain, nil
}
