package service

import (
	"context"
	"strconv"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

func (s *Service) stringSetting(section, key, def string) string {
	if kv, ok := s.store.Get(schema.Setting(mailcluster.MainSettingsFile, section, key)); ok && len(kv.Value) > 0 {
		return string(kv.Value)
	}
	return def
}

func (s *Service) intSetting(section, key string, def int) int {
	if n, err := strconv.Atoi(s.stringSetting(section, key, "")); err == nil {
		return n
	}
	return def
}

// setting returns one value of the main settings file, or def when unset.
// It reads the local snapshot and needs no authorization (for the node's
// own components).
func (s *Service) setting(section, key, def string) string { return s.stringSetting(section, key, def) }

// SettingsFiles lists the names of the ini files.
func (s *Service) SettingsFiles(ctx context.Context) ([]string, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	return schema.ListSettingsFiles(s.store), nil
}

// SettingsFile returns one ini file. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) SettingsFile(ctx context.Context, file string) (*mailcluster.SettingsFile, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	if err := mailcluster.ValidateSettingsFileName(file); err != nil {
		return nil, err
	}
	secs, ok := schema.ReadSettingsFile(s.store, file)
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Settings file %s does not exist.", file)
	}
	return &mailcluster.SettingsFile{Name: file, Sections: secs}, nil
}

// ReplaceSettingsFile makes file hold exactly secs, in one transaction
// (keys not in secs are deleted; an empty secs deletes the file).
func (s *Service) ReplaceSettingsFile(ctx context.Context, file string, secs mailcluster.Sections) (*mailcluster.SettingsFile, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := mailcluster.ValidateSettingsFileName(file); err != nil {
		return nil, err
	}
	for sec, keys := range secs {
		for k, v := range keys {
			if err := mailcluster.ValidateSetting(file, sec, k, v); err != nil {
				return nil, err
			}
			if err := s.clusterRule(file, sec, k, v); err != nil {
				return nil, err
			}
		}
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	var ops []mailcluster.Op
	for _, kv := range s.store.List(schema.SettingsFilePrefix(file), "", 0) {
		sec, key, _ := strings.Cut(strings.TrimPrefix(kv.Key, schema.SettingsFilePrefix(file)), "/")
		if v, ok := secs[sec][key]; ok {
			if v != string(kv.Value) {
				ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: []byte(v), Index: kv.ModifyIndex})
			}
			continue
		}
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
	}
	for sec, keys := range secs {
		for k, v := range keys {
			if _, ok := s.store.Get(schema.Setting(file, sec, k)); !ok {
				ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Setting(file, sec, k), Value: []byte(v), Index: 0})
			}
		}
	}
	if len(ops) > 0 {
		if err := s.txn(ctx, ops); err != nil {
			return nil, conflictAs(err, "Settings file %s was changed concurrently; try again.", file)
		}
		s.log.Info("settings file replaced", "file", file, "changes", len(ops))
	}
	out, ok := schema.ReadSettingsFile(s.store, file)
	if !ok {
		out = mailcluster.Sections{}
	}
	return &mailcluster.SettingsFile{Name: file, Sections: out}, nil
}

// UpdateSettings sets (or, for a nil value, deletes) the given keys of
// several files in one transaction. Errors: EINVALID, EFORBIDDEN, EREADONLY.
func (s *Service) UpdateSettings(ctx context.Context, changes map[string]map[string]map[string]*string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	var ops []mailcluster.Op
	for file, secs := range changes {
		for sec, keys := range secs {
			for k, v := range keys {
				if v == nil {
					// A delete needs valid names only, not a valid value.
					if err := mailcluster.ValidateSetting(file, sec, k, ""); err != nil && !isRuleError(file, sec, k) {
						return err
					}
				} else if err := mailcluster.ValidateSetting(file, sec, k, *v); err != nil {
					return err
				} else if err := s.clusterRule(file, sec, k, *v); err != nil {
					return err
				}
				val := ""
				if v != nil {
					val = *v
				}
				key := schema.Setting(file, sec, k)
				if v == nil {
					ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
				} else {
					ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: []byte(val)})
				}
			}
		}
	}
	if len(ops) == 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "No settings to change were given.")
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if err := s.txn(ctx, ops); err != nil {
		return err
	}
	s.log.Info("settings updated", "changes", len(ops))
	return nil
}

// clusterRule refuses settings that a cluster cannot honour.
func (s *Service) clusterRule(file, section, key, value string) error {
	if s.opts.Mode != mailcluster.ModeCluster || file != mailcluster.MainSettingsFile {
		return nil
	}
	if section == mailcluster.SectionAttachmentLinking && key == mailcluster.KeyEnabled {
		if on, _ := mailcluster.ParseFlag(value); on {
			return mailcluster.Errorf(mailcluster.EINVALID, "Attachment linking cannot be used in a cluster (attachments extracted to links live on one node's disk); [AttachmentLinking] Enabled must stay No.")
		}
	}
	return nil
}

// GetSetting returns one value. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) GetSetting(ctx context.Context, file, section, key string) (string, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return "", err
	}
	if err := s.checkServing(); err != nil {
		return "", err
	}
	if err := mailcluster.ValidateSetting(file, section, key, ""); err != nil && mailcluster.ErrorCode(err) == mailcluster.EINVALID && !isRuleError(file, section, key) {
		return "", err
	}
	kv, ok := s.store.Get(schema.Setting(file, section, key))
	if !ok {
		return "", mailcluster.Errorf(mailcluster.ENOTFOUND, "Setting [%s] %s does not exist in %s.", section, key, file)
	}
	return string(kv.Value), nil
}

// isRuleError tells whether the names are valid (so that an EINVALID from
// ValidateSetting with an empty value came from a value rule).
func isRuleError(file, section, key string) bool {
	return mailcluster.ValidSettingNames(file, section, key)
}

// SetSetting writes one value. Errors: EINVALID, EFORBIDDEN, EREADONLY.
func (s *Service) SetSetting(ctx context.Context, file, section, key, value string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	return s.UpdateSettings(ctx, map[string]map[string]map[string]*string{file: {section: {key: &value}}})
}

// DeleteSetting removes one key. Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY.
func (s *Service) DeleteSetting(ctx context.Context, file, section, key string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if _, err := s.GetSetting(ctx, file, section, key); err != nil {
		return err
	}
	kv, _ := s.store.Get(schema.Setting(file, section, key))
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Setting [%s] %s was changed concurrently; try again.", section, key)
	}
	return nil
}
