package mailsvc

// The header fields of mailing list mail: List-Id (RFC 2919), List-Post,
// List-Unsubscribe and List-Owner (RFC 2369), and the fields the copies
// of a list change. Every value written here comes from stored data that
// is either validated (addresses, names, domains: checked again here) or
// free text (a list's description: control characters removed, quoted).

import (
	"bytes"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"mailcluster"
)

// maxDescription is the most characters of a list's description that go
// into its List-Id field.
const maxDescription = 200

// listID returns the list-id of RFC 2919 of a list: its address with the
// '@' replaced by '.'.
func listID(l *mailcluster.MailingList) string {
	return strings.Replace(listAddress(l), "@", ".", 1)
}

// listAddress returns the list's address, valid as SplitAddress checks
// it, or "" when the stored name or domain is not valid.
func listAddress(l *mailcluster.MailingList) string {
	return safeAddress(l.Address())
}

// safeAddress returns addr normalized when it is a valid address, else "".
// Such an address holds only [a-z0-9._+-], '@' and a domain name, so it
// can be written in a header field and in a mailto: URL as it is.
func safeAddress(addr string) string {
	mb, dom, err := mailcluster.SplitAddress(addr)
	if err != nil {
		return ""
	}
	return mb + "@" + dom
}

// listHeader returns the header fields that a list's copy of a message
// carries at its top (after the trace fields): List-Id with the list's
// description as its phrase, List-Post, List-Unsubscribe and List-Owner
// (mail to the owner, or to postmaster@ of the list's domain when the list
// has none), Precedence: list, and Reply-To: the list in reply-to mode
// "list" (the message's own Reply-To fields are removed by the caller).
func listHeader(l *mailcluster.MailingList) []byte {
	addr := listAddress(l)
	if addr == "" {
		return nil // never stored: names and domains are validated
	}
	owner := safeAddress(l.Owner)
	if owner == "" {
		owner = mailcluster.Postmaster + "@" + strings.SplitN(addr, "@", 2)[1]
	}
	var b bytes.Buffer
	b.WriteString("List-Id: ")
	if p := descriptionPhrase(l.Description); p != "" {
		b.WriteString(p)
		b.WriteString(" ")
	}
	b.WriteString("<" + listID(l) + ">\r\n")
	b.WriteString("List-Post: <mailto:" + addr + ">\r\n")
	b.WriteString("List-Unsubscribe: <mailto:" + owner + "?subject=unsubscribe%20" + addr + ">\r\n")
	b.WriteString("List-Owner: <mailto:" + owner + ">\r\n")
	b.WriteString("Precedence: list\r\n")
	if l.ReplyTo == mailcluster.ListReplyToList {
		b.WriteString("Reply-To: <" + addr + ">\r\n")
	}
	return b.Bytes()
}

// reviewHeader returns the field added to a post that a moderated list
// holds for its owner's review. The copy carries none of the list's
// fields: a reply goes to the poster, and the owner can pass the message
// on to the list without it being taken for a loop.
func reviewHeader(l *mailcluster.MailingList) []byte {
	addr := listAddress(l)
	if addr == "" {
		return nil
	}
	return []byte("X-Mailcluster-Review: " + addr + "\r\n")
}

// descriptionPhrase returns a list's description as the phrase of its
// List-Id field (RFC 5322 3.2.5): control characters (CR and LF included)
// become spaces, runs of spaces one, invalid UTF-8 is dropped, and at most
// maxDescription characters are kept. ASCII text is written as a quoted
// string; other text as RFC 2047 encoded words (which may not be quoted),
// folded between words so that no line grows too long. "" for none.
func descriptionPhrase(desc string) string {
	desc = strings.ToValidUTF8(desc, "")
	desc = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, desc)
	desc = strings.Join(strings.Fields(desc), " ")
	if utf8.RuneCountInString(desc) > maxDescription {
		desc = strings.TrimSpace(string([]rune(desc)[:maxDescription]))
	}
	if desc == "" {
		return ""
	}
	ascii := true
	for i := 0; i < len(desc); i++ {
		if desc[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		// Base64 words hold only characters that RFC 2047 5(3) allows in
		// a phrase (Q would leave ':' and others as they are) and no
		// spaces; the encoder separates them by one.
		return strings.ReplaceAll(mime.BEncoding.Encode("utf-8", desc), " ", "\r\n ")
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(desc); i++ {
		if desc[i] == '"' || desc[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(desc[i])
	}
	b.WriteByte('"')
	return b.String()
}

// headerFields splits a message's header section into its fields, each
// with its continuation lines; what follows the last field (the empty
// line that ends the section) is the last element, with an empty name. A
// line that is not a field (no colon) is kept as an element of its own.
func headerFields(raw []byte) (names []string, fields [][]byte) {
	for len(raw) > 0 {
		end := lineEnd(raw, 0)
		line := raw[:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			names, fields = append(names, ""), append(fields, raw)
			return names, fields
		}
		for end < len(raw) && (raw[end] == ' ' || raw[end] == '\t') {
			end = lineEnd(raw, end)
		}
		name := ""
		if i := bytes.IndexByte(line, ':'); i > 0 {
			name = strings.TrimRight(string(line[:i]), " \t")
		}
		names, fields = append(names, name), append(fields, raw[:end])
		raw = raw[end:]
	}
	return names, fields
}

// lineEnd returns the index after the line of raw that starts at i.
func lineEnd(raw []byte, i int) int {
	if j := bytes.IndexByte(raw[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(raw)
}

// removeFields returns a copy of a header section without the fields
// named name (in any case), continuation lines included.
func removeFields(raw []byte, name string) []byte {
	names, fields := headerFields(raw)
	out := make([]byte, 0, len(raw))
	for i, f := range fields {
		if !strings.EqualFold(names[i], name) {
			out = append(out, f...)
		}
	}
	return out
}

// hasListID reports whether a header section has a List-Id field whose
// list-id (in angle brackets, any case, folded or not) is id.
func hasListID(raw []byte, id string) bool {
	if id == "" {
		return false
	}
	names, fields := headerFields(raw)
	for i, f := range fields {
		if !strings.EqualFold(names[i], "List-Id") {
			continue
		}
		// The list-id is the last angle-bracketed part (the phrase
		// before it may hold anything in quotes).
		v := string(f[bytes.IndexByte(f, ':')+1:])
		open := strings.LastIndexByte(v, '<')
		if open < 0 {
			continue
		}
		end := strings.IndexByte(v[open:], '>')
		if end < 0 {
			continue
		}
		got := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v[open+1:open+end])
		if strings.EqualFold(got, id) {
			return true
		}
	}
	return false
}
