package imapsvc

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailcluster"
	"mailcluster/mailstore"
)

// selection is the selected folder of a session.
type selection struct {
	box       *mailbox
	tracker   *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet // SEARCHRES (RFC 5182): the last saved result
}

// target is a message a command names: its sequence number as the client
// knows it, and the message.
type target struct {
	seq uint32
	msg mailstore.Message
}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "The folder is selected read-only (EXAMINE)"}

// Select selects a folder (SELECT, EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	ctx, cancel := s.ctx()
	defer cancel()
	f, err := s.folders.Folder(name)
	if err != nil {
		return nil, s.fail(err)
	}
	box, fresh, err := s.srv.boxes.open(ctx, f)
	if err != nil {
		return nil, s.fail(err)
	}
	// A view read by open is current; one shared already is brought up
	// to date.
	if err := box.syncUnless(ctx, fresh); err != nil {
		s.srv.boxes.release(box)
		return nil, s.fail(err)
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	sel := &selection{box: box, tracker: box.tracker.NewSession(), readOnly: options.ReadOnly}
	data := &imap.SelectData{
		Flags:       supportedFlags(),
		NumMessages: uint32(len(box.msgs)),
		UIDNext:     imapUID(box.next),
		UIDValidity: box.validity,
		List:        &imap.ListData{Mailbox: f.Name(), Delim: mailstore.Delimiter},
	}
	if !options.ReadOnly {
		data.PermanentFlags = supportedFlags()
	}
	for i, m := range box.msgs {
		if !strings.Contains(m.Flags, "S") {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	s.sel = sel
	return data, nil
}

// Unselect leaves the selected folder (UNSELECT, CLOSE after its expunge).
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	if s.sel == nil {
		return
	}
	s.sel.tracker.Close()
	s.srv.boxes.release(s.sel.box)
	s.sel = nil
}

// resolve returns the messages of a sequence or UID set that the client
// knows of (a new message is named only once its EXISTS was sent), in
// sequence order.
func (sel *selection) resolve(numSet imap.NumSet) []target {
	if imap.IsSearchRes(numSet) {
		numSet = append(imap.UIDSet(nil), sel.searchRes...)
	}
	box := sel.box
	box.mu.Lock()
	defer box.mu.Unlock()
	var out []target
	switch set := numSet.(type) {
	case imap.SeqSet:
		var top uint32 // the client's highest sequence number
		for i := len(box.msgs); i >= 1 && top == 0; i-- {
			top = sel.tracker.EncodeSeqNum(uint32(i))
		}
		set = append(imap.SeqSet(nil), set...)
		for i := range set {
			staticRange(&set[i].Start, &set[i].Stop, top)
		}
		for i, m := range box.msgs {
			if seq := sel.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 && set.Contains(seq) {
				out = append(out, target{seq, m})
			}
		}
	case imap.UIDSet:
		var top uint32
		if len(box.msgs) > 0 {
			top = box.msgs[len(box.msgs)-1].UID
		}
		set = append(imap.UIDSet(nil), set...)
		for i := range set {
			staticRange((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), top)
		}
		for i, m := range box.msgs {
			if set.Contains(imapUID(m.UID)) {
				if seq := sel.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 {
					out = append(out, target{seq, m})
				}
			}
		}
	}
	return out
}

// staticRange replaces "*" (0) in a range by top.
func staticRange(start, stop *uint32, top uint32) {
	if *start == 0 {
		*start = top
	}
	if *stop == 0 {
		*stop = top
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func uidsOf(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.msg.UID
	}
	return out
}

// setFlags changes flags on disk and in the view (the other sessions are
// told; this one answers itself) and returns the flags by UID.
func (s *session) setFlags(ts []target, op mailstore.FlagOp, letters string) (map[uint32]string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	box := s.sel.box
	box.opMu.Lock()
	defer box.opMu.Unlock()
	flags, err := box.folder.SetFlags(ctx, uidsOf(ts), op, letters)
	box.setFlags(flags, s.sel.tracker)
	return flags, err
}

// Fetch answers FETCH and UID FETCH. Reading a body section without PEEK
// sets \Seen (not on a read-only selection), and the FLAGS are sent with
// it.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	ts := s.sel.resolve(numSet)
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	for _, bs := range options.BinarySection {
		markSeen = markSeen || !bs.Peek
	}
	seen := map[uint32]bool{}
	if markSeen && !s.sel.readOnly {
		var unseen []target
		for _, t := range ts {
			if !strings.Contains(t.msg.Flags, "S") {
				unseen = append(unseen, t)
			}
		}
		if len(unseen) > 0 {
			flags, err := s.setFlags(unseen, mailstore.FlagsAdd, "S")
			if err != nil {
				return s.fail(err)
			}
			for i, t := range ts {
				if f, ok := flags[t.msg.UID]; ok {
					ts[i].msg.Flags = f
					seen[t.msg.UID] = true
				}
			}
		}
	}
	for _, t := range ts {
		if err := s.fetchOne(w, t, options, seen[t.msg.UID]); err != nil {
			return err
		}
	}
	return nil
}

// fetchOne writes the FETCH response of one message. A message expunged
// by another session meanwhile is left out. The envelope comes from the
// node's header cache; a whole message (BODY[]) is copied from its file;
// other parts read the whole message.
func (s *session) fetchOne(w *imapserver.FetchWriter, t target, options *imap.FetchOptions, flagsChanged bool) error {
	folder := s.sel.box.folder
	var content []byte
	needContent := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	streamed := false
	for _, bs := range options.BodySection {
		if wholeMessage(bs) {
			streamed = true
		} else {
			needContent = true
		}
	}
	gone := func(err error) bool { return mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND }
	if needContent {
		var err error
		content, err = s.read(t.msg)
		if gone(err) {
			return nil
		}
		if err != nil {
			return s.fail(err)
		}
	}
	var file *os.File
	var fileSize int64
	if streamed && content == nil {
		var err error
		file, err = folder.Open(t.msg)
		if gone(err) {
			return nil
		}
		if err != nil {
			return s.fail(err)
		}
		defer file.Close()
		st, err := file.Stat()
		if err != nil {
			return s.fail(&mailstore.LocalError{Err: err})
		}
		fileSize = st.Size()
	}
	var env *imap.Envelope
	if options.Envelope {
		e, err := s.srv.headers.load(folder, t.msg)
		if gone(err) {
			return nil
		}
		if err != nil {
			return s.fail(err)
		}
		env = e.env
	}
	rw := w.CreateMessage(t.seq)
	rw.WriteUID(imapUID(t.msg.UID))
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(t.msg.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(folder.InternalDate(t.msg))
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(t.msg.Size)
	}
	if env != nil {
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(content)))
	}
	for _, bs := range options.BodySection {
		if file != nil {
			if err := copyLiteral(rw.WriteBodySection(bs, fileSize), file, fileSize); err != nil {
				return err
			}
			continue
		}
		b := imapserver.ExtractBodySection(bytes.NewReader(content), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(content), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(content), bss))
	}
	return rw.Close()
}

