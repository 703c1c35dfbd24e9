package api

import (
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// writeAccount answers an account as JSON, byte for byte what Echo's
// c.JSON writes (encoding/json with HTML escaping, then a newline), but
// without reflection when every value is plain (see appendAccountJSON).
// A request for pretty output (?pretty) or an Echo in debug mode gets
// c.JSON itself.
func writeAccount(c echo.Context, code int, a *Account) error {
	if c.Request().URL.RawQuery != "" || c.Echo().Debug {
		return c.JSON(code, a)
	}
	bp := jsonBuffers.Get().(*[]byte)
	defer jsonBuffers.Put(bp)
	b, ok := appendAccountJSON((*bp)[:0], a)
	if !ok {
		return c.JSON(code, a)
	}
	*bp = b
	return c.JSONBlob(code, b)
}

// jsonBuffers holds the buffers of writeAccount (one account is about
// half a KiB).
var jsonBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendAccountJSON appends what json.Encoder.Encode writes for a (with
// its trailing newline). It reports false, with b unusable, when a value
// would need encoding/json's care: a string with a character JSON or
// HTML escapes (control characters, quote, backslash, <, >, &) or any
// non-ASCII byte, or a time that is not a plain RFC 3339 one.
func appendAccountJSON(b []byte, a *Account) ([]byte, bool) {
	ok := true
	str := func(name string, v string) {
		b = append(b, name...)
		if !plainJSONString(v) {
			ok = false
			return
		}
		b = append(b, '"')
		b = append(b, v...)
		b = append(b, '"')
	}
	tim := func(name string, t time.Time) {
		b = append(b, name...)
		if !plainJSONTime(t) {
			ok = false
			return
		}
		b = t.AppendFormat(b, `"`+time.RFC3339Nano+`"`)
	}
	str(`{"address":`, a.Address)
	str(`,"domain":`, a.Domain)
	str(`,"mailbox":`, a.Mailbox)
	str(`,"fullName":`, a.FullName)
	str(`,"firstName":`, a.FirstName)
	str(`,"lastName":`, a.LastName)
	str(`,"mailboxPath":`, a.MailboxPath)
	b = append(b, `,"frozen":`...)
	b = strconv.AppendBool(b, a.Frozen)
	b = append(b, `,"disabled":`...)
	b = strconv.AppendBool(b, a.Disabled)
	b = append(b, `,"quotaBytes":`...)
	b = strconv.AppendInt(b, a.QuotaBytes, 10)
	b = append(b, `,"quotaMessages":`...)
	b = strconv.AppendInt(b, a.QuotaMessages, 10)
	str(`,"adminRights":`, a.AdminRights)
	b = append(b, `,"sendAs":`...)
	if a.SendAs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, v := range a.SendAs {
			if i > 0 {
				b = append(b, ',')
			}
			str("", v)
		}
		b = append(b, ']')
	}
	tim(`,"createdAt":`, a.CreatedAt)
	tim(`,"updatedAt":`, a.UpdatedAt)
	b = append(b, `,"usage":{"bytes":`...)
	b = strconv.AppendInt(b, a.Usage.Bytes, 10)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, a.Usage.Messages, 10)
	b = append(b, "}}\n"...)
	return b, ok
}

// plainJSONString reports whether encoding/json writes s as it is
// between quotes: printable ASCII without quote, backslash or the
// characters it escapes for HTML.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// plainJSONTime reports whether time.Time's MarshalJSON (RFC 3339 with
// nanoseconds) is what AppendFormat writes for t: a four-digit year and
// a zone offset in whole minutes, less than a day.
func plainJSONTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}
