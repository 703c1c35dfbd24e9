package mailstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"mailcluster/internal/atomicfile"
)

// This file holds the Maildir file operations that tools outside the
// mail service share with it (the mailbox move of migrate-mailboxes):
// the shape of a message file name, durable directories, and placing a
// message file so that its real name never holds a partial file.

// reMaildirName matches a Maildir unique name ("time.unique.host" with
// optional ",S=size" style fields) with optional info (":2,FLAGS").
var reMaildirName = regexp.MustCompile(`^[0-9]+\.[A-Za-z0-9._,=\\-]+(:2,[A-Za-z]*)?$`)

// ValidMaildirName reports whether name has the shape of a Maildir
// message file of new/ or cur/ as any delivery agent writes it
// ("time.unique.host", optional ",key=value" fields, optional ":2,FLAGS"
// info). Such a name cannot name a path and does not start with a dot.
// It accepts more than ValidMessageID, which only matches the ids this
// package makes.
func ValidMaildirName(name string) bool {
	return len(name) < 256 && reMaildirName.MatchString(name)
}

// SyncDir fsyncs a directory so that the entries made or renamed in it
// are durable. File systems that cannot sync a directory (EINVAL) are no
// error.
func SyncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("mailstore: sync %s: %w", dir, err)
	}
	return nil
}

// PlaceOptions tunes Maildir.Place. The zero value links where it can
// and copies with mode 0640 under a temporary name made from the
// message's name.
type PlaceOptions struct {
	// NoLink always copies; zero: a hard link is tried first.
	NoLink bool
	// TmpName is the name under tmp/ a copy is written to before it is
	// renamed into place. A leftover file of that name (from a copy that
	// was interrupted) is replaced. Zero: "." + the message's name +
	// ".part".
	TmpName string
	// Mode is the permission of a copy; zero: 0640.
	Mode os.FileMode
	// ModTime is given to a copy; zero: the time it was written.
	ModTime time.Time
}

// Place makes the regular file src appear, complete, at rel inside the
// maildir m: rel is a message's path relative to m ("new/NAME",
// "cur/NAME", ".Folder/cur/NAME") or a metadata file's. The file is a
// hard link when src and m share a file system (unless opts.NoLink),
// else a copy written under m's tmp/, synced, and renamed to rel, so that
// rel never names a partial file. src is opened without following a
// symbolic link, and anything but a regular file is refused. An entry
// already at rel is replaced by a copy: a caller that must keep one
// checks first. m's tmp/ and the directory of rel must exist; the caller
// syncs the directory of rel (SyncDir) once its files are placed.
func (m Maildir) Place(src, rel string, opts PlaceOptions) error {
	dst := filepath.Join(string(m), rel)
	if st, err := os.Lstat(src); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("mailstore: %s is not a regular file", src)
	}
	if !opts.NoLink && os.Link(src, dst) == nil {
		return nil
	}
	name := opts.TmpName
	if name == "" {
		name = "." + filepath.Base(rel) + ".part"
	}
	tmp := filepath.Join(string(m), "tmp", name)
	if err := copySynced(src, tmp, opts.Mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if !opts.ModTime.IsZero() {
		_ = os.Chtimes(tmp, opts.ModTime, opts.ModTime)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mailstore: rename into %s: %w", dst, err)
	}
	return nil
}

// copySynced writes src (never through a symbolic link) to dst
// (replacing a leftover dst) and syncs it.
func copySynced(src, dst string, mode os.FileMode) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("mailstore: open %s: %w", src, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("mailstore: %s is not a regular file", src)
	}
	if mode == 0 {
		mode = 0o640
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mailstore: remove %s: %w", dst, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("mailstore: create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("mailstore: copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("mailstore: sync %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("mailstore: close %s: %w", dst, err)
	}
	return nil
}
