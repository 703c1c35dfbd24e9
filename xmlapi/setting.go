package xmlapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/beevik/etree"

	"mailcluster"
)

// handleIniSettingsGet answers GetIniSettings: a whole ini file, one
// section of it (<Section>) or one key (<Section> and <Key>), as
// <IniSettings file><Section name><Key name>value</Key></Section></IniSettings>.
func (h *Handler) handleIniSettingsGet(ctx context.Context, p params, result *etree.Element) error {
	file := p.strOr("File", mailcluster.MainSettingsFile)
	section := p.strOr("Section", "")
	key := p.strOr("Key", "")
	ini := result.CreateElement("IniSettings")
	ini.CreateAttr("file", file)
	if key != "" {
		if section == "" {
			return missing("Section")
		}
		v, err := h.svc.GetSetting(ctx, file, section, key)
		if err != nil {
			return err
		}
		addSection(ini, section, map[string]string{key: v})
		return nil
	}
	f, err := h.svc.SettingsFile(ctx, file)
	if err != nil {
		return err
	}
	if section != "" {
		keys, ok := f.Sections[section]
		if !ok {
			return mailcluster.Errorf(mailcluster.ENOTFOUND, "Section [%s] does not exist in %s.", clip(section), file)
		}
		addSection(ini, section, keys)
		return nil
	}
	names := make([]string, 0, len(f.Sections))
	for n := range f.Sections {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		addSection(ini, n, f.Sections[n])
	}
	return nil
}

// addSection appends <Section name><Key name>value</Key>...</Section>, keys sorted.
func addSection(parent *etree.Element, name string, keys map[string]string) {
	se := parent.CreateElement("Section")
	se.CreateAttr("name", name)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		ke := se.CreateElement("Key")
		ke.CreateAttr("name", k)
		ke.SetText(keys[k])
	}
}

// handleIniSettingsUpdate answers UpdateIniSettings: every <Section name>
// <Key name>value</Key> is set and every <Key name delete="Yes"/> deleted,
// all in one transaction of the service.
func (h *Handler) handleIniSettingsUpdate(ctx context.Context, p params, _ *etree.Element) error {
	file := p.strOr("File", mailcluster.MainSettingsFile)
	sections := p.el.SelectElements("Section")
	if len(sections) == 0 {
		return missing("Section")
	}
	changes := map[string]map[string]*string{}
	for _, se := range sections {
		sec := strings.TrimSpace(se.SelectAttrValue("name", ""))
		if sec == "" {
			return missing("Section/@name")
		}
		keys := se.SelectElements("Key")
		if len(keys) == 0 {
			return missing(fmt.Sprintf("Section[@name='%s']/Key", clip(sec)))
		}
		if changes[sec] == nil {
			changes[sec] = map[string]*string{}
		}
		for _, ke := range keys {
			key := strings.TrimSpace(ke.SelectAttrValue("name", ""))
			if key == "" {
				return missing(fmt.Sprintf("Section[@name='%s']/Key/@name", clip(sec)))
			}
			if _, dup := changes[sec][key]; dup {
				return mailcluster.Errorf(mailcluster.EINVALID, "Key %s of section [%s] is given twice.", clip(key), clip(sec))
			}
			del := false
			if a := ke.SelectAttr("delete"); a != nil {
				var err error
				if del, err = parseFlag("Key/@delete", a.Value); err != nil {
					return err
				}
			}
			if del {
				changes[sec][key] = nil
				continue
			}
			v := strings.TrimSpace(textOf(ke))
			changes[sec][key] = &v
		}
	}
	return h.svc.UpdateSettings(ctx, map[string]map[string]map[string]*string{file: changes})
}
