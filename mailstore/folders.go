package mailstore

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"mailcluster"
)

// Folder names and their directories (Maildir++): INBOX is the account's
// maildir; any other folder "Name" is the directory ".Name" in it (with
// cur, new, tmp and an empty "maildirfolder" file), its name in modified
// UTF-7; the hierarchy delimiter is "." ("Archive.2024" is
// ".Archive.2024"). The account's subscriptions are the file
// "subscriptions" in its maildir, one folder name a line.
const (
	// Delimiter separates the levels of a folder name.
	Delimiter = '.'
	// Inbox is the name of the account's maildir as a folder.
	Inbox = "INBOX"

	subscriptionsFile = "subscriptions"
	folderMarker      = "maildirfolder"
)

// DefaultFolders are created (and subscribed) when an account first logs
// in over IMAP, with their special use (RFC 6154).
var DefaultFolders = []FolderInfo{
	{Name: "Sent", SpecialUse: `\Sent`},
	{Name: "Drafts", SpecialUse: `\Drafts`},
	{Name: "Trash", SpecialUse: `\Trash`},
	{Name: "Junk", SpecialUse: `\Junk`},
}

// FolderInfo describes a folder in a listing.
type FolderInfo struct {
	Name       string
	SpecialUse string // `\Sent`, `\Drafts`, `\Trash`, `\Junk` or ""
	Subscribed bool
}

// specialUse returns the special use of a folder name.
func specialUse(name string) string {
	for _, d := range DefaultFolders {
		if d.Name == name {
			return d.SpecialUse
		}
	}
	return ""
}

// Folders are the folders of one account.
type Folders struct {
	store *Store
	acct  *mailcluster.Account
	root  string
}

// Folders returns the folders of an account, at its mailbox path confined
// below the mailbox roots. Errors: EFORBIDDEN (the path is outside the
// roots).
func (s *Store) Folders(a *mailcluster.Account) (*Folders, error) {
	md, err := s.MailboxDir(a)
	if err != nil {
		return nil, err
	}
	return &Folders{store: s, acct: a, root: string(md)}, nil
}

// dirOf returns the directory of a folder name and the name as stored
// (INBOX in capitals, whatever case it was given in).
// Errors: EINVALID.
func (fs *Folders) dirOf(name string) (dir, canonical string, err error) {
	if strings.EqualFold(name, Inbox) {
		return fs.root, Inbox, nil
	}
	if err := validFolderName(name); err != nil {
		return "", "", err
	}
	return filepath.Join(fs.root, "."+encodeUTF7(name)), name, nil
}

// MaxFolders is the most folders (besides INBOX) one account may have:
// each is a directory on the shared path, and a mail user chooses how many
// to create.
const MaxFolders = 1000

// MaxSubscriptions is the most folder names one account may subscribe to
// (names of folders that do not exist included, as IMAP allows).
const MaxSubscriptions = 2 * MaxFolders

// validFolderName checks a folder name other than INBOX.
func validFolderName(name string) error {
	bad := func(why string) error {
		return mailcluster.Errorf(mailcluster.EINVALID, "Folder name %q is not valid: %s.", name, why)
	}
	switch {
	case name == "":
		return bad("it is empty")
	case !utf8.ValidString(name):
		return bad("it is not UTF-8")
	case strings.ContainsAny(name, "/\\"):
		return bad(`"/" and "\" are not allowed`)
	case name[0] == Delimiter || name[len(name)-1] == Delimiter || strings.Contains(name, ".."):
		return bad("a level of the name is empty")
	case len(encodeUTF7(name)) > 200:
		return bad("it is too long")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return bad("control characters are not allowed")
		}
	}
	return nil
}

// folderDirs returns the names of the Maildir++ folder directories of a
// maildir (".Name": a directory, not a link, with a cur/ directory).
func folderDirs(root string) []string {
	des, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, de := range des {
		n := de.Name()
		if len(n) < 2 || n[0] != '.' || n[1] == '.' || !de.IsDir() {
			continue
		}
		if st, err := os.Lstat(filepath.Join(root, n, "cur")); err == nil && st.IsDir() {
			out = append(out, n)
		}
	}
	return out
}

