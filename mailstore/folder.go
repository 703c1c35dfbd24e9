package mailstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"mailcluster"
)

// Folder is one folder of an account: INBOX (the account's maildir) or a
// Maildir++ sub-folder, with stable IMAP UIDs kept in its UID map (see
// UIDFile). Messages are files in new/ and cur/; their flags are the
// info of cur/ file names (":2,FLAGS", letters in ASCII order: D draft,
// F flagged, P passed, R replied, S seen, T trashed), as other Maildir
// tools expect. Every change (append, flags, expunge, copy, move) is made
// while the account's lock file is held, and published on the Store's
// Hub. What was read of a folder (the UID map, the listing, the sizes
// and dates of messages) is kept in a view the Store shares between the
// Folders of one directory, checked against the modification times of
// the UID file, the size of its log and those of new/ and cur/ before use; a Folder is safe for
// concurrent use, and processes on other nodes may change the folder at
// any time, which Sync sees.
type Folder struct {
	store *Store
	acct  *mailcluster.Account
	root  string // the account's maildir
	name  string
	dir   string
	v     *folderView // what was read of the directory, shared on the node
}

// Message is a message of a folder as Sync found it.
type Message struct {
	UID   uint32
	Key   string    // the unique name (the file name without its info)
	Flags string    // Maildir flag letters, in ASCII order
	Size  int64     // bytes: the ",S=" of the file name, else the file's size
	Date  time.Time // the internal date when known (else zero): see Folder.InternalDate
	Path  string    // the file; it is renamed when the flags change
}

// Snapshot is a folder's content at one moment, messages by UID.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message
}

// fileEntry is a message file of new/ or cur/.
type fileEntry struct {
	key, sub, name, flags string
}

// path is the file's path in a folder's directory (a clean path).
func (e fileEntry) path(dir string) string {
	return dir + string(filepath.Separator) + e.sub + string(filepath.Separator) + e.name
}

// msgMeta is the size and date of a message file; date is zero until
// the file was stat'ed.
type msgMeta struct {
	size int64
	date time.Time
}

// fileStamp tells whether a file or directory changed since it was read.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	fs := fileStamp{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.ino = uint64(sys.Ino)
	}
	return fs, true
}

// settled reports whether a directory stamp may be trusted for a listing:
// a directory changed within the last 2 seconds may change again within
// the resolution of its modification time, unseen.
func (s fileStamp) settled() bool { return time.Since(s.mtime) > 2*time.Second }

// Name is the folder's name ("INBOX", or a Maildir++ name such as "Sent").
func (f *Folder) Name() string { return f.name }

// Dir is the folder's directory: the name its changes are published
// under on the Hub.
func (f *Folder) Dir() string { return f.dir }

// Account is the folder's owner.
func (f *Folder) Account() *mailcluster.Account { return f.acct }

// readMap returns the folder's UID map (nil when it does not exist or is
// damaged): its snapshot and log, from the view unless they changed. A
// fresh read also checks the snapshot's first line, which tells any two
// snapshots of a folder apart (UIDNEXT grows with every UID given, and a
// snapshot that only drops UIDs is shorter), where the stamp alone could
// match a new file that got the old one's inode within the resolution of
// modification times.
func (f *Folder) readMap(fresh bool) (*uidMap, error) {
	m, _, err := f.readMapState(fresh)
	return m, err
}

// readMapState is readMap, with the state the map was read in. A read
// that another process's rewrite of the snapshot overtook is made again.
func (f *Folder) readMapState(fresh bool) (*uidMap, mapState, error) {
	for i := 0; ; i++ {
		m, st, again, err := f.readMapOnce(fresh, i == 3)
		if !again || err != nil {
			return m, st, err
		}
	}
}

