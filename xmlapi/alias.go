package xmlapi

import (
	"context"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleAliasCreate answers CreateAlias with the new alias: <Domain>,
// <Alias> (a local part, or the full address) and <Target> (the address
// of a local account).
func (h *Handler) handleAliasCreate(ctx context.Context, p params, result *etree.Element) error {
	return aliasWrite(ctx, p, result, h.svc.CreateAlias)
}

// handleAliasUpdate answers UpdateAlias, which points an alias at another
// <Target>, with the changed alias.
func (h *Handler) handleAliasUpdate(ctx context.Context, p params, result *etree.Element) error {
	return aliasWrite(ctx, p, result, h.svc.UpdateAlias)
}

// aliasWrite decodes the alias and the <Target> of a create or an update,
// makes it with do and answers the alias.
func aliasWrite(ctx context.Context, p params, result *etree.Element,
	do func(ctx context.Context, domain, name, target string) (*mailcluster.Alias, error)) error {
	domain, name, err := p.domainObject("Alias")
	if err != nil {
		return err
	}
	target, err := p.required("Target")
	if err != nil {
		return err
	}
	a, err := do(ctx, domain, name, target)
	if err != nil {
		return err
	}
	addAlias(result, a)
	return nil
}

// handleAliasDelete answers DeleteAlias with <Result/>.
func (h *Handler) handleAliasDelete(ctx context.Context, p params, _ *etree.Element) error {
	domain, name, err := p.domainObject("Alias")
	if err != nil {
		return err
	}
	return h.svc.DeleteAlias(ctx, domain, name)
}

// handleAliasList answers GetAliasList: <Aliases count="N"> with an
// <Alias> per alias of <Domain>, in name order.
func (h *Handler) handleAliasList(ctx context.Context, p params, result *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	return addPaged(result, "Aliases", func(cursor string, limit int) ([]*mailcluster.Alias, string, error) {
		return h.svc.FindAliases(ctx, domain, cursor, limit)
	}, addAlias)
}

// addAlias appends <Alias id="name@domain" name=".." domain=".."
// target=".." created=".." updated=".."/>.
func addAlias(parent *etree.Element, a *mailcluster.Alias) {
	e := parent.CreateElement("Alias")
	e.CreateAttr("id", a.Address())
	e.CreateAttr("name", a.Name)
	e.CreateAttr("domain", a.Domain)
	e.CreateAttr("target", a.Target)
	e.CreateAttr("created", formatTime(a.CreatedAt))
	e.CreateAttr("updated", formatTime(a.UpdatedAt))
}
