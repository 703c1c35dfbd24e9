package migrate

import (
	"context"
	"fmt"
	"sort"

	"mailcluster"
	"mailcluster/client"
)

// Primary is what a run needs of the primary's REST API. Every write is
// refused by a node that is not the primary; Run checks the role first.
type Primary interface {
	// BaseURL names the node in messages.
	BaseURL() string
	// Node returns the node's role and the primary it knows.
	Node(ctx context.Context) (*mailcluster.NodeInfo, error)
	// Settings returns one settings file.
	Settings(ctx context.Context, file string) (*mailcluster.SettingsFile, error)
	// PutSetting sets one key.
	PutSetting(ctx context.Context, file, section, key, value string) error
	// DeleteSetting removes one key.
	DeleteSetting(ctx context.Context, file, section, key string) error
	// Domains lists every domain.
	Domains(ctx context.Context) ([]client.Domain, error)
	// AllAccounts lists every account of a domain.
	AllAccounts(ctx context.Context, domain string) ([]client.Account, error)
	// PatchAccount changes an account (here only its mailboxPath).
	PatchAccount(ctx context.Context, domain, mailbox string, p client.AccountPatch) (*client.Account, error)
}

var _ Primary = (*client.Client)(nil)

func (m *Migrator) checkPrimary(ctx context.Context) error {
	n, err := m.api.Node(ctx)
	if err != nil {
		return err
	}
	if n.Role == mailcluster.RolePrimary {
		return nil
	}
	if n.Primary != nil && n.Primary.APIURL != "" {
		return fmt.Errorf("node %s at %s is %s, not the primary: the primary is %s; run again with --url %s",
			n.Name, m.api.BaseURL(), n.Role, n.Primary.Name, n.Primary.APIURL)
	}
	return fmt.Errorf("node %s at %s is %s and no primary is known; wait for one to be elected and run again with --url set to it",
		n.Name, m.api.BaseURL(), n.Role)
}

func (m *Migrator) readSettings(ctx context.Context) (mailcluster.Sections, error) {
	f, err := m.api.Settings(ctx, mailcluster.MainSettingsFile)
	if err != nil {
		return nil, fmt.Errorf("read the server settings: %w", err)
	}
	return f.Sections, nil
}

func settingOr(s mailcluster.Sections, section, key, def string) string {
	if v := s[section][key]; v != "" {
		return v
	}
	return def
}

func (m *Migrator) putSetting(ctx context.Context, section, key, value string) error {
	if err := m.api.PutSetting(ctx, mailcluster.MainSettingsFile, section, key, value); err != nil {
		return fmt.Errorf("set [%s] %s: %w", section, key, err)
	}
	return nil
}

// deleteSetting removes a key; one that is not set is no error.
func (m *Migrator) deleteSetting(ctx context.Context, section, key string) error {
	err := m.api.DeleteSetting(ctx, mailcluster.MainSettingsFile, section, key)
	if err == nil {
		return nil
	}
	if settings, rerr := m.readSettings(ctx); rerr == nil {
		if _, ok := settings[section][key]; !ok {
			return nil
		}
	}
	return fmt.Errorf("remove [%s] %s: %w", section, key, err)
}

func (m *Migrator) patchPath(ctx context.Context, a client.Account, path string) error {
	if _, err := m.api.PatchAccount(ctx, a.Domain, a.Mailbox, client.AccountPatch{MailboxPath: &path}); err != nil {
		return fmt.Errorf("change the mailbox path of %s: %w", a.Address, err)
	}
	return nil
}

// listAccounts returns every account of every domain, by address.
func (m *Migrator) listAccounts(ctx context.Context) ([]client.Account, error) {
	ds, err := m.api.Domains(ctx)
	if err != nil {
		return nil, err
	}
	var out []client.Account
	for _, d := range ds {
		as, err := m.api.AllAccounts(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}
