package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailcluster/internal/atomicfile"

	"mailcluster"
)

// The outbox's file is an append-only log of records, in a file whose
// space is written (with zeros) and synced before records go into it:
// appending a commit's records then changes no metadata of the file (its
// size and blocks stay), so that its fdatasync writes the records' block
// and flushes the disk cache once, where a commit of a B+tree (bbolt)
// writes several pages and syncs twice. A commit is one write of its
// records followed by one fdatasync; a crash can leave only the last
// commit's records in part, and reading stops at the first record whose
// checksum fails.
//
// Layout: logMagic, then records: a 4-byte little-endian length of the
// payload, its CRC-32C, the payload. A length of zero (the space written
// ahead) ends the log. The first record is the header; its kind and the
// others':
//
//	'H' header: JSON logHeader (the epoch, the last sequence number given,
//	    the last one the primary acknowledged)
//	'D' a delta: JSON mailcluster.UsageDelta, sequence numbers increasing
//	'A' acknowledged: the primary applied every delta up to this sequence
//	    number (8 bytes, big-endian)
//
// The file is written anew (compacted) when it is opened, after a failed
// append, and when the space written ahead is used up and most of its
// deltas were acknowledged: the new file (path + ".new") is written and
// synced, then renamed over the old one and the directory synced, so that
// a crash leaves one of the two whole (either holds every delta not
// acknowledged).
var logMagic = []byte("mailcluster outbox log 1\n")

const (
	recordHeader = 'H'
	recordDelta  = 'D'
	recordAck    = 'A'

	// maxRecord bounds the payload length a reader accepts.
	maxRecord = 1 << 20
	// minLogSpace is the space a new file is written with; growLogSpace
	// bounds one growth of the space.
	minLogSpace  = 256 << 10
	growLogSpace = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type logHeader struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"` // the last sequence number given
	Ack   uint64 `json:"ack"`
}

// logState is what a log file holds: its header's epoch, the last
// sequence number given, the last acknowledged, and the deltas after it.
type logState struct {
	logHeader
	deltas []mailcluster.UsageDelta
}

// outboxLog is the open log file; only the commit loop (and Close)
// writes it, under Outbox.logMu.
type outboxLog struct {
	f    *os.File
	off  int64 // end of the last record
	size int64 // the space written ahead and synced
	// records counts the deltas written to the file; broken is set when
	// an append failed (the file's end is unknown): the next write
	// writes the file anew.
	records int
	broken  bool
}

// frame appends a record of kind with body to buf.
func frame(buf []byte, kind byte, body []byte) []byte {
	n := 1 + len(body)
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, 0)
	buf = append(buf, kind)
	buf = append(buf, body...)
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+8:], castagnoli))
	return buf
}

func frameDelta(buf []byte, d mailcluster.UsageDelta) []byte {
	v, _ := json.Marshal(d) // a UsageDelta always encodes
	return frame(buf, recordDelta, v)
}

func frameAck(buf []byte, seq uint64) []byte {
	return frame(buf, recordAck, binary.BigEndian.AppendUint64(nil, seq))
}

// parseLog reads the records of a log file's content. ignored is how many
// bytes after the log's end are not zeros (a commit cut by a crash, or
// damage).
func parseLog(data []byte) (st logState, ignored int, err error) {
	if !bytes.HasPrefix(data, logMagic) {
		return st, 0, errors.New("not an outbox log")
	}
	off := len(logMagic)
	first := true
	var last uint64 // the sequence number of the last delta read
	for {
		if off+8 > len(data) {
			break
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 || n > maxRecord || off+8+n > len(data) {
			break
		}
		payload := data[off+8 : off+8+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
			break
		}
		kind, body := payload[0], payload[1:]
		if first != (kind == recordHeader) {
			if first {
				return st, 0, errors.New("outbox log without its header")
			}
			break
		}
		first = false
		ok := true
		switch kind {
		case recordHeader:
			ok = json.Unmarshal(body, &st.logHeader) == nil && st.Epoch != ""
		case recordDelta:
			// Sequence numbers increase along the file; the header's
			// may be above its deltas' (numbers given to commits that
			// failed).
			var d mailcluster.UsageDelta
			ok = json.Unmarshal(body, &d) == nil && d.Seq > last
			if ok {
				last = d.Seq
				st.Seq = max(st.Seq, d.Seq)
				st.deltas = append(st.deltas, d)
			}
		case recordAck:
			ok = len(body) == 8
			if ok {
				st.Ack = max(st.Ack, binary.BigEndian.Uint64(body))
			}
		default:
			ok = false
		}
		if !ok {
			break
		}
		off += 8 + n
	}
	if first {
		return st, 0, errors.New("outbox log without its header")
	}
	for _, b := range data[off:] {
		if b != 0 {
			ignored++
		}
	}
	st.dropAcked()
	return st, ignored, nil
}

// dropAcked leaves out the deltas the primary acknowledged.
func (st *logState) dropAcked() {
	i := 0
	for i < len(st.deltas) && st.deltas[i].Seq <= st.Ack {
		i++
	}
	st.deltas = st.deltas[i:]
}

// readOutbox reads the outbox file at path: a log, or the bbolt file of
// earlier versions (its deltas are carried over). found is false when
// there is none.
func readOutbox(path string) (st logState, found bool, ignored int, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, 0, nil
	}
	if err != nil {
		return st, false, 0, err
	}
	if len(data) == 0 {
		return st, false, 0, nil
	}
	if bytes.HasPrefix(data, logMagic) {
		st, ignored, err = parseLog(data)
		return st, true, ignored, err
	}
	st, err = readBoltOutbox(path)
	if err != nil {
		return st, false, 0, fmt.Errorf("neither an outbox log nor an earlier outbox file: %w", err)
	}
	return st, true, 0, nil
}