// readMapOnce reads the map once; again tells that the snapshot changed
// while its log was read (unless last, when what was read is returned and
// not kept).
func (f *Folder) readMapOnce(fresh, last bool) (m *uidMap, st mapState, again bool, err error) {
	sp, lp := filepath.Join(f.dir, UIDFile), filepath.Join(f.dir, UIDLogFile)
	stamp, ok := stampOf(sp)
	if !ok {
		return nil, mapState{}, false, nil
	}
	head := ""
	if fresh {
		if head, err = readHead(sp); errors.Is(err, os.ErrNotExist) {
			return nil, mapState{}, !last, nil
		} else if err != nil {
			return nil, mapState{}, false, err
		}
	}
	ls, _ := stampOf(lp) // zero when there is no log
	f.v.mu.Lock()
	c, cst := f.v.mapCache, f.v.mapSt
	f.v.mu.Unlock()
	if c != nil && cst.snap == stamp && (!fresh || cst.head == head) && cst.logIno == ls.ino && ls.size >= cst.logOff {
		if ls.size == cst.logOff && cst.logSize == cst.logOff && ls.mtime.Equal(cst.logMtime) {
			return c, cst, false, nil
		}
		tail := int64(len(cst.logTail))
		data, err := readFrom(lp, cst.logOff-tail)
		if err != nil {
			return nil, mapState{}, false, err
		}
		// Else the log was emptied or cut back since, and grew again:
		// read whole below.
		if string(data[:min(tail, int64(len(data)))]) == cst.logTail {
			data = data[tail:]
			m, used, lines := applyLog(c, data, false)
			st = cst
			st.logMtime = ls.mtime
			st.logOff, st.logSize, st.logLines = cst.logOff+used, cst.logOff+int64(len(data)), cst.logLines+lines
			if used > 0 {
				st.logTail = lastLine(data[:used])
			}
			if now, ok := stampOf(sp); !ok || now != stamp {
				return m, st, !last, nil
			}
			f.v.mu.Lock()
			if f.v.mapCache == c && f.v.mapSt == cst {
				f.v.mapCache, f.v.mapSt = m, st
			}
			f.v.mu.Unlock()
			return m, st, false, nil
		}
	}
	b, err := os.ReadFile(sp)
	if errors.Is(err, os.ErrNotExist) {
		return nil, mapState{}, !last, nil
	}
	if err != nil {
		return nil, mapState{}, false, err
	}
	m, err = parseUIDMap(b)
	if err != nil {
		return nil, mapState{}, false, nil // damaged: given a new UIDVALIDITY under the lock
	}
	data, err := readFrom(lp, 0)
	if err != nil {
		return nil, mapState{}, false, err
	}
	m, used, lines := applyLog(m, data, true)
	st = mapState{snap: stamp, head: headOf(b), logIno: ls.ino, logMtime: ls.mtime, logOff: used, logSize: int64(len(data)), logLines: lines,
		logTail: lastLine(data[:used])}
	if now, ok := stampOf(sp); !ok || now != stamp {
		return m, st, !last, nil
	}
	f.v.mu.Lock()
	f.v.mapCache, f.v.mapSt = m, st
	f.v.mu.Unlock()
	return m, st, false, nil
}

// readFiles lists the message files of new/ and cur/ (new/ first, so that
// a message moved to cur/ meanwhile is still seen), from the view while
// neither directory changed. The map returned is shared: read only.
func (f *Folder) readFiles(fresh bool) (map[string]fileEntry, error) {
	return f.listFiles(fresh, true)
}

// listFiles is readFiles; a fresh listing is kept in the view unless
// !keep (then the caller may change the map).
func (f *Folder) listFiles(fresh, keep bool) (map[string]fileEntry, error) {
	newID, ok1 := stampOf(filepath.Join(f.dir, "new"))
	curID, ok2 := stampOf(filepath.Join(f.dir, "cur"))
	if !ok1 || !ok2 {
		if _, err := os.Stat(f.dir); err != nil {
			return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Folder %s does not exist.", f.name)
		}
	}
	f.v.mu.Lock()
	if !fresh && f.v.files != nil && ok1 && ok2 && newID == f.v.newID && curID == f.v.curID && newID.settled() && curID.settled() {
		files := f.v.files
		f.v.mu.Unlock()
		return files, nil
	}
	f.v.mu.Unlock()
	files := map[string]fileEntry{}
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(f.dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &LocalError{Err: err}
		}
		for _, de := range des {
			name := de.Name()
			if !de.Type().IsRegular() || !ValidMaildirName(name) {
				continue
			}
			key, info, _ := strings.Cut(name, ":")
			e := fileEntry{key: key, sub: sub, name: name}
			if sub == "cur" {
				e.flags = normFlags(strings.TrimPrefix(info, "2,"))
			}
			if old, dup := files[key]; dup && (old.sub == "cur" && sub == "cur" && old.name < name) {
				continue // two files of one message: keep one, always the same
			}
			files[key] = e
		}
	}
	if keep {
		f.v.setFiles(newID, curID, files)
	}
	return files, nil
}

