package service

import (
	"context"
	"encoding/json"

	"mailcluster/schema"

	"mailcluster"
)

// Bootstrap initialises an empty replicated state: default settings, the
// admin's domain and a global admin account, in one transaction. On a
// state that is already initialised it does nothing and returns "".
// It returns the generated password when cfg.AdminPassword was empty; the
// caller shows it once, and only its bcrypt hash is stored.
func (s *Service) Bootstrap(ctx context.Context, cfg mailcluster.BootstrapConfig) (generated string, err error) {
	if err := requireSystem(ctx); err != nil {
		return "", err
	}
	if _, ok := s.store.Get(schema.KeyBootstrap); ok {
		return "", nil
	}
	if err := s.checkWritable(); err != nil {
		return "", err
	}
	mailbox, domain, err := mailcluster.SplitAddress(cfg.AdminAddress)
	if err != nil {
		return "", err
	}
	password := cfg.AdminPassword
	if password == "" {
		password = mailcluster.GeneratePassword()
		generated = password
	}
	base := cfg.DataDir
	if cfg.SharedPath != "" {
		base = cfg.SharedPath
	}
	var ops []mailcluster.Op
	for sec, keys := range mailcluster.DefaultSettings(base) {
		for k, v := range keys {
			if err := mailcluster.ValidateSetting(mailcluster.MainSettingsFile, sec, k, v); err != nil {
				return "", err
			}
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Setting(mailcluster.MainSettingsFile, sec, k), Value: []byte(v)})
		}
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return "", err
	}
	now := s.now()
	if _, ok := s.store.Get(schema.Domain(domain)); !ok {
		d, _ := json.Marshal(&mailcluster.Domain{Name: domain, Description: "Created at first start", CreatedAt: now, UpdatedAt: now})
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Domain(domain), Value: d})
	}
	root := mailcluster.DefaultSettings(base)[mailcluster.SectionDirectories][mailcluster.KeyMailboxRoot]
	a, _ := json.Marshal(&mailcluster.Account{Domain: domain, Mailbox: mailbox, FullName: "Administrator", PasswordHash: hash,
		MailboxPath: mailcluster.ExpandMailboxPath(mailcluster.DefaultMailboxPathTemplate, root, domain, mailbox),
		AdminRights: mailcluster.AdminGlobal, CreatedAt: now, UpdatedAt: now})
	ops = append(ops,
		mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account(domain, mailbox), Value: a},
		mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.KeyBootstrap, Value: []byte(now.Format("2006-01-02T15:04:05Z"))})
	if _, err := s.store.Txn(ctx, ops); err != nil {
		return "", err
	}
	s.log.Info("state initialised", "admin", mailbox+"@"+domain)
	return generated, nil
}
