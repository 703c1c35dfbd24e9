package xmlapi

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/beevik/etree"
)

// xmlDeclaration starts every answer.
const xmlDeclaration = `<?xml version="1.0" encoding="utf-8"?>`

// writeSettings are etree's default write settings, with which every
// token of an answer is written.
var writeSettings = etree.NewDocument().WriteSettings

// indentSpaces holds the indentation of the deepest levels written
// without allocating; deeper levels are written in slices of it.
const indentSpaces = "                                                                "

// xmlWriter writes an answer token by token, without building a tree: the
// same bytes as etree's Document.Indent(2) and WriteTo give for the tree
// those tokens describe (see element for a tree written inside). Each
// element starts on its own line, indented by two spaces per level; an
// element without children is closed with "/>"; a text element keeps its
// text on its line. Names are written as given (they are the package's
// constants); attribute values and text are escaped by etree's own
// (*etree.Attr).WriteTo and (*etree.CharData).WriteTo with writeSettings,
// unless they need no escaping (see plain).
// Its zero value with buf set is ready.
type xmlWriter struct {
	buf   *bytes.Buffer
	level int  // elements started and not ended
	open  bool // the last start tag still lacks its '>' (or "/>")
}

// declaration writes the XML declaration and its line break.
func (w *xmlWriter) declaration() {
	w.buf.WriteString(xmlDeclaration)
	w.buf.WriteByte('\n')
}

// finish writes the line break that ends an answer.
func (w *xmlWriter) finish() {
	w.buf.WriteByte('\n')
}

// start writes the start tag of an element, up to its attributes (see
// attr); its children follow, then end.
func (w *xmlWriter) start(tag string) {
	w.child()
	w.buf.WriteByte('<')
	w.buf.WriteString(tag)
	w.open = true
	w.level++
}

// attr writes an attribute of the element just started.
func (w *xmlWriter) attr(key, value string) {
	w.buf.WriteByte(' ')
	if plain(value) {
		w.buf.WriteString(key)
		w.buf.WriteString(`="`)
		w.buf.WriteString(value)
		w.buf.WriteByte('"')
		return
	}
	a := etree.Attr{Key: key, Value: value}
	a.WriteTo(w.buf, &writeSettings)
}

// escapedText writes character data as (*etree.CharData).WriteTo does.
func (w *xmlWriter) escapedText(text string) {
	if plain(text) {
		w.buf.WriteString(text)
		return
	}
	cd := etree.CharData{Data: text}
	cd.WriteTo(w.buf, &writeSettings)
}

// plain tells whether etree's escaping with writeSettings (etree's
// defaults: neither canonical text nor canonical attribute values, double
// quotes) leaves s as it is, so that it may be written without going
// through etree: s holds only ASCII from space to DEL other than
// & < > " ', and tab, line feed and carriage return. TestPlainAsEtree
// checks every byte.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainBytes[s[i]] {
			return false
		}
	}
	return true
}

// plainBytes marks the bytes plain accepts.
var plainBytes = func() (t [256]bool) {
	for b := 0x20; b <= 0x7f; b++ {
		t[b] = true
	}
	for _, b := range "\t\n\r" {
		t[b] = true
	}
	for _, b := range `&<>"'` {
		t[b] = false
	}
	return t
}()

// attrUnescaped writes an attribute whose value escaping leaves as it is
// (a number: digits, '-', '+', '.'), without making it a string.
func (w *xmlWriter) attrUnescaped(key string, value []byte) {
	w.buf.WriteByte(' ')
	w.buf.WriteString(key)
	w.buf.WriteString(`="`)
	w.buf.Write(value)
	w.buf.WriteByte('"')
}

// end closes the innermost element: "/>" when it has no children, else
// its end tag on a line of its own.
func (w *xmlWriter) end(tag string) {
	w.level--
	if w.open {
		w.buf.WriteString("/>")
		w.open = false
		return
	}
	writeIndent(w.buf, w.level)
	w.buf.WriteString("</")
	w.buf.WriteString(tag)
	w.buf.WriteByte('>')
}

// text writes <tag>text</tag>, or <tag/> when text is empty: an element
// built with addText, as writeElement writes it.
func (w *xmlWriter) text(tag, text string) {
	w.start(tag)
	w.endText(tag, text)
}

// endText closes the element just started (and given its attributes)
// with text as its only child, on the same line: ">text</tag>", or "/>"
// when text is empty.
func (w *xmlWriter) endText(tag, text string) {
	w.level--
	w.open = false
	if text == "" {
		w.buf.WriteString("/>")
		return
	}
	w.buf.WriteByte('>')
	w.escapedText(text)
	w.closeTag(tag)
}