// consistent reports whether every file has a UID and every UID a file.
func consistent(m *uidMap, files map[string]fileEntry) bool {
	if m == nil || len(m.uids) != len(files) {
		return false
	}
	for k := range files {
		if _, ok := m.uid[k]; !ok {
			return false
		}
	}
	return true
}

// Sync reads the folder and returns its messages. A message without a
// UID (delivered since, or written by another tool) gets the next one
// and a UID without a message is dropped, under the account's lock: so
// a new message gets its UID the first time any node looks, once. Errors:
// ENOTFOUND (the folder was deleted), ErrBusy, *LocalError.
func (f *Folder) Sync(ctx context.Context) (*Snapshot, error) {
	m, err := f.readMap(false)
	if err != nil {
		return nil, &LocalError{Err: err}
	}
	files, err := f.readFiles(false)
	if err != nil {
		return nil, err
	}
	if snap := f.v.snapshotOf(m, files); snap != nil {
		return snap, nil
	}
	if !consistent(m, files) {
		err := f.store.locked(ctx, f.acct, func() error {
			m, files, err = f.reconcile()
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	snap := f.snapshot(m, files)
	f.v.keepSnapshot(m, files, snap)
	return snap.clone(), nil
}

// reconcile brings the UID map and the files into agreement; the caller
// holds the account's lock. A new message in new/ moves to cur/ (it was
// seen), keeping its unique name. The files returned are the caller's to
// change.
func (f *Folder) reconcile() (*uidMap, map[string]fileEntry, error) {
	m, err := f.readMap(true)
	if err != nil {
		return nil, nil, &LocalError{Err: err}
	}
	files, err := f.listFiles(true, false)
	if err != nil {
		return nil, nil, err
	}
	changed := false
	if m == nil {
		if err := Maildir(f.dir).Init(); err != nil {
			return nil, nil, &LocalError{Err: err}
		}
		v, err := f.store.nextValidity(f.root)
		if err != nil {
			return nil, nil, &LocalError{Err: err}
		}
		m, changed = newUIDMap(v), true
	} else {
		m = m.clone()
	}
	var gone []uint32
	for _, u := range m.uids {
		if _, ok := files[m.key[u]]; !ok {
			gone = append(gone, u)
		}
	}
	if len(gone) > 0 {
		m.remove(gone...)
		changed = true
	}
	var fresh []string
	for k := range files {
		if _, ok := m.uid[k]; !ok {
			fresh = append(fresh, k)
		}
	}
	sort.Strings(fresh) // unique names start with the time of arrival
	for _, k := range fresh {
		if _, err := m.add(k); err != nil {
			return nil, nil, err
		}
		changed = true
	}
	if changed {
		if err := f.writeMap(m); err != nil {
			return nil, nil, err
		}
	}
	moved := false
	for k, e := range files {
		if e.sub != "new" {
			continue
		}
		ne := fileEntry{key: k, sub: "cur", name: k + ":2,"}
		if os.Rename(e.path(f.dir), ne.path(f.dir)) == nil {
			files[k] = ne
			moved = true
		}
	}
	if moved {
		_ = SyncDir(filepath.Join(f.dir, "cur"))
		_ = SyncDir(filepath.Join(f.dir, "new"))
		f.forgetFiles()
	}
	f.cleanTmp()
	return m, files, nil
}

// writeMap replaces the folder's UID map: a new snapshot, and the log
// emptied; the caller holds the lock.
func (f *Folder) writeMap(m *uidMap) error {
	content := m.encode()
	if err := f.store.writeAtomic(f.dir, UIDFile, content); err != nil {
		return &LocalError{Err: fmt.Errorf("write UID map of %s: %w", f.dir, err)}
	}
	ls := f.emptyLog()
	f.v.mu.Lock()
	if stamp, ok := stampOf(filepath.Join(f.dir, UIDFile)); ok {
		f.v.mapCache, f.v.mapSt = m, mapState{snap: stamp, head: headOf(content), logIno: ls.ino, logMtime: ls.mtime}
	} else {
		f.v.mapCache = nil
	}
	f.v.mu.Unlock()
	return nil
}

func (f *Folder) forgetFiles() {
	f.v.mu.Lock()
	f.v.files = nil
	f.v.mu.Unlock()
}

// cleanTmp removes files of tmp/ older than 36 hours (RFC-less Maildir
// practice): what a process that died while writing left.
func (f *Folder) cleanTmp() {
	des, err := os.ReadDir(filepath.Join(f.dir, "tmp"))
	if err != nil {
		return
	}
	for _, de := range des {
		if info, err := de.Info(); err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > 36*time.Hour {
			os.Remove(filepath.Join(f.dir, "tmp", de.Name()))
		}
	}
}

// snapshot joins the map and the files (which agree, or agreed when read
// without the lock) into the messages by UID.
func (f *Folder) snapshot(m *uidMap, files map[string]fileEntry) *Snapshot {
	snap := &Snapshot{UIDValidity: m.validity, UIDNext: m.next, Messages: make([]Message, 0, len(m.uids))}
	var unknown []int // messages without a size yet
	f.v.mu.Lock()
	for _, u := range m.uids {
		e, ok := files[m.key[u]]
		if !ok {
			continue
		}
		msg := Message{UID: u, Key: e.key, Flags: e.flags, Path: e.path(f.dir)}
		if md, ok := f.v.meta[e.key]; ok {
			msg.Size, msg.Date = md.size, md.date
		} else {
			unknown = append(unknown, len(snap.Messages))
		}
		snap.Messages = append(snap.Messages, msg)
	}
	f.v.mu.Unlock()
	for _, i := range unknown {
		msg := &snap.Messages[i]
		md := f.metaOf(msg.Key, msg.Path)
		msg.Size, msg.Date = md.size, md.date
	}
	return snap
}

// metaOf returns the size of a message (from its name when it tells,
// else stat'ed once) and its date when known.
func (f *Folder) metaOf(key, path string) msgMeta {
	f.v.mu.Lock()
	md, ok := f.v.meta[key]
	f.v.mu.Unlock()
	if ok {
		return md
	}
	if n := messageSize(key); n >= 0 {
		md = msgMeta{size: n}
	} else if md, ok = statMeta(path); !ok {
		return msgMeta{size: 0}
	}
	f.v.remember(key, md)
	return md
}

// statMeta stats a message file.
func statMeta(path string) (msgMeta, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return msgMeta{}, false
	}
	return msgMeta{size: st.Size(), date: st.ModTime()}, true
}

// InternalDate returns a message's internal date: its file's
// modification time, stat'ed once (now when the message is gone).
func (f *Folder) InternalDate(msg Message) time.Time {
	if !msg.Date.IsZero() {
		return msg.Date
	}
	f.v.mu.Lock()
	md, ok := f.v.meta[msg.Key]
	f.v.mu.Unlock()
	if ok && !md.date.IsZero() {
		return md.date
	}
	st, ok := statMeta(msg.Path)
	if !ok {
		files, err := f.readFiles(true)
		if e, found := files[msg.Key]; err == nil && found {
			st, ok = statMeta(e.path(f.dir))
		}
	}
	if !ok {
		return time.Now()
	}
	if n := messageSize(msg.Key); n >= 0 {
		st.size = n // the size the folder reports
	}
	f.v.remember(msg.Key, st)
	return st.date
}

// Open opens a message's file. A message whose file was renamed since
// the snapshot (its flags changed) is found again by its unique name.
// Errors: ENOTFOUND (expunged meanwhile), *LocalError.
func (f *Folder) Open(msg Message) (*os.File, error) {
	r, err := os.Open(msg.Path)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, &LocalError{Err: err}
	}
	files, lerr := f.readFiles(true)
	if lerr != nil {
		return nil, lerr
	}
	if e, ok := files[msg.Key]; ok {
		if r, err := os.Open(e.path(f.dir)); err == nil {
			return r, nil
		}
	}
	return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "The message was expunged.")
}