// List returns INBOX and every folder, with special use and subscription,
// in name order after INBOX.
func (fs *Folders) List() ([]FolderInfo, error) {
	subs, err := fs.Subscriptions()
	if err != nil {
		return nil, err
	}
	subscribed := map[string]bool{}
	for _, n := range subs {
		subscribed[n] = true
	}
	out := []FolderInfo{{Name: Inbox, Subscribed: subscribed[Inbox]}}
	var names []string
	for _, d := range folderDirs(fs.root) {
		name, err := decodeUTF7(d[1:])
		if err != nil || validFolderName(name) != nil {
			continue // not a name this server could have made
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, FolderInfo{Name: n, SpecialUse: specialUse(n), Subscribed: subscribed[n]})
	}
	return out, nil
}

// Subscriptions returns the names of the subscribed folders (existing or
// not).
func (fs *Folders) Subscriptions() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(fs.root, subscriptionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &LocalError{Err: err}
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		if n, err := decodeUTF7(l); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// Folder returns an existing folder (INBOX always exists: its maildir is
// created when missing). Errors: EINVALID, ENOTFOUND, *LocalError.
func (fs *Folders) Folder(name string) (*Folder, error) {
	dir, canonical, err := fs.dirOf(name)
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if canonical == Inbox {
		if err := Maildir(dir).Init(); err != nil {
			return nil, &LocalError{Err: err}
		}
	} else if st, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !st.IsDir() {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Folder %s does not exist.", name)
	}
	return &Folder{store: fs.store, acct: fs.acct, root: fs.root, name: canonical, dir: dir, v: fs.store.views.get(dir)}, nil
}

// Create makes a new folder. Errors: EINVALID, ECONFLICT (it exists),
// ErrBusy, *LocalError.
func (fs *Folders) Create(ctx context.Context, name string) error {
	if err := fs.store.locked(ctx, fs.acct, func() error { return fs.create(name) }); err != nil {
		return err
	}
	dir, canonical, _ := fs.dirOf(name)
	fs.store.changed(fs.acct, canonical, dir, mailcluster.MailFolder, 0, 0)
	return nil
}

func (fs *Folders) create(name string) error {
	dir, canonical, err := fs.dirOf(name)
	if err != nil {
		return err
	}
	if canonical == Inbox {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "INBOX exists.")
	}
	if _, err := os.Lstat(dir); err == nil {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Folder %s exists.", name)
	}
	if n := len(folderDirs(fs.root)); n >= MaxFolders {
		return mailcluster.Errorf(mailcluster.ETOOLARGE, "A mailbox may have at most %d folders.", MaxFolders)
	}
	if err := os.MkdirAll(fs.root, 0o750); err != nil {
		return &LocalError{Err: err}
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		if os.IsExist(err) {
			return mailcluster.Errorf(mailcluster.ECONFLICT, "Folder %s exists.", name)
		}
		return &LocalError{Err: err}
	}
	if err := Maildir(dir).Init(); err != nil {
		return &LocalError{Err: err}
	}
	if err := os.WriteFile(filepath.Join(dir, folderMarker), nil, 0o640); err != nil {
		return &LocalError{Err: err}
	}
	for _, d := range []string{dir, fs.root} {
		if err := SyncDir(d); err != nil {
			return &LocalError{Err: err}
		}
	}
	return nil
}

