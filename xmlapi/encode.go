package xmlapi

import (
	"bytes"
	"sync"

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

// writeAnswer writes the XML declaration and the element root, indented
// by two spaces per level, in one pass over the tree: the same bytes as
// etree's Document.Indent(2) followed by WriteTo on a document holding
// the declaration and root, without changing the tree. Character data
// that etree marks as whitespace (indentation read from a request, kept in
// an echoed copy) is left out, as Indent removes it; everything else is
// written by the tokens' own WriteTo, so escaping is etree's.
func writeAnswer(buf *bytes.Buffer, root *etree.Element) {
	buf.WriteString(xmlDeclaration)
	buf.WriteByte('\n')
	writeElement(buf, root, 1)
	buf.WriteByte('\n')
}

// writeElement writes e, whose children are indented at depth (>= 1)
// and whose end tag, when it follows an indented child, at depth-1.
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