// normFlags sorts Maildir flag letters and drops duplicates and anything
// but letters.
func normFlags(s string) string {
	var seen [128]bool
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 128 && (c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			seen[c] = true
		}
	}
	var b []byte
	for c := range seen {
		if seen[c] {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// FlagOp is how SetFlags changes flags.
type FlagOp int

// The FlagOps.
const (
	FlagsAdd    FlagOp = iota // add the letters
	FlagsRemove               // remove the letters
	FlagsSet                  // the system flags (DFPRST) become the letters; others stay
)

// systemFlags are the letters of the flags Maildir defines.
const systemFlags = "DFPRST"

func applyFlags(old string, op FlagOp, letters string) string {
	switch op {
	case FlagsAdd:
		return normFlags(old + letters)
	case FlagsRemove:
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(letters, r) {
				return -1
			}
			return r
		}, old)
	default:
		kept := strings.Map(func(r rune) rune {
			if strings.ContainsRune(systemFlags, r) {
				return -1
			}
			return r
		}, old)
		return normFlags(kept + letters)
	}
}

// SetFlags changes the flags of the messages with the given UIDs (those
// that still exist) by renaming their files, and returns the flags each
// then has. Errors: ENOTFOUND, ErrBusy, *LocalError.
func (f *Folder) SetFlags(ctx context.Context, uids []uint32, op FlagOp, letters string) (map[uint32]string, error) {
	letters = normFlags(letters)
	out := map[uint32]string{}
	changed := false // a file renamed and synced
	err := f.store.locked(ctx, f.acct, func() error {
		m, files, err := f.reconcile()
		if err != nil {
			return err
		}
		renamed := false
		for _, u := range uids {
			e, ok := files[m.key[u]]
			if !ok {
				continue
			}
			nf := applyFlags(e.flags, op, letters)
			if nf != e.flags || e.sub != "cur" {
				ne := fileEntry{key: e.key, sub: "cur", name: e.key + ":2," + nf, flags: nf}
				if err := f.store.fs.Rename(e.path(f.dir), ne.path(f.dir)); err != nil {
					return &LocalError{Err: err}
				}
				files[e.key] = ne
				renamed = true
			}
			out[u] = nf
		}
		if renamed {
			f.forgetFiles()
			if err := f.store.fs.SyncDir(filepath.Join(f.dir, "cur")); err != nil {
				return &LocalError{Err: err}
			}
			changed = true
		}
		return nil
	})
	switch {
	case changed:
		f.store.changed(f.acct, f.name, f.dir, mailcluster.MailFlags, 0, 0)
	case len(out) > 0:
		f.store.hub.Publish(f.dir)
	}
	return out, err
}

