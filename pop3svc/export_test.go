package pop3svc

import (
	"errors"
	"io"
	"strings"
)

// WireMessage returns msg as RETR (bodyLines < 0) or TOP sends it,
// dot-stuffed and without the final ".", and the octets of msg with CRLF
// line ends (its POP3 size when bodyLines < 0).
func WireMessage(msg string, bodyLines int) (string, int64) {
	var b strings.Builder
	mw := &messageWriter{w: &b, stuff: true, bodyLines: bodyLines, atStart: true}
	// Small writes, so that line ends and dots fall across calls.
	r := strings.NewReader(msg)
	buf := make([]byte, 3)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := mw.Write(buf[:n]); errors.Is(werr, errEnough) {
				break
			}
		}
		if err == io.EOF {
			break
		}
	}
	_ = mw.finish()
	return b.String(), mw.n
}
