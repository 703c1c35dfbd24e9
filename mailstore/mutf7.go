package mailstore

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Folder directory names are in IMAP's modified UTF-7 (RFC 3501 5.1.3),
// as other Maildir++ tools (Courier, Dovecot) write them: printable ASCII
// stands for itself except "&", which is "&-"; anything else is UTF-16
// in a modified base64 ("," for "/") between "&" and "-".

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

var errBadUTF7 = errors.New("mailstore: bad modified UTF-7 name")

// encodeUTF7 encodes a UTF-8 name.
func encodeUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		buf := make([]byte, 2*len(u))
		for i, c := range u {
			buf[2*i], buf[2*i+1] = byte(c>>8), byte(c)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(buf))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// decodeUTF7 decodes a modified UTF-7 name to UTF-8.
func decodeUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errBadUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errBadUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		buf, err := mutf7.DecodeString(enc)
		if err != nil || len(buf)%2 != 0 {
			return "", errBadUTF7
		}
		u := make([]uint16, len(buf)/2)
		for j := range u {
			u[j] = uint16(buf[2*j])<<8 | uint16(buf[2*j+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError || r >= 0x20 && r <= 0x7e {
				return "", errBadUTF7 // printable ASCII must not be encoded
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