// Expunge removes the messages with the given UIDs that have the T
// (deleted) flag, reports the usage change, and returns the UIDs removed
// (ascending). Errors: ENOTFOUND, ErrBusy, *LocalError.
func (f *Folder) Expunge(ctx context.Context, uids []uint32) ([]uint32, error) {
	return f.remove(ctx, uids, true)
}

func (f *Folder) remove(ctx context.Context, uids []uint32, onlyDeleted bool) ([]uint32, error) {
	var removed []uint32
	var bytes int64
	err := f.store.locked(ctx, f.acct, func() error {
		m, files, err := f.reconcile()
		if err != nil {
			return err
		}
		for _, u := range uids {
			e, ok := files[m.key[u]]
			if !ok || onlyDeleted && !strings.Contains(e.flags, "T") {
				continue
			}
			size := f.metaOf(e.key, e.path(f.dir)).size
			if err := os.Remove(e.path(f.dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return &LocalError{Err: err}
			}
			removed = append(removed, u)
			bytes += size
		}
		if len(removed) == 0 {
			return nil
		}
		f.forgetFiles()
		_ = SyncDir(filepath.Join(f.dir, "cur"))
		m = m.clone()
		m.remove(removed...)
		if err := f.writeMap(m); err != nil {
			// The messages are gone; the next look drops their UIDs.
			f.store.log.Error("mailstore: UID map not updated after an expunge", "folder", f.dir, "err", err)
		}
		return nil
	})
	if len(removed) > 0 {
		sort.Slice(removed, func(i, j int) bool { return removed[i] < removed[j] })
		f.store.changed(f.acct, f.name, f.dir, mailcluster.MailExpunged, -bytes, -int64(len(removed)))
	}
	return removed, err
}

// Append stores a message read from r (at most maxSize bytes, else
// ErrTooLarge) with the flag letters given and the internal date (zero:
// now), and returns the folder's UIDVALIDITY and the message's UID. The
// message is written to tmp/ and synced first; then, under the account's
// lock and in a batch with the concurrent APPENDs of the node (see
// appendQueue), the quota is checked with its size (as for a delivery),
// its UID is recorded in the UID log and synced, and it is renamed into
// cur/; cur/ is synced before the usage is reported and Append returns. A
// crash at any point leaves no partial message in the folder and no UID
// that can be given again. Errors: ENOTFOUND, ErrTooLarge, *QuotaError,
// ErrBusy, *LocalError.
func (f *Folder) Append(ctx context.Context, r io.Reader, flags string, date time.Time, maxSize int64) (validity, uid uint32, err error) {
	if _, err := os.Stat(f.dir); err != nil {
		return 0, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Folder %s does not exist.", f.name)
	}
	if err := Maildir(f.dir).Init(); err != nil {
		return 0, 0, &LocalError{Err: err}
	}
	tmp, err := f.store.fs.CreateTemp(filepath.Join(f.dir, "tmp"), ".append-*")
	if err != nil {
		return 0, 0, &LocalError{Err: err}
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			os.Remove(tmpName) // gone once placed
		}
	}()
	ew := &errWriter{w: tmp}
	n, err := io.Copy(ew, io.LimitReader(r, max(maxSize, 0)+1))
	if err != nil {
		tmp.Close()
		if ew.err != nil {
			return 0, 0, &LocalError{Err: ew.err}
		}
		return 0, 0, err // the client's data could not be read
	}
	if n > maxSize {
		tmp.Close()
		return 0, 0, ErrTooLarge
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, 0, &LocalError{Err: err}
	}
	if err := tmp.Close(); err != nil {
		return 0, 0, &LocalError{Err: err}
	}
	req := &appendReq{ctx: ctx, tmp: tmpName, size: n, flags: normFlags(flags), date: date}
	f.place(req)
	if req.err != nil {
		return 0, 0, req.err
	}
	f.store.changed(f.acct, f.name, f.dir, mailcluster.MailAppended, n, 1)
	return req.validity, req.uid, nil
}