// address writes <tag>local@domain</tag>, the text element of an
// address, without joining its parts first. Escaping the parts one by one
// gives the bytes of escaping the address: '@' is written as is and no
// character (nor an invalid byte) reaches across it.
func (w *xmlWriter) address(tag, local, domain string) {
	w.openText(tag)
	w.escapedText(local)
	w.buf.WriteByte('@')
	w.escapedText(domain)
	w.closeTag(tag)
}

// number writes <tag>n</tag> in decimal; digits and '-' need no escaping.
func (w *xmlWriter) number(tag string, n int64) {
	var b [20]byte
	w.openText(tag)
	w.buf.Write(strconv.AppendInt(b[:0], n, 10))
	w.closeTag(tag)
}

// timestamp writes <tag>t</tag> as formatTime gives it (RFC 3339 in UTC,
// whose characters need no escaping), or <tag/> for the zero time.
func (w *xmlWriter) timestamp(tag string, t time.Time) {
	if t.IsZero() {
		w.text(tag, "")
		return
	}
	var b [len(time.RFC3339) + 8]byte
	w.openText(tag)
	w.buf.Write(t.UTC().AppendFormat(b[:0], time.RFC3339))
	w.closeTag(tag)
}

// openText writes the start tag of a text element, "<tag>", on its own
// line; its text and closeTag follow on the same line.
func (w *xmlWriter) openText(tag string) {
	w.child()
	w.buf.WriteByte('<')
	w.buf.WriteString(tag)
	w.buf.WriteByte('>')
}

// closeTag writes the end tag of a text element, after its text.
func (w *xmlWriter) closeTag(tag string) {
	w.buf.WriteString("</")
	w.buf.WriteString(tag)
	w.buf.WriteByte('>')
}

// element writes the tree e as a child of the element being written (or
// as the root), as writeElement does.
func (w *xmlWriter) element(e *etree.Element) {
	w.child()
	writeElement(w.buf, e, w.level+1)
}

// child prepares for a child of the innermost element: the '>' of its
// start tag, and the child's line.
func (w *xmlWriter) child() {
	if w.open {
		w.buf.WriteByte('>')
		w.open = false
	}
	if w.level > 0 {
		writeIndent(w.buf, w.level)
	}
}

// writeElement writes e, whose children are indented at depth (>= 1)
// and whose end tag, when it follows an indented child, at depth-1: the
// same bytes as etree's Indent(2) and WriteTo, without changing the tree.
// Character data that etree marks as whitespace (indentation read from a
// request, kept in an echoed copy) is left out, as Indent removes it;
// everything else is written by the tokens' own WriteTo, so escaping is
// etree's.
func writeElement(buf *bytes.Buffer, e *etree.Element, depth int) {
	buf.WriteByte('<')
	writeTag(buf, e)
	for i := range e.Attr {
		buf.WriteByte(' ')
		e.Attr[i].WriteTo(buf, &writeSettings)
	}
	empty := true
	lastIndented := false
	for _, c := range e.Child {
		cd, isCharData := c.(*etree.CharData)
		if isCharData && cd.IsWhitespace() {
			continue
		}
		if empty {
			buf.WriteByte('>')
			empty = false
		}
		lastIndented = !isCharData
		if isCharData {
			cd.WriteTo(buf, &writeSettings)
			continue
		}
		writeIndent(buf, depth)
		if ce, ok := c.(*etree.Element); ok {
			writeElement(buf, ce, depth+1)
		} else {
			c.WriteTo(buf, &writeSettings)
		}
	}
	if empty {
		buf.WriteString("/>")
		return
	}
	if lastIndented {
		writeIndent(buf, depth-1)
	}
	buf.WriteString("</")
	writeTag(buf, e)
	buf.WriteByte('>')
}

// writeTag writes the element's name with its namespace prefix.
func writeTag(buf *bytes.Buffer, e *etree.Element) {
	if e.Space != "" {
		buf.WriteString(e.Space)
		buf.WriteByte(':')
	}
	buf.WriteString(e.Tag)
}

// writeIndent writes a line break and two spaces per level.
func writeIndent(buf *bytes.Buffer, depth int) {
	buf.WriteByte('\n')
	for n := 2 * depth; n > 0; {
		k := min(n, len(indentSpaces))
		buf.WriteString(indentSpaces[:k])
		n -= k
	}
}

// maxPooledBuffer is the largest buffer kept for reuse: a rare large
// answer or request is left to the garbage collector rather than held.
const maxPooledBuffer = 64 << 10

// bufferPool holds the buffers of request bodies and answers.
var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// getBuffer returns an empty buffer from the pool.
func getBuffer() *bytes.Buffer {
	b := bufferPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// putBuffer returns b to the pool unless it grew large. Nothing may use
// b or its bytes afterwards.
func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		bufferPool.Put(b)
	}
}
