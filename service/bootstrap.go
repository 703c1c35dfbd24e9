package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// Bootstrap initialises an empty replicated state: default settings, the
// admin's domain and a global admin account (with its entry in the
// global-administrator index), in one transaction. On a state that is
// already initialised it only builds the global-administrator index if
// the state has none yet (buildAdminIndex), and returns "".
// It returns the generated password when cfg.AdminPassword was empty; the
// caller shows it once, and only its bcrypt hash is stored.
func (s *Service) Bootstrap(ctx context.Context, cfg mailcluster.BootstrapConfig) (generated string, err error) {
	if err := requireSystem(ctx); err != nil {
		return "", err
	}
	if _, ok := s.store.Get(schema.KeyBootstrap); ok {
		if err := s.buildAdminIndex(ctx); err != nil {
			// The last-administrator rule scans every account until the
			// index is built; the next primary tries again.
			s.log.Warn("the global-administrator index is not built yet", "err", err)
		}
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
		mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GlobalAdmin(mailbox + "@" + domain), Value: []byte("{}")},
		mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.KeyAdminIndexBuilt, Value: []byte(now.Format("2006-01-02T15:04:05Z"))},
		mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.KeyBootstrap, Value: []byte(now.Format("2006-01-02T15:04:05Z"))})
	if _, err := s.store.Txn(ctx, ops); err != nil {
		return "", err
	}
	s.log.Info("state initialised", "admin", mailbox+"@"+domain)
	return generated, nil
}

// adminIndexBatch bounds the operations of one transaction that builds the
// global-administrator index.
const adminIndexBatch = 100

// buildAdminIndex builds the global-administrator index of a state written
// before it existed, once: in transactions of at most adminIndexBatch
// operations it sets the entry of every account with global rights (each
// with a check that the account did not change since it was read) and
// drops entries of accounts that have none, then sets
// schema.KeyAdminIndexBuilt. Account writes keep the index from then on.
// Until the marker is set, the last-administrator rule scans every
// account, so a build cut short (a lost election) is only resumed by the
// next primary, never trusted half done.
func (s *Service) buildAdminIndex(ctx context.Context) error {
	if _, ok := s.store.Get(schema.KeyAdminIndexBuilt); ok {
		return nil
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	var ops []mailcluster.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.store.Txn(ctx, ops)
		ops = ops[:0]
		return err
	}
	// A batch that loses a race with an account write is read again, a
	// bounded number of times.
	const attempts = 5
	after := ""
	for {
		var batch []mailcluster.KV
		var err error
		for try := 1; ; try++ {
			batch = s.store.List(schema.PrefixAccounts, after, adminIndexBatch/2)
			for _, kv := range batch {
				var a mailcluster.Account
				if json.Unmarshal(kv.Value, &a) != nil || a.AdminRights != mailcluster.AdminGlobal {
					continue
				}
				if _, ok := s.store.Get(schema.GlobalAdmin(a.Address())); ok {
					continue
				}
				ops = append(ops,
					mailcluster.Op{Verb: mailcluster.OpCheck, Key: kv.Key, Index: kv.ModifyIndex},
					mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.GlobalAdmin(a.Address()), Value: []byte("{}")})
			}
			if err = flush(); mailcluster.ErrorCode(err) != mailcluster.ECONFLICT || try == attempts {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("service: build the global-administrator index: %w", err)
		}
		if len(batch) < adminIndexBatch/2 {
			break
		}
		after = batch[len(batch)-1].Key
	}
	for _, kv := range s.store.List(schema.PrefixGlobalAdmins, "", 0) {
		address := strings.TrimPrefix(kv.Key, schema.PrefixGlobalAdmins)
		if mailbox, domain, err := mailcluster.SplitAddress(address); err == nil {
			// The account must still be what was read (or still be
			// missing), or a promotion made meanwhile would lose its entry.
			acc, ok := s.store.Get(schema.Account(domain, mailbox))
			var a mailcluster.Account
			if ok && json.Unmarshal(acc.Value, &a) == nil && a.AdminRights == mailcluster.AdminGlobal {
				continue
			}
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCheck, Key: schema.Account(domain, mailbox), Index: acc.ModifyIndex})
		}
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
		if len(ops) >= adminIndexBatch-1 {
			if err := flush(); err != nil {
				return fmt.Errorf("service: build the global-administrator index: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("service: build the global-administrator index: %w", err)
	}
	if _, err := s.store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.KeyAdminIndexBuilt,
		Value: []byte(s.now().Format("2006-01-02T15:04:05Z"))}}); err != nil {
		return fmt.Errorf("service: mark the global-administrator index built: %w", err)
	}
	s.log.Info("global-administrator index built")
	return nil
}
