package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"
)

// failure is why a recipient was not delivered (yet).
type failure struct {
	code      int    // remote reply code, 0 for none
	enhanced  string // "4.4.1"
	text      string
	permanent bool
	host      string
	// plainRetry marks a failed TLS handshake under opportunistic TLS: the
	// same address is tried once more without STARTTLS.
	plainRetry bool
}

// result returns the Result of rcpt for f.
func (f *failure) result(rcpt string) Result {
	return Result{Rcpt: rcpt, Permanent: f.permanent, Code: f.code, Enhanced: f.enhanced, Text: f.text, Host: f.host}
}

// temporary returns a failure without a remote reply that is retried.
func temporary(host, enhanced, format string, args ...any) *failure {
	return &failure{enhanced: enhanced, text: fmt.Sprintf(format, args...), host: host}
}

// permanent returns a failure without a remote reply that bounces.
func permanent(host, enhanced, format string, args ...any) *failure {
	return &failure{enhanced: enhanced, text: fmt.Sprintf(format, args...), host: host, permanent: true}
}

// replyFailure returns the failure for a remote reply: 5xx is permanent,
// anything else temporary.
func replyFailure(host string, code int, msg, stage string) *failure {
	enh, text := splitEnhanced(code, msg)
	return &failure{code: code, enhanced: enh, host: host, permanent: code >= 500 && code < 600,
		text: fmt.Sprintf("%s said: %d %s (in reply to %s)", host, code, strings.ReplaceAll(text, "\n", " "), stage)}
}

// splitEnhanced returns the enhanced status code (RFC 3463) at the start of
// a reply's text, when its class matches code, and the rest of the text.
func splitEnhanced(code int, msg string) (string, string) {
	first, rest, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(first) > 11 {
		return "", msg
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || (i == 0 && n != code/100) {
			return "", msg
		}
	}
	return first, rest
}

// errFailure returns the failure for err during stage with host addr: a
// remote reply (*smtp.SMTPError) keeps its code, anything else is a
// temporary failure described without internals.
func errFailure(ctx context.Context, host, addr string, err error, stage string) *failure {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		msg := se.Message
		if se.EnhancedCode[0] > 0 {
			msg = fmt.Sprintf("%d.%d.%d %s", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], msg)
		}
		return replyFailure(host, se.Code, msg, stage)
	}
	if ctx.Err() != nil {
		return temporary(host, "4.4.7", "delivery to %s canceled during %s", addr, stage)
	}
	return temporary(host, "4.4.2", "%s with %s during %s", netText(err), addr, stage)
}

// netText describes a network error in a few words.
func netText(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return "lost connection"
	}
	return "error (" + err.Error() + ")"
}
