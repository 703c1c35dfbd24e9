// Package faultfs is a mailstore.FS for tests that fails operations on
// demand, so that disk-full and unwritable cases run everywhere, without
// a mount.
package faultfs

import (
	"errors"
	"io"

	"mailcluster/mailstore"
)

// FS asks Check before each operation of the wrapped FS ("create" with the
// directory, for named and unnamed files alike, "write" and "sync" with the file's name, "link" and "rename"
// with the new name, "syncdir" with the directory) and fails the
// operation with the error Check returns; nil lets it through. A write
// that fails first writes half of its bytes, as a full disk does. Check
// must be safe for concurrent use.
type FS struct {
	mailstore.FS
	Check func(op, path string) error
}

var (
	_ mailstore.FS        = (*FS)(nil)
	_ mailstore.UnnamedFS = (*FS)(nil)
)

// CreateUnnamed creates an unnamed file (when the wrapped FS can; else
// errors.ErrUnsupported, and the store writes a named file) whose writes
// and syncs are checked too.
func (f *FS) CreateUnnamed(dir string) (mailstore.File, error) {
	u, ok := f.FS.(mailstore.UnnamedFS)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	if err := f.Check("create", dir); err != nil {
		return nil, err
	}
	file, err := u.CreateUnnamed(dir)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

// LinkUnnamed checks "link" on newname.
func (f *FS) LinkUnnamed(file mailstore.File, newname string) error {
	u, ok := f.FS.(mailstore.UnnamedFS)
	if !ok {
		return errors.ErrUnsupported
	}
	if err := f.Check("link", newname); err != nil {
		return err
	}
	if ff, ok := file.(*faultFile); ok {
		file = ff.File
	}
	return u.LinkUnnamed(file, newname)
}

// CreateTemp creates a file whose writes and syncs are checked too.
func (f *FS) CreateTemp(dir, pattern string) (mailstore.File, error) {
	if err := f.Check("create", dir); err != nil {
		return nil, err
	}
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

// Link checks "link" on newname.
func (f *FS) Link(oldname, newname string) error {
	if err := f.Check("link", newname); err != nil {
		return err
	}
	return f.FS.Link(oldname, newname)
}

// Rename checks "rename" on newname.
func (f *FS) Rename(oldname, newname string) error {
	if err := f.Check("rename", newname); err != nil {
		return err
	}
	return f.FS.Rename(oldname, newname)
}

// SyncDir checks "syncdir" on dir.
func (f *FS) SyncDir(dir string) error {
	if err := f.Check("syncdir", dir); err != nil {
		return err
	}
	return f.FS.SyncDir(dir)
}

// faultFile is a file of an FS.
type faultFile struct {
	mailstore.File
	fs *FS
}

func (w *faultFile) Write(p []byte) (int, error) {
	if err := w.fs.Check("write", w.Name()); err != nil {
		n, _ := w.File.Write(p[:len(p)/2])
		return n, err
	}
	return w.File.Write(p)
}

// ReadAt reads the wrapped file (an unnamed file is read back this way).
func (w *faultFile) ReadAt(p []byte, off int64) (int, error) {
	ra, ok := w.File.(io.ReaderAt)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	return ra.ReadAt(p, off)
}

func (w *faultFile) Sync() error {
	if err := w.fs.Check("sync", w.Name()); err != nil {
		return err
	}
	return w.File.Sync()
}
