package xmlapi

import (
	"context"

	"github.com/beevik/etree"
)

// handleVersionInfo answers GetVersionInfo: the version, the node's name,
// mode and role, and the primary when one is known.
func (h *Handler) handleVersionInfo(ctx context.Context, _ params, result *etree.Element) error {
	info, err := h.svc.NodeInfo(ctx)
	if err != nil {
		return err
	}
	addText(result, "Version", info.Version)
	addText(result, "Node", info.Name)
	addText(result, "Mode", string(info.Mode))
	addText(result, "Role", string(info.Role))
	if info.Primary != nil {
		p := result.CreateElement("Primary")
		p.CreateAttr("name", info.Primary.Name)
		p.CreateAttr("url", info.Primary.APIURL)
	}
	return nil
}
