package imapsvc

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"mailcluster"
)

// Search answers SEARCH and UID SEARCH (ESEARCH RFC 4731 and SEARCHRES
// RFC 5182 through imapserver): flags, header fields, body and text,
// internal and sent dates, sizes, sequence numbers and UIDs, with NOT
// and OR. Keywords are not stored, so no message has one.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	s.staticCriteria(criteria)
	ts := sel.resolve(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	var topSeq, topUID uint32 // what "*" stands for
	for _, t := range ts {
		topSeq, topUID = max(topSeq, t.seq), max(topUID, t.msg.UID)
	}
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for _, t := range ts {
		c := &candidate{t: t, s: s, topSeq: topSeq, topUID: topUID}
		ok, err := c.match(criteria)
		if err != nil {
			return nil, s.fail(err)
		}
		if !ok {
			continue
		}
		uids.AddNum(imapUID(t.msg.UID))
		num := t.seq
		if kind == imapserver.NumKindUID {
			num = t.msg.UID
		}
		seqs.AddNum(t.seq)
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
		if uids == nil {
			data.All = imap.UIDSet{}
		}
	} else {
		data.All = seqs
		if seqs == nil {
			data.All = imap.SeqSet{}
		}
	}
	if options.ReturnSave {
		sel.searchRes = uids
	}
	return data, nil
}

// staticCriteria turns "$" (the saved result) into its UIDs.
func (s *session) staticCriteria(c *imap.SearchCriteria) {
	seqs := c.SeqNum[:0]
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			c.UID = append(c.UID, append(imap.UIDSet(nil), s.sel.searchRes...))
			continue
		}
		seqs = append(seqs, set)
	}
	c.SeqNum = seqs
	for i := range c.UID {
		if imap.IsSearchRes(c.UID[i]) {
			c.UID[i] = append(imap.UIDSet(nil), s.sel.searchRes...)
		}
	}
	for i := range c.Not {
		s.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		s.staticCriteria(&c.Or[i][0])
		s.staticCriteria(&c.Or[i][1])
	}
}

// candidate is a message being matched; its content is read once, when a
// criterion needs it.
type candidate struct {
	t       target
	s       *session
	topSeq  uint32
	topUID  uint32
	content []byte
	read    bool
	gone    bool
}

func (c *candidate) body() ([]byte, error) {
	if !c.read {
		c.read = true
		b, err := c.s.read(c.t.msg)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			c.gone = true
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		c.content = b
	}
	return c.content, nil
}

// header returns the message's header, from the node's header cache
// when it is there.
func (c *candidate) header() (mail.Header, error) {
	if c.content == nil {
		e, err := c.s.srv.headers.load(c.s.sel.box.folder, c.t.msg)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			c.gone = true
			return mail.Header{}, nil
		}
		if err != nil {
			return mail.Header{}, err
		}
		if e.hdr != nil {
			return mail.Header{Header: gomessage.Header{Header: *e.hdr}}, nil
		}
	}
	b, err := c.body()
	if err != nil || c.gone {
		return mail.Header{}, err
	}
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	return mail.Header{Header: gomessage.Header{Header: h}}, nil
}

func (c *candidate) match(cr *imap.SearchCriteria) (bool, error) {
	m := c.t.msg
	for _, set := range cr.SeqNum {
		s := append(imap.SeqSet(nil), set...)
		for i := range s {
			staticRange(&s[i].Start, &s[i].Stop, c.topSeq)
		}
		if !s.Contains(c.t.seq) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		s := append(imap.UIDSet(nil), set...)
		for i := range s {
			staticRange((*uint32)(&s[i].Start), (*uint32)(&s[i].Stop), c.topUID)
		}
		if !s.Contains(imapUID(m.UID)) {
			return false, nil
		}
	}
	if (!cr.Since.IsZero() || !cr.Before.IsZero()) && !matchDate(c.s.sel.box.folder.InternalDate(m), cr.Since, cr.Before) {
		return false, nil
	}
	for _, f := range cr.Flag {
		if l := letterOf(f); l == 0 || !strings.Contains(m.Flags, string(l)) {
			return false, nil
		}
	}
	for _, f := range cr.NotFlag {
		if l := letterOf(f); l != 0 && strings.Contains(m.Flags, string(l)) {
			return false, nil
		}
	}
	if cr.Larger != 0 && m.Size <= cr.Larger || cr.Smaller != 0 && m.Size >= cr.Smaller {
		return false, nil
	}
	if len(cr.Header) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		h, err := c.header()
		if err != nil || c.gone {
			return false, err
		}
		for _, hf := range cr.Header {
			if !matchFields(h.FieldsByKey(hf.Key), hf.Value) {
				return false, nil
			}
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, cr.SentSince, cr.SentBefore) {
				return false, nil
			}
		}
	}
	for _, texts := range []struct {
		patterns []string
		header   bool
	}{{cr.Body, false}, {cr.Text, true}} {
		for _, p := range texts.patterns {
			b, err := c.body()
			if err != nil || c.gone {
				return false, err
			}
			e, err := gomessage.Read(bytes.NewReader(b))
			if e == nil {
				return false, nil
			}
			_ = err // an unknown charset or encoding still gives the raw part
			if !matchEntity(e, p, texts.header) {
				return false, nil
			}
		}
	}
	for i := range cr.Not {
		ok, err := c.match(&cr.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range cr.Or {
		a, err := c.match(&cr.Or[i][0])
		if err != nil {
			return false, err
		}
		if a {
			continue
		}
		b, err := c.match(&cr.Or[i][1])
		if err != nil || !b {
			return false, err
		}
	}
	return true, nil
}

// matchDate compares dates only (RFC 9051 6.4.4: time and zone are
// ignored).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	return before.IsZero() || d.Before(before)
}

// matchFields: a field of the name containing value (any such field when
// value is empty), case-insensitively.
func matchFields(fields gomessage.HeaderFields, value string) bool {
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) {
			return true
		}
	}
	return false
}

// matchEntity looks for pattern in the text parts of a message (and its
// header fields with header), case-insensitively.
func matchEntity(e *gomessage.Entity, pattern string, header bool) bool {
	if header && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF || p == nil {
				return false
			}
			if matchEntity(p, pattern, header) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	if err != nil && len(b) == 0 {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}
