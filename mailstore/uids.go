package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The UID map of a folder: the file UIDFile in the folder's directory
// (beside cur/, new/ and tmp/) holds the folder's UIDVALIDITY, its
// UIDNEXT and the UID of every message, by the message's unique name (its
// file name without the ":2,FLAGS" info, which changes with the flags):
//
//	mailcluster-uids 1 <uidvalidity> <uidnext>
//	<uid> <unique name>
//	...
//
// This file is the map's snapshot: it is only ever replaced whole
// (written to a temporary file, synced, renamed over the old one, and the
// directory synced), and only while the account's lock file is held, so
// that any process on any node may assign UIDs: a reader sees the old
// snapshot or the new one, never a mix. The UIDs an APPEND gives since
// are lines of the UID log beside it (see UIDLogFile), appended and
// synced under the same lock. UIDNEXT only grows, so a UID is never given
// twice, even when the message that had it is gone or never arrived (a
// crash between the UID's record and the message's rename leaves a UID
// that no file has; it is dropped, not reused).
const (
	// UIDFile is the name of a folder's UID map.
	UIDFile = "mailcluster-uids"
	// UIDValidityFile, in the account's maildir, holds the last
	// UIDVALIDITY given to any of its folders, so that a folder deleted
	// and created again gets a new one even within the same second.
	UIDValidityFile = "mailcluster-uidvalidity"

	uidMagic = "mailcluster-uids 1"
)

// uidMap is a parsed UID map.
type uidMap struct {
	validity uint32
	next     uint32
	uids     []uint32 // ascending
	key      map[uint32]string
	uid      map[string]uint32
}

func newUIDMap(validity uint32) *uidMap {
	return &uidMap{validity: validity, next: 1, key: map[uint32]string{}, uid: map[string]uint32{}}
}

var errBadUIDMap = errors.New("mailstore: damaged UID map")

// parseUIDMap parses the content of a UID map file.
func parseUIDMap(b []byte) (*uidMap, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return nil, errBadUIDMap // empty, or the last line is cut
	}
	head := strings.Fields(lines[0])
	if len(head) != 4 || head[0]+" "+head[1] != uidMagic {
		return nil, errBadUIDMap
	}
	v, err1 := strconv.ParseUint(head[2], 10, 32)
	n, err2 := strconv.ParseUint(head[3], 10, 32)
	if err1 != nil || err2 != nil || v == 0 || n == 0 {
		return nil, errBadUIDMap
	}
	m := newUIDMap(uint32(v))
	m.next = uint32(n)
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, errBadUIDMap
		}
		u, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || u == 0 || uint32(u) >= m.next {
			return nil, errBadUIDMap
		}
		uid := uint32(u)
		if _, dup := m.key[uid]; dup {
			return nil, errBadUIDMap
		}
		if _, dup := m.uid[f[1]]; dup {
			return nil, errBadUIDMap
		}
		m.key[uid], m.uid[f[1]] = f[1], uid
		m.uids = append(m.uids, uid)
	}
	sort.Slice(m.uids, func(i, j int) bool { return m.uids[i] < m.uids[j] })
	return m, nil
}

// encode returns the content of the map's file.
func (m *uidMap) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d %d\n", uidMagic, m.validity, m.next)
	for _, u := range m.uids {
		fmt.Fprintf(&b, "%d %s\n", u, m.key[u])
	}
	return b.Bytes()
}

// add gives key the next UID.
func (m *uidMap) add(key string) (uint32, error) {
	if m.next == ^uint32(0) {
		return 0, errors.New("mailstore: the folder has used every UID")
	}
	u := m.next
	m.next++
	m.key[u], m.uid[key] = key, u
	m.uids = append(m.uids, u)
	return u, nil
}

// remove drops uids from the map (UIDNEXT stays).
func (m *uidMap) remove(uids ...uint32) {
	gone := map[uint32]bool{}
	for _, u := range uids {
		if k, ok := m.key[u]; ok {
			delete(m.uid, k)
			delete(m.key, u)
			gone[u] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	kept := m.uids[:0]
	for _, u := range m.uids {
		if !gone[u] {
			kept = append(kept, u)
		}
	}
	m.uids = kept
}

func (m *uidMap) clone() *uidMap {
	return &uidMap{validity: m.validity, next: m.next, key: maps.Clone(m.key), uid: maps.Clone(m.uid),
		uids: append(make([]uint32, 0, len(m.uids)+16), m.uids...)} // room for a batch of appends
}

// writeAtomic replaces the file dir/name with content: a temporary file in
// dir's tmp/ is written and synced, renamed to name, and dir is synced. It uses
// the Store's file system seam, so that its failures are tested like a
// delivery's. On failure the old file is left as it was.
func (s *Store) writeAtomic(dir, name string, content []byte) error {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return err
	}
	f, err := s.fs.CreateTemp(filepath.Join(dir, "tmp"), "."+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return s.fs.SyncDir(dir)
}

// nextValidity returns a new UIDVALIDITY for a folder of the account whose
// maildir is root: the current time in seconds, or one more than the last
// one given when that is not smaller. The caller holds the account's lock.
func (s *Store) nextValidity(root string) (uint32, error) {
	last := uint64(0)
	if b, err := os.ReadFile(filepath.Join(root, UIDValidityFile)); err == nil {
		last, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	}
	v := uint64(time.Now().Unix())
	if v <= last {
		v = last + 1
	}
	if v > uint64(^uint32(0)) {
		v = 1
	}
	if err := s.writeAtomic(root, UIDValidityFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		return 0, err
	}
	return uint32(v), nil
}