// wholeMessage reports whether a body section is the whole message
// (BODY[] without a part or a range).
func wholeMessage(bs *imap.FetchItemBodySection) bool {
	return bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && bs.Partial == nil
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyLiteral writes the first size bytes of a file as a literal (a file
// that shrank meanwhile is padded with spaces, the literal's size being
// sent already).
func copyLiteral(wc io.WriteCloser, f *os.File, size int64) error {
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(struct{ io.Writer }{wc}, io.NewSectionReader(f, 0, size), *buf)
	copyBuffers.Put(buf)
	if err == nil && n < size {
		_, err = wc.Write(bytes.Repeat([]byte{' '}, int(size-n)))
	}
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// read returns a message's content. Errors: ENOTFOUND, *LocalError.
func (s *session) read(m mailstore.Message) ([]byte, error) {
	f, err := s.sel.box.folder.Open(m)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max(m.Size, 0)+1<<20))
	if err != nil {
		return nil, &mailstore.LocalError{Err: err}
	}
	return b, nil
}

// Store answers STORE and UID STORE: the flags are renamed into the
// files; keywords other than $Forwarded are not kept.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, sf *imap.StoreFlags, _ *imap.StoreOptions) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	ts := s.sel.resolve(numSet)
	op := map[imap.StoreFlagsOp]mailstore.FlagOp{imap.StoreFlagsAdd: mailstore.FlagsAdd, imap.StoreFlagsDel: mailstore.FlagsRemove,
		imap.StoreFlagsSet: mailstore.FlagsSet}[sf.Op]
	flags, err := s.setFlags(ts, op, maildirLetters(sf.Flags))
	if err != nil {
		return s.fail(err)
	}
	if sf.Silent {
		return nil
	}
	for _, t := range ts {
		f, ok := flags[t.msg.UID]
		if !ok {
			continue // expunged meanwhile
		}
		rw := w.CreateMessage(t.seq)
		rw.WriteUID(imapUID(t.msg.UID))
		rw.WriteFlags(imapFlags(f))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge removes the messages flagged \Deleted (of uids, for UID
// EXPUNGE). The EXPUNGE responses follow from the sync, for every
// session of the folder.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	var set imap.NumSet = imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
	if uids != nil {
		set = *uids
	}
	var del []uint32
	for _, t := range s.sel.resolve(set) {
		if strings.Contains(t.msg.Flags, "T") {
			del = append(del, t.msg.UID)
		}
	}
	if len(del) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	box := s.sel.box
	box.opMu.Lock()
	defer box.opMu.Unlock()
	_, err := box.folder.Expunge(ctx, del)
	if serr := box.syncLocked(ctx); err == nil && serr != nil {
		s.log.Debug("imap: sync after expunge", "err", serr)
	}
	return s.fail(err)
}

// destination returns the folder a COPY or MOVE goes to.
func (s *session) destination(name string) (*mailstore.Folder, error) {
	f, err := s.folders.Folder(name)
	if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such folder"}
	}
	if err != nil {
		return nil, s.fail(err)
	}
	return f, nil
}

// Copy answers COPY and UID COPY with COPYUID (RFC 4315).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	dst, err := s.destination(dest)
	if err != nil {
		return nil, err
	}
	ts := s.sel.resolve(numSet)
	ctx, cancel := s.ctx()
	defer cancel()
	validity, src, dstUIDs, err := s.sel.box.folder.CopyTo(ctx, uidsOf(ts), dst)
	if err != nil {
		return nil, s.fail(err)
	}
	s.syncSelected(ctx, dst)
	if len(src) == 0 {
		return nil, nil
	}
	return &imap.CopyData{UIDValidity: validity, SourceUIDs: uidSet(src), DestUIDs: uidSet(dstUIDs)}, nil
}

// Move answers MOVE and UID MOVE (RFC 6851): COPYUID first, then the
// EXPUNGE responses of the sync.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	dst, err := s.destination(dest)
	if err != nil {
		return err
	}
	if dst.Dir() == s.sel.box.folder.Dir() {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Source and destination are the same folder"}
	}
	ts := s.sel.resolve(numSet)
	ctx, cancel := s.ctx()
	defer cancel()
	box := s.sel.box
	box.opMu.Lock()
	validity, src, dstUIDs, err := box.folder.MoveTo(ctx, uidsOf(ts), dst)
	if len(src) > 0 {
		if serr := box.syncLocked(ctx); serr != nil {
			s.log.Debug("imap: sync after move", "err", serr)
		}
	}
	box.opMu.Unlock()
	if err != nil {
		return s.fail(err)
	}
	if len(src) > 0 {
		if err := w.WriteCopyData(&imap.CopyData{UIDValidity: validity, SourceUIDs: uidSet(src), DestUIDs: uidSet(dstUIDs)}); err != nil {
			return err
		}
	}
	return nil
}

func uidSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imapUID(u))
	}
	return set
}
