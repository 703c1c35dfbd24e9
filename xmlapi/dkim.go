package xmlapi

import (
	"context"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleDKIMKeyCreate answers CreateDKIMKey with the domain's new key as
// <DKIMKey>: <Domain> and <Selector> are required; with <PrivateKey> (PEM)
// the key is imported, otherwise one of <Algorithm> (rsa-sha256, the
// default, or ed25519-sha256) is generated. It replaces the domain's key.
// The private key is never logged or answered (an echoed request has
// <PrivateKey> emptied, see redact).
func (h *Handler) handleDKIMKeyCreate(ctx context.Context, p params, result *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	selector, err := p.required("Selector")
	if err != nil {
		return err
	}
	alg, key := p.strOr("Algorithm", ""), p.strOr("PrivateKey", "")
	var k *mailcluster.DKIMKey
	switch {
	case key != "" && alg != "":
		return mailcluster.Errorf(mailcluster.EINVALID, "Give either Algorithm (to generate a key) or PrivateKey (to import one), not both.")
	case key != "":
		k, err = h.svc.ImportDKIMKey(ctx, domain, selector, key)
	default:
		k, err = h.svc.CreateDKIMKey(ctx, domain, selector, alg)
	}
	if err != nil {
		return err
	}
	addDKIMKey(result, k)
	return nil
}

// handleDKIMKeyGet answers GetDKIMKey with the <DKIMKey> of <Domain>
// (status 4 when it has none).
func (h *Handler) handleDKIMKeyGet(ctx context.Context, p params, result *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	k, err := h.svc.DKIMKey(ctx, domain)
	if err != nil {
		return err
	}
	addDKIMKey(result, k)
	return nil
}

// handleDKIMKeyDelete answers DeleteDKIMKey with <Result/>.
func (h *Handler) handleDKIMKeyDelete(ctx context.Context, p params, _ *etree.Element) error {
	domain, err := p.required("Domain")
	if err != nil {
		return err
	}
	return h.svc.DeleteDKIMKey(ctx, domain)
}

// addDKIMKey appends <DKIMKey domain selector algorithm created><DNSName/>
// <DNSValue/></DKIMKey>: the TXT record to publish, nothing of the
// private key.
func addDKIMKey(parent *etree.Element, k *mailcluster.DKIMKey) {
	e := parent.CreateElement("DKIMKey")
	e.CreateAttr("domain", k.Domain)
	e.CreateAttr("selector", k.Selector)
	e.CreateAttr("algorithm", k.Algorithm)
	e.CreateAttr("created", formatTime(k.Created))
	name, value := k.TXTRecord()
	addText(e, "DNSName", name)
	addText(e, "DNSValue", value)
}
