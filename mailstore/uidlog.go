package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The UID log of a folder: the file UIDLogFile beside the UID map (the
// snapshot, UIDFile) holds the UIDs given since the snapshot was written,
// one line each, appended in ascending order while the account's lock is
// held:
//
//	<uidvalidity> <uid> <unique name>
//
// The folder's map is the snapshot and then every line of the log whose
// UIDVALIDITY is the snapshot's and whose UID is not below the UIDNEXT
// reached so far: lines the snapshot already holds (it was rewritten and
// the log not yet emptied when a process stopped) and lines of an older
// UIDVALIDITY are ignored, so a line is never applied twice nor to another
// map. A line is durable (the log synced) before its message is renamed
// into cur/ and before its APPEND is acknowledged; a last line cut short
// by a crash is ignored (its message never left tmp/), and cut off before
// the next line is appended. When the log grows past foldLines, the map is
// written whole as a new snapshot (renamed over the old one, synced) and
// the log emptied; every other change of the map (expunge, move, a
// reconcile) rewrites the snapshot the same way. The log thus shrinks
// under a snapshot that a reader may already have read (it is emptied
// just after the rename) and after a failed append: a reader reads on
// from where it stopped only where the log still holds the last line it
// read (mapState.logTail), else it reads the log whole.
const UIDLogFile = "mailcluster-uids.log"

// foldLines is the number of log lines past which the log is folded into
// a new snapshot of a map holding n UIDs: a quarter of the snapshot,
// within 64 and 1,000 lines.
func foldLines(n int) int { return max(64, min(1000, n/4)) }

// mapState tells what a map was read from: the snapshot (its stamp and
// first line) and how much of the log.
type mapState struct {
	snap     fileStamp
	head     string    // the snapshot's first line; "" when not read
	logIno   uint64    // 0: no log
	logMtime time.Time // the log's modification time as read
	logOff   int64     // end of the last complete line read
	logSize  int64     // the log's size as read (> logOff: a cut last line)
	logLines int       // complete lines read, applied or not
	// logTail is the complete line that ends at logOff (with its
	// newline; "" when logOff is 0). A log is read on from logOff only
	// where it still holds this line: a log emptied (a snapshot was
	// written) or cut back (a failed append) since, and grown again
	// past logOff, holds other lines there, and is read whole.
	logTail string
}

// lastLine returns the last line of b, which ends with a newline (the
// line with its newline); "" when b is empty.
func lastLine(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return string(b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:])
}

// encodeLogLine appends the log line of a UID to b.
func encodeLogLine(b []byte, validity, uid uint32, key string) []byte {
	b = strconv.AppendUint(b, uint64(validity), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(uid), 10)
	b = append(b, ' ')
	b = append(b, key...)
	return append(b, '\n')
}

// parseLogLine parses a log line (without its newline).
func parseLogLine(l []byte) (validity, uid uint32, key string, ok bool) {
	f := bytes.Fields(l)
	if len(f) != 3 {
		return 0, 0, "", false
	}
	v, err1 := strconv.ParseUint(string(f[0]), 10, 32)
	u, err2 := strconv.ParseUint(string(f[1]), 10, 32)
	if err1 != nil || err2 != nil || v == 0 || u == 0 || u == uint64(^uint32(0)) || !ValidMaildirName(string(f[2])) {
		return 0, 0, "", false
	}
	return uint32(v), uint32(u), string(f[2]), true
}

// applyLog applies the complete lines of data to m (cloned first unless
// owned, and only when a line applies) and returns the map, the bytes of
// the complete lines and their number.
func applyLog(m *uidMap, data []byte, owned bool) (*uidMap, int64, int) {
	var used int64
	lines := 0
	for {
		i := bytes.IndexByte(data[used:], '\n')
		if i < 0 {
			return m, used, lines
		}
		l := data[used : used+int64(i)]
		used += int64(i) + 1
		lines++
		v, u, key, ok := parseLogLine(l)
		if !ok || v != m.validity || u < m.next {
			continue
		}
		if _, dup := m.uid[key]; dup {
			continue
		}
		if !owned {
			m, owned = m.clone(), true
		}
		m.next = u
		_, _ = m.add(key) // u is below the last UID
	}
}

// readFrom reads a file from offset to its end (nothing when it does not
// exist); a symbolic link is not followed.
func readFrom(path string, off int64) ([]byte, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(fh)
}

// readHead returns the first line of a file (at most 128 bytes).
func readHead(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	var b [128]byte
	n, err := io.ReadFull(fh, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return headOf(b[:n]), nil
}

// headOf returns the first line of a snapshot's content.
func headOf(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// appendLog appends the lines (of n UIDs) to the folder's log, after
// cutting off a last line cut short, and syncs it (and the folder's
// directory when the log is new), so that the UIDs are durable; st is the
// state the map was read in, and the state after is returned. The caller
// holds the account's lock.
func (f *Folder) appendLog(st mapState, lines []byte, n int) (mapState, error) {
	p := filepath.Join(f.dir, UIDLogFile)
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return st, &LocalError{Err: fmt.Errorf("open UID log of %s: %w", f.dir, err)}
	}
	if st.logSize != st.logOff || st.logIno == 0 {
		err = fh.Truncate(st.logOff)
	}
	if err == nil {
		_, err = fh.Write(lines)
		if err == nil {
			err = fh.Sync()
		}
		if err != nil {
			_ = fh.Truncate(st.logOff) // no line cut short for the next
		}
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil && st.logIno == 0 {
		err = f.store.fs.SyncDir(f.dir)
	}
	if err != nil {
		return st, &LocalError{Err: fmt.Errorf("append to UID log of %s: %w", f.dir, err)}
	}
	ls, ok := stampOf(p)
	if !ok {
		return st, &LocalError{Err: fmt.Errorf("UID log of %s vanished", f.dir)}
	}
	st.logIno, st.logMtime = ls.ino, ls.mtime
	st.logTail = lastLine(lines)
	st.logOff += int64(len(lines))
	st.logSize = st.logOff
	st.logLines += n
	return st, nil
}

// emptyLog empties the folder's log after the snapshot was rewritten (its
// lines are all in the snapshot now, and would be ignored), and returns
// the stamp of the empty log (zero when it is not). The caller holds the
// account's lock.
func (f *Folder) emptyLog() fileStamp {
	p := filepath.Join(f.dir, UIDLogFile)
	fh, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW, 0) // a link placed there is not followed
	if err == nil {
		err = fh.Truncate(0)
		fh.Close()
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.store.log.Warn("mailstore: UID log not emptied", "folder", f.dir, "err", err)
	}
	if ls, ok := stampOf(p); ok && ls.size == 0 {
		return ls
	}
	return fileStamp{}
}
