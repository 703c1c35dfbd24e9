package mailstore

import (
	"container/list"
	"reflect"
	"sync"
	"sync/atomic"
)

// The folder views a Store keeps are bounded by their number and by the
// messages they list (a view holds about 400 bytes a message), least
// recently used out first; a Folder holding a dropped view keeps using
// it. Variables for the tests.
var (
	maxViews        = 1000
	maxViewMessages = int64(500_000)
)

// folderView is what was read of one folder directory: the UID map (its
// snapshot and log) and the listing of new/ and cur/ with the stamps they
// were read under, and the sizes and dates of messages by unique name (a file's content never
// changes under its name). The Folders of one directory share it, so
// that every session of a node reads a folder's directories and UID file
// again only when they changed.
type folderView struct {
	mu       sync.Mutex
	mapSt    mapState // what mapCache was read from
	mapCache *uidMap
	newID    fileStamp
	curID    fileStamp
	files    map[string]fileEntry // by unique name
	meta     map[string]msgMeta   // by unique name
	owner    *views               // nil once dropped
	counted  int64                // the messages counted in owner

	// The last snapshot, and the map and listing it joined.
	snap      *Snapshot
	snapMap   *uidMap
	snapFiles map[string]fileEntry

	appends appendQueue // APPENDs waiting to be placed (appendbatch.go)
}

// snapshotOf returns a copy of the last snapshot when it joined this map
// and this listing (the very ones: both are replaced, never changed, once
// kept in the view), else nil.
func (v *folderView) snapshotOf(m *uidMap, files map[string]fileEntry) *Snapshot {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap == nil || m == nil || m != v.snapMap || !sameMap(files, v.snapFiles) {
		return nil
	}
	return v.snap.clone()
}

// keepSnapshot records the snapshot of a map and a listing.
func (v *folderView) keepSnapshot(m *uidMap, files map[string]fileEntry, snap *Snapshot) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.snap, v.snapMap, v.snapFiles = snap, m, files
}

// sameMap reports whether a and b are the same map (not equal ones).
func sameMap(a, b map[string]fileEntry) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// clone copies a snapshot (its messages are the caller's to change).
func (s *Snapshot) clone() *Snapshot {
	c := *s
	c.Messages = append([]Message(nil), s.Messages...)
	return &c
}

// remember records the size and date of a message.
func (v *folderView) remember(key string, md msgMeta) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.meta == nil {
		v.meta = map[string]msgMeta{}
	}
	v.meta[key] = md
}

// setFiles records a fresh listing, and forgets the sizes and dates of
// messages no longer in it.
func (v *folderView) setFiles(newID, curID fileStamp, files map[string]fileEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.newID, v.curID, v.files = newID, curID, files
	if v.owner != nil {
		v.owner.messages.Add(int64(len(files)) - v.counted)
		v.counted = int64(len(files))
	}
	if len(v.meta) > len(files) {
		for k := range v.meta {
			if _, ok := files[k]; !ok {
				delete(v.meta, k)
			}
		}
	}
}

// views are a Store's folder views by directory; the zero value is
// empty and ready.
type views struct {
	messages atomic.Int64 // listed by the views kept

	mu    sync.Mutex
	lru   *list.List // of *viewEntry, most recent first
	byDir map[string]*list.Element
}

type viewEntry struct {
	dir string
	v   *folderView
}

// get returns the view of a directory, made when missing.
func (vs *views) get(dir string) *folderView {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.byDir == nil {
		vs.lru, vs.byDir = list.New(), map[string]*list.Element{}
	}
	if el := vs.byDir[dir]; el != nil {
		vs.lru.MoveToFront(el)
		return el.Value.(*viewEntry).v
	}
	v := &folderView{owner: vs}
	vs.byDir[dir] = vs.lru.PushFront(&viewEntry{dir: dir, v: v})
	for vs.lru.Len() > maxViews || vs.lru.Len() > 1 && vs.messages.Load() > maxViewMessages {
		e := vs.lru.Remove(vs.lru.Back()).(*viewEntry)
		delete(vs.byDir, e.dir)
		e.v.mu.Lock()
		vs.messages.Add(-e.v.counted)
		e.v.owner, e.v.counted = nil, 0
		e.v.mu.Unlock()
	}
	return v
}

// len returns the number of views kept and the messages they list.
func (vs *views) len() (views int, messages int64) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return len(vs.byDir), vs.messages.Load()
}
