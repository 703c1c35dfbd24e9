package pop3svc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"mailcluster"
	"mailcluster/mailstore"
)

// maildrop is a session's view of the account's INBOX as it was at
// login: message n is msgs[n-1] (in UID order).
type maildrop struct {
	folder   *mailstore.Folder
	validity uint32
	msgs     []mailstore.Message
	sizes    []int64 // POP3 sizes, -1 until known
	deleted  []bool  // marked by DELE
	ndeleted int
}

// openMaildrop reads the account's INBOX (a message delivered since the
// last look gets its UID now).
func (s *Server) openMaildrop(ctx context.Context, a *mailcluster.Account) (*maildrop, error) {
	fs, err := s.store.Folders(a)
	if err != nil {
		return nil, err
	}
	f, err := fs.Folder(mailstore.Inbox)
	if err != nil {
		return nil, err
	}
	snap, err := f.Sync(ctx)
	if err != nil {
		return nil, err
	}
	msgs := snap.Messages
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	d := &maildrop{folder: f, validity: snap.UIDValidity, msgs: msgs, sizes: make([]int64, len(msgs)), deleted: make([]bool, len(msgs))}
	for i := range d.sizes {
		d.sizes[i] = -1
	}
	return d, nil
}

// uidl is a message's unique id (RFC 1939 7): its IMAP UID prefixed with
// the folder's UIDVALIDITY.
func (d *maildrop) uidl(i int) string {
	return fmt.Sprintf("%d.%d", d.validity, d.msgs[i].UID)
}

// size is the POP3 size of message i+1: its octets with CRLF line ends,
// as RETR sends it before dot-stuffing. It is taken from a Dovecot-style
// ",W=" field of the file name, else counted once per server.
func (s *Server) size(d *maildrop, i int) int64 {
	if d.sizes[i] >= 0 {
		return d.sizes[i]
	}
	m := d.msgs[i]
	if n := wireSize(m.Key); n >= 0 {
		d.sizes[i] = n
		return n
	}
	key := d.folder.Dir() + "\x00" + m.Key
	if n, ok := s.sizes.Get(key); ok {
		d.sizes[i] = n
		return n
	}
	n, err := countWire(d.folder, m)
	if err != nil {
		// Removed meanwhile, or unreadable: the file's size will do
		// (RETR answers -ERR for it anyway).
		return m.Size
	}
	s.sizes.Add(key, n)
	d.sizes[i] = n
	return n
}

// wireSize parses ",W=<n>" of a Maildir unique name (-1 when none).
func wireSize(key string) int64 {
	i := strings.LastIndex(key, ",W=")
	if i < 0 {
		return -1
	}
	v := key[i+3:]
	if j := strings.IndexAny(v, ",:"); j >= 0 {
		v = v[:j]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// countWire counts a message's octets with CRLF line ends.
func countWire(f *mailstore.Folder, m mailstore.Message) (int64, error) {
	r, err := f.Open(m)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	mw := &messageWriter{w: io.Discard, bodyLines: -1, atStart: true}
	if _, err := io.Copy(mw, r); err != nil {
		return 0, err
	}
	if err := mw.finish(); err != nil {
		return 0, err
	}
	return mw.n, nil
}

// commit is the UPDATE state (RFC 1939 6): the messages marked with DELE
// get the \Deleted flag and are expunged through the store, which reports
// the usage freed and tells the Hub. Messages removed by another session
// meanwhile are gone as well. When the expunge fails, the \Deleted flags
// this set are taken back. It returns how many messages are left.
func (d *maildrop) commit(ctx context.Context) (int, error) {
	left := len(d.msgs) - d.ndeleted
	if d.ndeleted == 0 {
		return left, nil
	}
	var uids, added []uint32
	for i, m := range d.msgs {
		if d.deleted[i] {
			uids = append(uids, m.UID)
			if !strings.Contains(m.Flags, "T") {
				added = append(added, m.UID)
			}
		}
	}
	if _, err := d.folder.SetFlags(ctx, uids, mailstore.FlagsAdd, "T"); err != nil {
		return left, err
	}
	removed, err := d.folder.Expunge(ctx, uids)
	if err == nil {
		return left, nil
	}
	gone := map[uint32]bool{}
	for _, u := range removed {
		gone[u] = true
	}
	var back []uint32
	for _, u := range added {
		if !gone[u] {
			back = append(back, u)
		}
	}
	if len(back) > 0 {
		_, _ = d.folder.SetFlags(ctx, back, mailstore.FlagsRemove, "T")
	}
	return left, err
}

// errEnough ends the copy of a message once TOP has its lines.
var errEnough = errors.New("pop3svc: enough lines")

// messageWriter turns a message file into what POP3 sends (RFC 1939 3):
// every line end CRLF (a bare LF gets its CR), and with stuff a '.' that
// begins a line doubled. With bodyLines >= 0 it stops (errEnough) after
// the header, the empty line and that many lines of the body (TOP). n
// counts the octets written without the stuffing.
type messageWriter struct {
	w         io.Writer
	stuff     bool
	bodyLines int // -1: the whole message
	n         int64

	atStart bool // the next byte begins a line (set true to begin)
	blank   bool // the current line has nothing but CRs so far
	prevCR  bool
	inBody  bool
	body    int // body lines written
	buf     []byte
}

func (m *messageWriter) Write(p []byte) (int, error) {
	out := m.buf[:0]
	defer func() { m.buf = out[:0] }()
	for i, b := range p {
		if m.atStart {
			m.atStart, m.blank = false, true
			if b == '.' && m.stuff {
				out = append(out, '.')
			}
		}
		if b != '\n' {
			out = append(out, b)
			m.n++
			m.prevCR = b == '\r'
			m.blank = m.blank && m.prevCR
			continue
		}
		if !m.prevCR {
			out = append(out, '\r')
			m.n++
		}
		out = append(out, '\n')
		m.n++
		m.atStart, m.prevCR = true, false
		if m.inBody {
			m.body++
		} else if m.blank {
			m.inBody = true
		}
		if m.bodyLines >= 0 && m.inBody && m.body >= m.bodyLines {
			if _, err := m.w.Write(out); err != nil {
				return 0, err
			}
			return i + 1, errEnough
		}
	}
	if _, err := m.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish ends an unfinished last line with CRLF.
func (m *messageWriter) finish() error {
	if m.atStart {
		return nil
	}
	end := "\r\n"
	if m.prevCR {
		end = "\n"
	}
	m.n += int64(len(end))
	m.atStart = true
	_, err := io.WriteString(m.w, end)
	return err
}