// Delete removes a folder and its messages (not its sub-folders) and
// reports the usage change. Errors: EINVALID (INBOX), ENOTFOUND, ErrBusy,
// *LocalError.
func (fs *Folders) Delete(ctx context.Context, name string) error {
	dir, canonical, err := fs.dirOf(name)
	if err != nil {
		return err
	}
	if canonical == Inbox {
		return mailcluster.Errorf(mailcluster.EINVALID, "INBOX cannot be deleted.")
	}
	var bytes, messages int64
	err = fs.store.locked(ctx, fs.acct, func() error {
		if st, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !st.IsDir() {
			return mailcluster.Errorf(mailcluster.ENOTFOUND, "Folder %s does not exist.", name)
		}
		bytes, messages, _ = Maildir(dir).countOwn()
		// Out of sight in one rename, then removed.
		if err := Maildir(fs.root).Init(); err != nil {
			return &LocalError{Err: err}
		}
		aside := filepath.Join(fs.root, "tmp", ".deleted-"+rand.Text()[:10])
		if err := os.Rename(dir, aside); err != nil {
			return &LocalError{Err: err}
		}
		if err := SyncDir(fs.root); err != nil {
			fs.store.log.Error("mailstore: sync after a folder deletion", "dir", fs.root, "err", err)
		}
		if err := os.RemoveAll(aside); err != nil {
			fs.store.log.Error("mailstore: removing a deleted folder", "dir", aside, "err", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fs.store.changed(fs.acct, canonical, dir, mailcluster.MailFolder, -bytes, -messages)
	return nil
}

// countOwn counts the messages of the maildir itself (not its folders).
func (m Maildir) countOwn() (bytes, messages int64, err error) {
	es, err := m.entries()
	for _, e := range es {
		bytes += e.size
		messages++
	}
	return bytes, messages, err
}

// Rename renames a folder and its sub-folders (their UIDs stay valid),
// and their subscriptions. Errors: EINVALID (INBOX), ENOTFOUND, ECONFLICT
// (the new name exists), ErrBusy, *LocalError.
func (fs *Folders) Rename(ctx context.Context, oldName, newName string) error {
	oldDir, oldC, err := fs.dirOf(oldName)
	if err != nil {
		return err
	}
	newDir, newC, err := fs.dirOf(newName)
	if err != nil {
		return err
	}
	if oldC == Inbox || newC == Inbox {
		return mailcluster.Errorf(mailcluster.EINVALID, "INBOX cannot be renamed, nor be a new name.")
	}
	if strings.HasPrefix(newC+string(Delimiter), oldC+string(Delimiter)) {
		return mailcluster.Errorf(mailcluster.EINVALID, "A folder cannot become its own sub-folder.")
	}
	var renamed []string // directories, old and new of each
	defer func() {
		if len(renamed) > 0 {
			fs.renamed(renamed)
		}
	}()
	return fs.store.locked(ctx, fs.acct, func() error {
		if st, err := os.Stat(filepath.Join(oldDir, "cur")); err != nil || !st.IsDir() {
			return mailcluster.Errorf(mailcluster.ENOTFOUND, "Folder %s does not exist.", oldName)
		}
		if _, err := os.Lstat(newDir); err == nil {
			return mailcluster.Errorf(mailcluster.ECONFLICT, "Folder %s exists.", newName)
		}
		oldPrefix := filepath.Base(oldDir) + string(Delimiter)
		newPrefix := filepath.Base(newDir) + string(Delimiter)
		var children []string
		for _, d := range folderDirs(fs.root) {
			if strings.HasPrefix(d, oldPrefix) {
				if _, err := os.Lstat(filepath.Join(fs.root, newPrefix+d[len(oldPrefix):])); err == nil {
					return mailcluster.Errorf(mailcluster.ECONFLICT, "A sub-folder of %s exists under the new name.", newName)
				}
				children = append(children, d)
			}
		}
		if err := os.Rename(oldDir, newDir); err != nil {
			return &LocalError{Err: err}
		}
		renamed = append(renamed, oldDir, newDir)
		for _, d := range children {
			if err := os.Rename(filepath.Join(fs.root, d), filepath.Join(fs.root, newPrefix+d[len(oldPrefix):])); err != nil {
				return &LocalError{Err: err}
			}
			renamed = append(renamed, filepath.Join(fs.root, d), filepath.Join(fs.root, newPrefix+d[len(oldPrefix):]))
		}
		if err := SyncDir(fs.root); err != nil {
			return &LocalError{Err: err}
		}
		subs, err := fs.Subscriptions()
		if err != nil {
			return err
		}
		changed := false
		for i, n := range subs {
			if n == oldC || strings.HasPrefix(n, oldC+string(Delimiter)) {
				subs[i] = newC + n[len(oldC):]
				changed = true
			}
		}
		if changed {
			return fs.writeSubscriptions(subs)
		}
		return nil
	})
}

// Subscribe adds a folder name to the subscriptions (on) or removes it.
// Errors: EINVALID, ErrBusy, *LocalError.
func (fs *Folders) Subscribe(ctx context.Context, name string, on bool) error {
	_, canonical, err := fs.dirOf(name)
	if err != nil {
		return err
	}
	return fs.store.locked(ctx, fs.acct, func() error { return fs.subscribe(on, canonical) })
}

func (fs *Folders) subscribe(on bool, names ...string) error {
	subs, err := fs.Subscriptions()
	if err != nil {
		return err
	}
	var out []string
	changed := false
	for _, n := range subs {
		drop := false
		for _, name := range names {
			drop = drop || n == name
		}
		if drop && !on {
			changed = true
			continue
		}
		out = append(out, n)
	}
	if on {
		for _, name := range names {
			found := false
			for _, n := range out {
				found = found || n == name
			}
			if !found {
				if len(out) >= MaxSubscriptions {
					return mailcluster.Errorf(mailcluster.ETOOLARGE, "A mailbox may have at most %d subscriptions.", MaxSubscriptions)
				}
				out = append(out, name)
				changed = true
			}
		}
	}
	if !changed {
		return nil
	}
	return fs.writeSubscriptions(out)
}

func (fs *Folders) writeSubscriptions(names []string) error {
	if err := Maildir(fs.root).Init(); err != nil {
		return &LocalError{Err: err}
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(encodeUTF7(n))
		b.WriteByte('\n')
	}
	if err := fs.store.writeAtomic(fs.root, subscriptionsFile, []byte(b.String())); err != nil {
		return &LocalError{Err: err}
	}
	return nil
}

// EnsureDefaults creates the DefaultFolders that do not exist and
// subscribes them (and INBOX, on the first time). A folder a user
// deleted comes back at the next login. Errors: ErrBusy, *LocalError.
func (fs *Folders) EnsureDefaults(ctx context.Context) error {
	var missing []string
	for _, d := range DefaultFolders {
		dir, _, _ := fs.dirOf(d.Name)
		if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
			missing = append(missing, d.Name)
		}
	}
	_, err := os.Stat(filepath.Join(fs.root, subscriptionsFile))
	first := errors.Is(err, os.ErrNotExist)
	if len(missing) == 0 && !first {
		return nil
	}
	var created []string
	defer func() {
		var deltas []mailcluster.UsageDelta
		for _, n := range created {
			if n == Inbox {
				continue
			}
			dir, _, _ := fs.dirOf(n)
			fs.store.hub.Publish(dir)
			deltas = append(deltas, change(fs.acct, n, mailcluster.MailFolder, 0, 0))
		}
		if len(deltas) > 0 {
			fs.store.report(deltas...)
		}
	}()
	return fs.store.locked(ctx, fs.acct, func() error {
		if err := Maildir(fs.root).Init(); err != nil {
			return &LocalError{Err: err}
		}
		for _, n := range missing {
			err := fs.create(n)
			if mailcluster.ErrorCode(err) == mailcluster.ECONFLICT {
				continue
			}
			if err != nil {
				return err
			}
			created = append(created, n)
		}
		if first {
			created = append([]string{Inbox}, created...)
		}
		if len(created) == 0 {
			return nil
		}
		return fs.subscribe(true, created...)
	})
}

// renamed tells of folders renamed (their directories, the old and new
// of each; the first pair the folder renamed, then its sub-folders).
func (fs *Folders) renamed(dirs []string) {
	var deltas []mailcluster.UsageDelta
	for _, dir := range dirs {
		name, err := decodeUTF7(filepath.Base(dir)[1:])
		if err != nil {
			continue
		}
		fs.store.hub.Publish(dir)
		deltas = append(deltas, change(fs.acct, name, mailcluster.MailFolder, 0, 0))
	}
	if len(deltas) > 0 {
		fs.store.report(deltas...)
	}
}