// errWriter remembers the error of its writer, to tell it from the
// reader's in an io.Copy.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// CopyTo copies the messages with the given UIDs (those that still exist)
// to dst, a folder of the same account, with their flags and internal
// dates, and returns dst's UIDVALIDITY, the source UIDs copied and the
// UIDs they got in dst, in the same order. The copies count toward the quota like a delivery
// (refused whole when over it). Errors: ENOTFOUND, *QuotaError, ErrBusy,
// *LocalError; nothing is copied on an error.
func (f *Folder) CopyTo(ctx context.Context, uids []uint32, dst *Folder) (validity uint32, src, dstUIDs []uint32, err error) {
	if err := f.sameAccount(dst); err != nil {
		return 0, nil, nil, err
	}
	var bytes int64
	err = f.store.locked(ctx, f.acct, func() error {
		m, files, err := f.reconcile()
		if err != nil {
			return err
		}
		dm, _, err := dst.reconcile()
		if err != nil {
			return err
		}
		validity = dm.validity
		type item struct {
			uid uint32
			e   fileEntry
			md  msgMeta
		}
		var items []item
		for _, u := range sortedUIDs(uids) {
			if e, ok := files[m.key[u]]; ok {
				md := f.metaOf(e.key, e.path(f.dir))
				md.date = f.InternalDate(Message{Key: e.key, Path: e.path(f.dir), Date: md.date})
				items = append(items, item{u, e, md})
				bytes += md.size
			}
		}
		if len(items) == 0 {
			return nil
		}
		if a := f.store.current(f.acct); f.store.OverQuota(a, bytes, int64(len(items))) {
			return &QuotaError{Address: a.Address()}
		}
		dm = dm.clone()
		var made []string
		var names []string
		for _, it := range items {
			key := uniqueName(it.md.size)
			u, err := dm.add(key)
			if err != nil {
				return err
			}
			src, dstUIDs = append(src, it.uid), append(dstUIDs, u)
			names = append(names, key+":2,"+it.e.flags)
		}
		if err := dst.writeMap(dm); err != nil {
			src, dstUIDs = nil, nil
			return err
		}
		for i, it := range items {
			p := filepath.Join(dst.dir, "cur", names[i])
			if err := f.store.linkOrCopy(it.e.path(f.dir), p, filepath.Join(dst.dir, "tmp")); err != nil {
				for _, q := range made {
					os.Remove(q)
				}
				src, dstUIDs = nil, nil
				return &LocalError{Err: err}
			}
			_ = os.Chtimes(p, it.md.date, it.md.date)
			made = append(made, p)
		}
		dst.forgetFiles()
		if err := f.store.fs.SyncDir(filepath.Join(dst.dir, "cur")); err != nil {
			for _, q := range made {
				os.Remove(q)
			}
			src, dstUIDs = nil, nil
			return &LocalError{Err: err}
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, err
	}
	if len(src) > 0 {
		f.store.changed(f.acct, dst.name, dst.dir, mailcluster.MailAppended, bytes, int64(len(src)))
	}
	return validity, src, dstUIDs, nil
}

// MoveTo moves the messages with the given UIDs (those that still exist)
// to dst, a folder of the same account: each file is renamed into dst's
// cur/ (its name, flags and date kept), after dst's UID map records it
// and before the source's map forgets it, so that a crash leaves every
// message in one folder or the other, with a UID there. Usage does not
// change. It returns dst's UIDVALIDITY, the source UIDs moved and their
// UIDs in dst. Errors:
// ENOTFOUND, ErrBusy, *LocalError (messages moved before the failure stay
// moved and are returned).
func (f *Folder) MoveTo(ctx context.Context, uids []uint32, dst *Folder) (validity uint32, src, dstUIDs []uint32, err error) {
	if err := f.sameAccount(dst); err != nil {
		return 0, nil, nil, err
	}
	err = f.store.locked(ctx, f.acct, func() error {
		m, files, err := f.reconcile()
		if err != nil {
			return err
		}
		dm, dfiles, err := dst.reconcile()
		if err != nil {
			return err
		}
		validity = dm.validity
		dm = dm.clone()
		type item struct {
			uid    uint32
			e      fileEntry
			newKey string
		}
		var items []item
		var planned []uint32
		for _, u := range sortedUIDs(uids) {
			e, ok := files[m.key[u]]
			if !ok {
				continue
			}
			key := e.key
			if _, clash := dm.uid[key]; clash {
				key = uniqueName(f.metaOf(e.key, e.path(f.dir)).size)
			} else if _, clash := dfiles[key]; clash {
				key = uniqueName(f.metaOf(e.key, e.path(f.dir)).size)
			}
			du, err := dm.add(key)
			if err != nil {
				return err
			}
			items = append(items, item{u, e, key})
			planned = append(planned, du)
		}
		if len(items) == 0 {
			return nil
		}
		if err := dst.writeMap(dm); err != nil {
			return err
		}
		var moved []uint32
		var ferr error
		for i, it := range items {
			p := filepath.Join(dst.dir, "cur", it.newKey+":2,"+it.e.flags)
			if err := f.store.fs.Rename(it.e.path(f.dir), p); err != nil {
				ferr = &LocalError{Err: err}
				break
			}
			moved = append(moved, it.uid)
			src, dstUIDs = append(src, it.uid), append(dstUIDs, planned[i])
		}
		if len(moved) > 0 {
			f.forgetFiles()
			dst.forgetFiles()
			if err := f.store.fs.SyncDir(filepath.Join(dst.dir, "cur")); err != nil && ferr == nil {
				ferr = &LocalError{Err: err}
			}
			_ = SyncDir(filepath.Join(f.dir, "cur"))
			m = m.clone()
			m.remove(moved...)
			if err := f.writeMap(m); err != nil {
				f.store.log.Error("mailstore: UID map not updated after a move", "folder", f.dir, "err", err)
			}
		}
		return ferr
	})
	if len(src) > 0 {
		f.store.hub.Publish(f.dir)
		f.store.hub.Publish(dst.dir)
		f.store.report(change(f.acct, f.name, mailcluster.MailExpunged, 0, 0), change(f.acct, dst.name, mailcluster.MailAppended, 0, 0))
	}
	return validity, src, dstUIDs, err
}

func (f *Folder) sameAccount(dst *Folder) error {
	if !strings.EqualFold(f.acct.Address(), dst.acct.Address()) || f.root != dst.root {
		return mailcluster.Errorf(mailcluster.EINVALID, "Messages are copied only between folders of one account.")
	}
	return nil
}

func sortedUIDs(uids []uint32) []uint32 {
	out := append([]uint32(nil), uids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
