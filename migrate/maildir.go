package migrate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mailcluster/mailstore"
)

// msgFile is one file that moves with a maildir: a message of new/ or cur/
// or a metadata file, at the top or in a Maildir++ folder.
type msgFile struct {
	sub, name string // its directory relative to the maildir ("new", ".Sent/cur", "" or ".Sent" for metadata); its name
	size      int64
	mode      os.FileMode
	mod       time.Time
}

// message reports whether f is a message (not a metadata file).
func (f msgFile) message() bool {
	base := filepath.Base(f.sub)
	return base == "new" || base == "cur"
}

// mailboxSet holds mailbox directories, resolved.
type mailboxSet map[string]bool

// maildirMetadata names the files besides messages that belong to a
// maildir or a Maildir++ folder and move with it (quota, folder marker,
// IMAP subscriptions, the IMAP UID maps of package mailstore with their
// logs of UIDs given since).
var maildirMetadata = map[string]bool{"maildirsize": true, "maildirfolder": true, "subscriptions": true,
	mailstore.UIDFile: true, mailstore.UIDLogFile: true, mailstore.UIDValidityFile: true}

// maildirFolder reports whether name, an entry of a maildir, is a
// Maildir++ folder: ".Name", a directory (not a link) holding at least one
// of cur, new and tmp as directories.
func maildirFolder(dir, name string, info os.FileInfo) bool {
	if len(name) < 2 || name[0] != '.' || name == ".." || !info.IsDir() {
		return false
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if st, err := os.Lstat(filepath.Join(dir, name, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// describe names an entry that stays, with its kind when it is not a
// regular file.
func describe(rel string, info os.FileInfo) string {
	switch t := info.Mode().Type(); {
	case t == 0:
		return rel
	case t&os.ModeSymlink != 0:
		return rel + " (symbolic link)"
	case t&os.ModeDir != 0:
		return rel + "/"
	case t&(os.ModeDevice|os.ModeCharDevice) != 0:
		return rel + " (device)"
	case t&os.ModeSocket != 0:
		return rel + " (socket)"
	case t&os.ModeNamedPipe != 0:
		return rel + " (named pipe)"
	default:
		return rel + " (special file)"
	}
}

// listMaildir lists what moves with a maildir: regular files with Maildir
// names in new/ and cur/, the metadata files, and the same in each
// Maildir++ folder (except a folder that is the mailbox of another
// account, in others). Everything else is returned in left, relative to
// dir: files under tmp/, other names, symbolic links (never followed),
// devices, sockets, other directories. A missing maildir has nothing.
func listMaildir(dir string, others mailboxSet) (files []msgFile, left []string, err error) {
	err = listMaildirLevel(dir, "", others, &files, &left)
	return files, left, err
}

func listMaildirLevel(dir, sub string, others mailboxSet, files *[]msgFile, left *[]string) error {
	base := filepath.Join(dir, sub)
	des, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", base, err)
	}
	var meta []msgFile
	var msgDirs, folderNames []string
	for _, de := range des {
		name := de.Name()
		rel := filepath.Join(sub, name)
		info, err := os.Lstat(filepath.Join(base, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", filepath.Join(base, name), err)
		}
		switch {
		case (name == "new" || name == "cur" || name == "tmp") && info.IsDir():
			msgDirs = append(msgDirs, name)
		case maildirMetadata[name] && info.Mode().IsRegular():
			meta = append(meta, msgFile{sub: sub, name: name, size: info.Size(), mode: info.Mode().Perm(), mod: info.ModTime()})
		case sub == "" && maildirFolder(base, name, info) && !others[filepath.Join(base, name)]:
			folderNames = append(folderNames, name)
		default:
			*left = append(*left, describe(rel, info))
		}
	}
	for _, d := range []string{"new", "cur", "tmp"} {
		if !slices.Contains(msgDirs, d) {
			continue
		}
		rel := filepath.Join(sub, d)
		des, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, rel), err)
		}
		for _, de := range des {
			p := filepath.Join(dir, rel, de.Name())
			info, err := os.Lstat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			if d == "tmp" || !info.Mode().IsRegular() || !mailstore.ValidMaildirName(de.Name()) {
				*left = append(*left, describe(filepath.Join(rel, de.Name()), info))
				continue
			}
			*files = append(*files, msgFile{sub: rel, name: de.Name(), size: info.Size(), mode: info.Mode().Perm(), mod: info.ModTime()})
		}
	}
	*files = append(*files, meta...)
	for _, f := range folderNames {
		if err := listMaildirLevel(dir, f, others, files, left); err != nil {
			return err
		}
	}
	return nil
}

// folders returns the Maildir++ folders the files belong to.
func folders(files []msgFile) []string {
	var out []string
	for _, f := range files {
		if first, _, _ := strings.Cut(f.sub, string(filepath.Separator)); strings.HasPrefix(first, ".") && !slices.Contains(out, first) {
			out = append(out, first)
		}
	}
	return out
}

// fileDirs returns the directories under dir that hold the files, and dir.
func fileDirs(dir string, files []msgFile) []string {
	out := []string{dir}
	for _, f := range files {
		if d := filepath.Join(dir, f.sub); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// makeFolders creates, in the new maildir dir, the Maildir++ folders (with
// cur, new and tmp) and directories the files go to, and returns every
// directory to sync once the files are placed.
func makeFolders(dir string, files []msgFile) ([]string, error) {
	for _, f := range folders(files) {
		if err := mailstore.Maildir(filepath.Join(dir, f)).Init(); err != nil {
			return nil, err
		}
	}
	dirs := fileDirs(dir, files)
	for _, f := range folders(files) {
		if d := filepath.Join(dir, f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return dirs, nil
}

// placeMessage makes sure a file of the maildir src exists, complete,
// under the same sub-directory and name in the maildir dst. A file already
// there with the same size is kept (an earlier, interrupted run placed it);
// one with another size, or anything but a regular file, is a conflict and
// nothing is changed. A new file is a hard link when src and dst share a
// file system, else a copy written under dst/tmp, synced and renamed into
// place, so a real name never holds a partial file. It reports whether it
// created the file. The caller syncs dst's directories.
func placeMessage(src, dst string, f msgFile, link bool) (bool, error) {
	from := filepath.Join(src, f.sub, f.name)
	to := filepath.Join(dst, f.sub, f.name)
	if st, err := os.Lstat(to); err == nil {
		if st.Mode().IsRegular() && st.Size() == f.size {
			return false, nil
		}
		return false, fmt.Errorf("%s already exists with %d bytes, but %s has %d: both are left in place, check them by hand", to, st.Size(), from, f.size)
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if st, err := os.Lstat(from); err != nil || !st.Mode().IsRegular() {
		return false, fmt.Errorf("%s is no longer a regular file: left in place", from)
	}
	opts := mailstore.PlaceOptions{NoLink: !link, TmpName: "migrate." + f.name, Mode: f.mode, ModTime: f.mod}
	if err := mailstore.Maildir(dst).Place(from, filepath.Join(f.sub, f.name), opts); err != nil {
		return false, err
	}
	return true, nil
}

// removeMoved removes a file of src after checking that dst holds it
// with the same size.
func removeMoved(src, dst string, f msgFile) error {
	to := filepath.Join(dst, f.sub, f.name)
	st, err := os.Lstat(to)
	if err != nil || !st.Mode().IsRegular() || st.Size() != f.size {
		return fmt.Errorf("%s is not in place (%v); the original is kept", to, err)
	}
	from := filepath.Join(src, f.sub, f.name)
	if st, err := os.Lstat(from); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s is no longer a regular file: left in place", from)
	}
	if err := os.Remove(from); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", from, err)
	}
	return nil
}

// makeMaildir creates tmp, new and cur of a maildir and syncs every
// directory from it up to the parent of root, so the new entries survive
// a crash.
func makeMaildir(dir, root string) error {
	if err := mailstore.Maildir(dir).Init(); err != nil {
		return err
	}
	stop := filepath.Dir(filepath.Clean(root))
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if err := mailstore.SyncDir(d); err != nil {
			return err
		}
		if d == stop || d == filepath.Dir(d) {
			return nil
		}
	}
}

// removeEmptyDir removes dir if it is an empty directory (never a
// symbolic link) and reports whether it is gone.
func removeEmptyDir(dir string) bool {
	st, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil || !st.IsDir() {
		return false
	}
	err = os.Remove(dir)
	return err == nil || errors.Is(err, os.ErrNotExist)
}

// removeEmptyMaildir removes a maildir's tmp, new and cur, the given
// Maildir++ folders (with theirs), and the maildir itself when they are
// empty directories, then its empty parents below stop. Nothing that
// holds a file and no symbolic link is removed. It reports whether the
// maildir is gone.
func removeEmptyMaildir(dir, stop string, folders ...string) bool {
	dir = filepath.Clean(dir)
	for _, f := range folders {
		for _, sub := range []string{"tmp", "new", "cur"} {
			removeEmptyDir(filepath.Join(dir, f, sub))
		}
		removeEmptyDir(filepath.Join(dir, f))
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		removeEmptyDir(filepath.Join(dir, sub))
	}
	if !removeEmptyDir(dir) {
		return false
	}
	stop = filepath.Clean(stop)
	for d := filepath.Dir(dir); d != stop && d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, ok := relUnder(d, stop); !ok {
			break
		}
		if st, err := os.Lstat(d); err != nil || !st.IsDir() || os.Remove(d) != nil {
			break
		}
	}
	_ = mailstore.SyncDir(filepath.Dir(dir))
	return true
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Lstat(path)
	return err == nil
}
