package mailcluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
)

// BootstrapConfig is what a first start needs.
type BootstrapConfig struct {
	AdminAddress  string // e.g. admin@localhost
	AdminPassword string // "" generates one
	DataDir       string // absolute; default directories are placed under it
	// SharedPath, when set (a cluster), holds the mailboxes, public
	// folders, lock files and certificates instead of DataDir.
	SharedPath string
}

// DefaultSettings returns the main ini file's defaults for a node whose
// data lives in dataDir.
func DefaultSettings(dataDir string) Sections {
	return Sections{
		SectionDirectories: {
			KeyMailboxRoot:   filepath.Join(dataDir, "mailboxes"),
			KeyLockFiles:     filepath.Join(dataDir, "locks"),
			KeyPEM:           filepath.Join(dataDir, "pem"),
			KeyPublicFolders: filepath.Join(dataDir, "public"),
		},
		SectionNewAccounts:       {KeyMailboxPath: DefaultMailboxPathTemplate},
		SectionPasswords:         {KeyMinLength: "8"},
		SectionAttachmentLinking: {KeyEnabled: "No"},
	}
}

// Bootstrap initialises an empty replicated state: default settings, the
// admin's domain and a global admin account, in one transaction. On a
// state that is already initialised it does nothing and returns "".
// It returns the generated password when cfg.AdminPassword was empty; the
// caller shows it once, and only its bcrypt hash is stored.
func (s *Service) Bootstrap(ctx context.Context, cfg BootstrapConfig) (generated string, err error) {
	if _, ok := s.store.Get(KeyBootstrap); ok {
		return "", nil
	}
	if err := s.checkWritable(); err != nil {
		return "", err
	}
	mailbox, domain, err := SplitAddress(cfg.AdminAddress)
	if err != nil {
		return "", err
	}
	password := cfg.AdminPassword
	if password == "" {
		password = GeneratePassword()
		generated = password
	}
	base := cfg.DataDir
	if cfg.SharedPath != "" {
		base = cfg.SharedPath
	}
	var ops []Op
	for sec, keys := range DefaultSettings(base) {
		for k, v := range keys {
			if err := ValidateSetting(MainSettingsFile, sec, k, v); err != nil {
				return "", err
			}
			ops = append(ops, Op{Verb: OpCAS, Key: settingKey(MainSettingsFile, sec, k), Value: []byte(v)})
		}
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return "", err
	}
	now := s.now()
	if _, ok := s.store.Get(domainKey(domain)); !ok {
		d, _ := json.Marshal(&Domain{Name: domain, Description: "Created at first start", CreatedAt: now, UpdatedAt: now})
		ops = append(ops, Op{Verb: OpCAS, Key: domainKey(domain), Value: d})
	}
	root := DefaultSettings(base)[SectionDirectories][KeyMailboxRoot]
	a, _ := json.Marshal(&Account{Domain: domain, Mailbox: mailbox, FullName: "Administrator", PasswordHash: hash,
		MailboxPath: ExpandMailboxPath(DefaultMailboxPathTemplate, root, domain, mailbox),
		AdminRights: AdminGlobal, CreatedAt: now, UpdatedAt: now})
	ops = append(ops,
		Op{Verb: OpSet, Key: accountKey(domain, mailbox), Value: a},
		Op{Verb: OpCAS, Key: KeyBootstrap, Value: []byte(now.Format("2006-01-02T15:04:05Z"))})
	if _, err := s.store.Txn(ctx, ops); err != nil {
		return "", err
	}
	s.log.Info("state initialised", "admin", mailbox+"@"+domain)
	return generated, nil
}

// GeneratePassword returns a random 26-character password (130 bits).
func GeneratePassword() string { return rand.Text() }
