package schema

import (
	"strings"

	"mailcluster"
)

// ListSettingsFiles lists the ini file names present in a store.
func ListSettingsFiles(st mailcluster.Store) []string {
	var out []string
	after := ""
	for {
		kvs := st.List(PrefixSettings, after, 1)
		if len(kvs) == 0 {
			return out
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(kvs[0].Key, PrefixSettings), "/")
		out = append(out, name)
		after = PrefixSettings + name + "/\xff"
	}
}

// ReadSettingsFile returns one ini file from a store, ok false if absent.
func ReadSettingsFile(st mailcluster.Store, file string) (mailcluster.Sections, bool) {
	kvs := st.List(SettingsFilePrefix(file), "", 0)
	if len(kvs) == 0 {
		return nil, false
	}
	out := mailcluster.Sections{}
	for _, kv := range kvs {
		rest := strings.TrimPrefix(kv.Key, SettingsFilePrefix(file))
		sec, key, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		if out[sec] == nil {
			out[sec] = map[string]string{}
		}
		out[sec][key] = string(kv.Value)
	}
	return out, true
}
