package migrate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mailcluster"
	"mailcluster/client"
)

// mailboxMove is the plan for one account.
type mailboxMove struct {
	acct    client.Account
	from    string // the maildir to empty, symbolic links resolved ("" when there is none)
	root    string // the root from lies below, resolved
	to      string // the mailboxPath the account ends up with
	skipped bool   // the account's path is outside both roots: nothing of it is touched
	ignored string // an old path from the journal that is outside the old root: left alone
}

// relUnder returns the part of path below root ("/d/m/" for "/r/d/m/"
// under "/r", "" for root itself) and whether path is root or lies under it.
// A trailing slash of path is kept.
func relUnder(path, root string) (string, bool) {
	if !filepath.IsAbs(path) || !filepath.IsAbs(root) {
		return "", false
	}
	p, r := filepath.Clean(path), filepath.Clean(root)
	var rel string
	switch {
	case p == r:
	case r == "/":
		rel = p
	case strings.HasPrefix(p, r+"/"):
		rel = p[len(r):]
	default:
		return "", false
	}
	if strings.HasSuffix(path, "/") && p != "/" {
		rel += "/"
	}
	return rel, true
}

// rewriteTemplate replaces an old root hard-coded at the start of a
// new-account template; a template that uses $MAILBOXROOT$ is kept.
func rewriteTemplate(tmpl, oldRoot, newRoot string) (string, bool) {
	if oldRoot == newRoot {
		return tmpl, false
	}
	if rel, ok := relUnder(tmpl, oldRoot); ok {
		return newRoot + rel, true
	}
	return tmpl, false
}

// checkRoots refuses a new root that is the current root under another
// name, lies inside it, contains it, or is the file system root, with
// symbolic links resolved. Nothing has changed when it refuses.
func checkRoots(oldRoot, newRoot string) error {
	if oldRoot == newRoot {
		return nil
	}
	if _, ok := relUnder(newRoot, oldRoot); ok {
		return fmt.Errorf("the new root %s lies inside the current root %s; choose a directory outside it", newRoot, oldRoot)
	}
	if _, ok := relUnder(oldRoot, newRoot); ok {
		return fmt.Errorf("the current root %s lies inside the new root %s; choose a directory that does not contain it", oldRoot, newRoot)
	}
	ro, err := resolvePath(oldRoot)
	if err != nil {
		return fmt.Errorf("the current root %s cannot be resolved: %w", oldRoot, err)
	}
	rn, err := resolvePath(newRoot)
	if err != nil {
		return fmt.Errorf("the new root %s cannot be resolved: %w", newRoot, err)
	}
	switch {
	case rn == "/":
		return fmt.Errorf("the new root %s leads to the file system root; choose another directory", newRoot)
	case rn == ro:
		return fmt.Errorf("the new root %s is the current root %s under another name (%s); choose another directory", newRoot, oldRoot, rn)
	}
	if _, ok := relUnder(rn, ro); ok {
		return fmt.Errorf("the new root %s lies inside the current root %s (it leads to %s); choose a directory outside it", newRoot, oldRoot, rn)
	}
	if _, ok := relUnder(ro, rn); ok {
		return fmt.Errorf("the current root %s lies inside the new root %s (it leads to %s); choose a directory that does not contain it", oldRoot, newRoot, rn)
	}
	return nil
}

// resolvePath evaluates the symbolic links of the longest existing prefix
// of an absolute path and appends the rest, cleaned.
func resolvePath(p string) (string, error) {
	rest := ""
	cur := filepath.Clean(p)
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if _, lerr := os.Lstat(cur); lerr == nil || !errors.Is(lerr, os.ErrNotExist) {
			return "", err // it exists but cannot be resolved
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// confined returns p and root resolved when p lies strictly below root,
// else "" for both.
func confined(p, root string) (string, string) {
	if root == "" {
		return "", ""
	}
	rp, err := mailcluster.ConfineMailboxPath(p, root)
	if err != nil {
		return "", ""
	}
	rr, err := resolvePath(root)
	if err != nil {
		return "", ""
	}
	return rp, rr
}

// planMoves decides, for every account, where its mail is and where it
// goes. journaled maps a lower-case address to what an earlier run
// recorded before it changed the account's path. Two accounts that would
// share a new path are refused before anything is touched.
func planMoves(accounts []client.Account, oldRoot, newRoot string, journaled map[string]journalEntry) ([]mailboxMove, error) {
	moves := make([]mailboxMove, 0, len(accounts))
	owner := map[string]string{}
	for _, a := range accounts {
		mv := planMove(a, oldRoot, newRoot, journaled)
		moves = append(moves, mv)
		if mv.skipped {
			continue
		}
		key := filepath.Clean(mv.to)
		if other, ok := owner[key]; ok {
			return nil, fmt.Errorf("%s and %s would both get the mailbox path %s; give one of them another mailboxPath first", other, a.Address, mv.to)
		}
		owner[key] = a.Address
	}
	return moves, nil
}

// planMove plans one account. An account whose path (symbolic links
// resolved) lies below the new root is in place; its old maildir is the
// one the journal names, or the same path under the old root, and either
// is used only if it lies below the old root. An account below the old
// root moves to the same path under the new root. Any other account is
// skipped: nothing of it is read or changed.
func planMove(a client.Account, oldRoot, newRoot string, journaled map[string]journalEntry) mailboxMove {
	mv := mailboxMove{acct: a}
	cur := a.MailboxPath
	slash := ""
	if strings.HasSuffix(cur, "/") {
		slash = "/"
	}
	if p, root := confined(cur, newRoot); p != "" {
		mv.to = cur
		if e, ok := journaled[strings.ToLower(a.Address)]; ok {
			from := e.Root
			if from == "" && oldRoot != newRoot {
				from = oldRoot // a journal written before roots were recorded
			}
			if mv.from, mv.root = confined(e.From, from); mv.from == "" {
				mv.ignored = e.From
			}
		} else if oldRoot != newRoot {
			if rel, ok := relUnder(p, root); ok {
				mv.from, mv.root = confined(oldRoot+rel, oldRoot)
			}
		}
		if mv.from != "" && mv.from == p {
			mv.from = ""
		}
	} else if p, root := confined(cur, oldRoot); p != "" {
		rel, _ := relUnder(p, root)
		mv.from, mv.root, mv.to = p, root, newRoot+rel+slash
	} else {
		mv.skipped = true
	}
	return mv
}

// mailboxDirs returns the mailbox directories of a plan, resolved: a
// directory of one account inside another's is never taken for a Maildir++
// folder of the other.
func mailboxDirs(moves []mailboxMove) mailboxSet {
	set := mailboxSet{}
	for _, mv := range moves {
		if p, err := resolvePath(mv.acct.MailboxPath); err == nil && filepath.IsAbs(mv.acct.MailboxPath) {
			set[p] = true
		}
		if mv.from != "" {
			set[mv.from] = true
		}
	}
	return set
}
