package mailcluster

import (
	"crypto/rand"
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

// GeneratePassword returns a random 26-character password (130 bits).
func GeneratePassword() string { return rand.Text() }
