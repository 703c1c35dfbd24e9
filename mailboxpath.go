package mailcluster

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Mailbox roots. Every account's mailbox directory must lie under
// [Directories] MailboxRoot, or under [Directories] MailboxRootNext while a
// migration (migrate-mailboxes) moves mailboxes to a new root. The check is
// made when a path is set and again by the mail code before it touches
// files, so a path that was acceptable once (or a symbolic link created
// later) cannot lead outside the roots.
const (
	// KeyMailboxRootNext names the root a running migration moves
	// mailboxes to; empty when no migration runs.
	KeyMailboxRootNext = "MailboxRootNext"
	// DefaultMailboxRoot applies when [Directories] MailboxRoot is not set.
	DefaultMailboxRoot = "/var/lib/mailcluster/mailboxes"
)

// SettingReader reads one value of the main ini file.
type SettingReader func(section, key, def string) string

// MailboxRoots returns the roots under which mailbox paths are accepted:
// MailboxRoot and, during a migration, MailboxRootNext. Roots that are
// not absolute or are the file system root are left out.
func MailboxRoots(setting SettingReader) []string {
	var roots []string
	for _, r := range []string{
		setting(SectionDirectories, KeyMailboxRoot, DefaultMailboxRoot),
		setting(SectionDirectories, KeyMailboxRootNext, ""),
	} {
		if r == "" || !filepath.IsAbs(r) {
			continue
		}
		if r = filepath.Clean(r); r != "/" {
			roots = append(roots, r)
		}
	}
	return roots
}

// ConfineMailboxPath resolves p (symbolic links included, for the part of
// it that exists) and returns the resolved path if it lies strictly below
// one of roots (also resolved). A mailbox path equal to a root, outside
// every root, relative, or with NUL or line breaks is refused with
// EFORBIDDEN; the message names no file system details beyond the path.
func ConfineMailboxPath(p string, roots ...string) (string, error) {
	refuse := Errorf(EFORBIDDEN, "Mailbox path %q is not below the mailbox root.", p)
	if p == "" || !filepath.IsAbs(p) || strings.ContainsAny(p, "\r\n\x00") || len(p) > 1024 {
		return "", refuse
	}
	resolved, err := resolveExisting(filepath.Clean(p))
	if err != nil {
		return "", refuse
	}
	for _, r := range roots {
		root, err := resolveExisting(filepath.Clean(r))
		if err != nil || root == "/" {
			continue
		}
		if strings.HasPrefix(resolved, root+string(filepath.Separator)) {
			return resolved, nil
		}
	}
	return "", refuse
}

// resolveExisting evaluates the symbolic links of the longest existing
// prefix of an absolute, clean path and appends the rest unchanged (the
// rest does not exist, so it holds no links).
func resolveExisting(p string) (string, error) {
	rest := ""
	cur := p
	retries := 0
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if _, lerr := os.Lstat(cur); lerr == nil || !errors.Is(lerr, fs.ErrNotExist) {
			if lerr == nil && errors.Is(err, fs.ErrNotExist) && retries < 3 {
				// Created meanwhile (a concurrent first delivery made the
				// mailbox): resolve it again. A dangling link fails again
				// and is refused below.
				retries++
				continue
			}
			// It exists but cannot be resolved (a dangling link, a loop,
			// no permission): refuse rather than guess.
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
