package xmlapi

import (
	"cmp"
	"context"
	"slices"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleCertificateImport answers ImportCertificate with the stored
// certificate as <Certificate>. <Name> is required; <Certificate> (the PEM
// chain, leaf first) and <PrivateKey> (PEM) are checked by the service;
// <Default> is an optional flag. The key is never logged or answered (an
// echoed request has <PrivateKey> emptied, see redact).
func (h *Handler) handleCertificateImport(ctx context.Context, p params, result *etree.Element) error {
	name, err := p.required("Name")
	if err != nil {
		return err
	}
	makeDefault, err := p.flag("Default")
	if err != nil {
		return err
	}
	chain, key := p.strOr("Certificate", ""), p.strOr("PrivateKey", "")
	c, err := h.svc.ImportCertificate(ctx, name, chain, key, makeDefault != nil && *makeDefault)
	if err != nil {
		return err
	}
	addCertificate(result, c)
	return nil
}

// handleCertificateList answers GetCertificates:
// <Certificates><Certificate .../>...</Certificates>, sorted by name; with
// <Name> only that certificate (status 4 when it does not exist).
func (h *Handler) handleCertificateList(ctx context.Context, p params, result *etree.Element) error {
	var cs []*mailcluster.Certificate
	if name := p.strOr("Name", ""); name != "" {
		c, err := h.svc.Certificate(ctx, name)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	} else {
		var err error
		if cs, err = h.svc.Certificates(ctx); err != nil {
			return err
		}
	}
	slices.SortFunc(cs, func(a, b *mailcluster.Certificate) int { return cmp.Compare(a.Name, b.Name) })
	list := result.CreateElement("Certificates")
	for _, c := range cs {
		addCertificate(list, c)
	}
	return nil
}

// handleCertificateDelete answers DeleteCertificate with <Result/>.
func (h *Handler) handleCertificateDelete(ctx context.Context, p params, _ *etree.Element) error {
	name, err := p.required("Name")
	if err != nil {
		return err
	}
	return h.svc.DeleteCertificate(ctx, name)
}

// addCertificate appends <Certificate name default fingerprint notAfter
// notBefore><Subject/><Issuer/><SANs><SAN/>...</SANs></Certificate>. It
// writes neither the chain nor anything of the key.
func addCertificate(parent *etree.Element, c *mailcluster.Certificate) {
	e := parent.CreateElement("Certificate")
	e.CreateAttr("name", c.Name)
	e.CreateAttr("default", mailcluster.FormatFlag(c.Default))
	e.CreateAttr("fingerprint", c.Fingerprint)
	e.CreateAttr("notAfter", formatTime(c.NotAfter))
	e.CreateAttr("notBefore", formatTime(c.NotBefore))
	addText(e, "Subject", c.Subject)
	addText(e, "Issuer", c.Issuer)
	sans := e.CreateElement("SANs")
	for _, s := range c.SANs {
		addText(sans, "SAN", s)
	}
}