var (
	bucketOutbox = []byte("usage")
	bucketEpoch  = []byte("epoch")
)

// readBoltOutbox reads the bbolt outbox file of earlier versions: its
// epoch, its sequence and the deltas it holds.
func readBoltOutbox(path string) (st logState, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return st, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		eb, b := tx.Bucket(bucketEpoch), tx.Bucket(bucketOutbox)
		if eb == nil || b == nil {
			return errors.New("no outbox buckets")
		}
		st.Epoch = string(eb.Get(bucketEpoch))
		st.Seq = b.Sequence()
		return b.ForEach(func(_, v []byte) error {
			var d mailcluster.UsageDelta
			if json.Unmarshal(v, &d) == nil {
				st.deltas = append(st.deltas, d)
				st.Seq = max(st.Seq, d.Seq)
			}
			return nil
		})
	})
	if err == nil && st.Epoch == "" {
		err = errors.New("outbox file without its epoch")
	}
	return st, err
}

// writeLog writes a new log file holding st (its header, then its
// deltas) with space written ahead for about as much again, and puts it
// in place of path.
func writeLog(path string, st logState) (*outboxLog, error) {
	buf := append([]byte(nil), logMagic...)
	h, _ := json.Marshal(st.logHeader)
	buf = frame(buf, recordHeader, h)
	for _, d := range st.deltas {
		buf = frameDelta(buf, d)
	}
	size := max(int64(minLogSpace), roundSpace(2*int64(len(buf))))
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*outboxLog, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fail(err)
	}
	if err := writeZeros(f, int64(len(buf)), size); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return &outboxLog{f: f, off: int64(len(buf)), size: size, records: len(st.deltas)}, nil
}

// roundSpace rounds n up to a multiple of 64 KiB.
func roundSpace(n int64) int64 { return (n + 64<<10 - 1) &^ (64<<10 - 1) }

// writeZeros writes zeros to f from off to end.
func writeZeros(f *os.File, off, end int64) error {
	zeros := make([]byte, min(end-off, 1<<20))
	for off < end {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// fits reports whether n bytes of records fit in the space written ahead.
func (l *outboxLog) fits(n int) bool { return l.off+int64(n) <= l.size }

// grow writes space ahead for at least n more bytes of records (and
// syncs it with the file's metadata).
func (l *outboxLog) grow(n int) error {
	size := roundSpace(l.off + int64(n) + min(max(l.size, minLogSpace), growLogSpace))
	if err := writeZeros(l.f, l.size, size); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	l.size = size
	return nil
}

// append writes records (framed) after the last one and syncs them with
// one fdatasync (write, then sync). A failure marks the log broken.
func (l *outboxLog) append(records []byte, deltas int) error {
	if err := l.write(records, deltas); err != nil {
		return err
	}
	return l.sync()
}

// write writes records (framed) after the last one, growing the space
// first when they do not fit, without a sync: a later sync (of the file,
// or of its whole file system) makes them durable. A failure marks the
// log broken.
func (l *outboxLog) write(records []byte, deltas int) error {
	if !l.fits(len(records)) {
		if err := l.grow(len(records)); err != nil {
			l.broken = true
			return err
		}
	}
	if _, err := l.f.WriteAt(records, l.off); err != nil {
		l.broken = true
		return err
	}
	l.off += int64(len(records))
	l.records += deltas
	return nil
}

// sync makes every record written durable with one fdatasync. A failure
// marks the log broken.
func (l *outboxLog) sync() error {
	if err := fdatasync(l.f); err != nil {
		l.broken = true
		return err
	}
	return nil
}

func (l *outboxLog) close() error { return l.f.Close() }
