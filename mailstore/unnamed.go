package mailstore

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// UnnamedFS is implemented by an FS that can create a delivery's message
// file without a name (O_TMPFILE on Linux): it is written and synced
// unnamed, and its first link gives it its name in a new/ directory, so
// no name in tmp/ is ever made or removed, and a crash leaves nothing
// behind. OSFS implements it; a Store whose FS does not, or whose
// CreateUnnamed answers errors.ErrUnsupported, writes a named file in
// tmp/ (CreateTemp) as before.
type UnnamedFS interface {
	// CreateUnnamed creates a file in dir, open for reading (the File
	// is also an io.ReaderAt) and writing, that has no name and
	// vanishes when closed unless LinkUnnamed named it. Its Name is dir.
	// errors.ErrUnsupported: dir's file system (or this system) cannot;
	// the caller uses CreateTemp.
	CreateUnnamed(dir string) (File, error)
	// LinkUnnamed gives f, an open file of CreateUnnamed, the name
	// newname (which must not exist), as Link does for a named file.
	LinkUnnamed(f File, newname string) error
}

// message is the file of one copy of a delivery: named in tmp/
// (removed when the delivery ends), or unnamed until its first link,
// after which the other mailboxes are linked from that name.
type message struct {
	path    string // a name of the file; "" while unnamed
	tmpName bool   // path is in tmp/: removed when the delivery ends
	f       File   // the unnamed file, open until the delivery ends; else nil
	size    int64
}

// createMessage creates the file of a copy in tmpDir: unnamed when the
// file system can, else a named temporary file. The caller writes and
// syncs m.f, then calls m.written (which closes a named file) and, when the
// delivery ends, calls m.release.
func (s *Store) createMessage(tmpDir string) (*message, error) {
	if u, ok := s.fs.(UnnamedFS); ok {
		f, err := u.CreateUnnamed(tmpDir)
		if err == nil {
			return &message{f: f}, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, err
		}
	}
	f, err := s.fs.CreateTemp(tmpDir, ".delivery-*")
	if err != nil {
		return nil, err
	}
	return &message{path: f.Name(), tmpName: true, f: f}, nil
}

// written ends the writing of m: a named file is closed (its name is
// what the links use); an unnamed one stays open until it is linked.
func (m *message) written() error {
	if !m.tmpName {
		return nil
	}
	f := m.f
	m.f = nil
	return f.Close()
}

// release closes an unnamed file (which vanishes if it was never linked)
// and removes a named file from tmp/.
func (m *message) release() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	if m.tmpName {
		os.Remove(m.path)
	}
}

// reader returns the content of m from offset off.
func (m *message) reader(off int64) (io.ReadCloser, error) {
	if m.path == "" {
		ra, ok := m.f.(io.ReaderAt)
		if !ok {
			return nil, errors.New("mailstore: an unnamed file cannot be read back")
		}
		return io.NopCloser(io.NewSectionReader(ra, off, m.size-off)), nil
	}
	in, err := openFile(m.path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if _, err := in.Seek(off, io.SeekStart); err != nil {
			in.Close()
			return nil, err
		}
	}
	return in, nil
}

// link makes dst a name of m: its first name if m is unnamed, else a
// hard link to a name it has.
func (s *Store) link(m *message, dst string) error {
	if m.path != "" {
		return s.fs.Link(m.path, dst)
	}
	u, ok := s.fs.(UnnamedFS)
	if !ok {
		return errors.New("mailstore: an unnamed file cannot be linked")
	}
	if err := u.LinkUnnamed(m.f, dst); err != nil {
		return err
	}
	m.path = dst
	return nil
}
