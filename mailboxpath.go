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
// To confine several paths against the same roots, resolve the roots once
// with ResolveMailboxRoots.
func ConfineMailboxPath(p string, roots ...string) (string, error) {
	return ResolveMailboxRoots(roots...).Confine(p)
}

// MailboxRootSet is a set of mailbox roots with their symbolic links
// resolved at one moment (ResolveMailboxRoots), to confine the paths of
// one operation without resolving the roots again for each. The zero
// value holds no root and refuses every path.
type MailboxRootSet struct {
	roots []resolvedRoot
}

type resolvedRoot struct {
	clean    string // as configured, cleaned
	resolved string // with its symbolic links resolved
}

// ResolveMailboxRoots resolves roots (symbolic links included) now. A root
// that cannot be resolved, or that is the file system root, confines
// nothing and is left out.
func ResolveMailboxRoots(roots ...string) MailboxRootSet {
	var set MailboxRootSet
	for _, r := range roots {
		clean := filepath.Clean(r)
		resolved, err := resolveExisting(clean)
		if err != nil || resolved == "/" || !filepath.IsAbs(resolved) {
			continue
		}
		set.roots = append(set.roots, resolvedRoot{clean: clean, resolved: resolved})
	}
	return set
}

// Confine is ConfineMailboxPath against the roots of the set. The part of
// p below a root is checked component by component (one lstat each); only
// a path with a symbolic link below its root, or not spelled below a root
// at all, is resolved in full (and then accepted only if the result lies
// below a root).
func (set MailboxRootSet) Confine(p string) (string, error) {
	refuse := Errorf(EFORBIDDEN, "Mailbox path %q is not below the mailbox root.", p)
	if p == "" || !filepath.IsAbs(p) || strings.ContainsAny(p, "\r\n\x00") || len(p) > 1024 {
		return "", refuse
	}
	p = filepath.Clean(p)
	for _, r := range set.roots {
		for _, prefix := range []string{r.clean, r.resolved} {
			if !strings.HasPrefix(p, prefix+string(filepath.Separator)) {
				continue
			}
			if resolved, ok := plainBelow(r.resolved, p[len(prefix)+1:]); ok {
				return resolved, nil
			}
		}
	}
	resolved, err := resolveExisting(p)
	if err != nil {
		return "", refuse
	}
	for _, r := range set.roots {
		if strings.HasPrefix(resolved, r.resolved+string(filepath.Separator)) {
			return resolved, nil
		}
	}
	return "", refuse
}

// plainBelow returns base joined with rest (a relative, clean path with
// no ".." element) if no existing element of rest below base is a
// symbolic link: then base/rest is what resolving it gives. It lstats the
// elements in order and stops at the first that does not exist (what
// follows does not exist either). ok is false when an element is a
// symbolic link or cannot be checked: the caller resolves the path in full.
func plainBelow(base, rest string) (string, bool) {
	if rest == "" || rest == ".." || strings.HasPrefix(rest, ".."+string(filepath.Separator)) {
		return "", false
	}
	full := filepath.Join(base, rest)
	for i := len(base) + 1; i <= len(full); i++ {
		if i < len(full) && full[i] != filepath.Separator {
			continue
		}
		fi, err := os.Lstat(full[:i])
		if errors.Is(err, fs.ErrNotExist) {
			return full, true
		}
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			return "", false
		}
	}
	return full, true
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
