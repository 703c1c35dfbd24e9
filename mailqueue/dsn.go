package mailqueue

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"mailcluster"
)

// DSN kinds.
const (
	dsnFailed  = "failed"
	dsnDelayed = "delayed"
)

// maxReturnedHeader bounds the original header section returned in a DSN.
const maxReturnedHeader = 64 << 10

// buildDSN returns a delivery status notification (RFC 3464, in a
// multipart/report of RFC 6522) to env's sender about rcpts: "failed"
// (the message was not delivered to them and will not be) or "delayed"
// (still being retried). The third part is the original header section
// (text/rfc822-headers), not the whole message.
func buildDSN(hostname, kind string, env *Envelope, rcpts []mailcluster.QueuedRecipient, origHeader []byte, now, retryUntil time.Time) []byte {
	var buf bytes.Buffer
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	subject := "Undelivered Mail Returned to Sender"
	text := "This is the mail system at " + hostname + ".\r\n\r\n" +
		"Your message could not be delivered to one or more recipients.\r\n" +
		"It has not been delivered to them and will not be retried.\r\n\r\n"
	if kind == dsnDelayed {
		subject = "Delayed Mail (still being retried)"
		text = "This is the mail system at " + hostname + ".\r\n\r\n" +
			"Your message has not been delivered yet to one or more recipients.\r\n" +
			"It is still being retried; you do not need to send it again.\r\n\r\n"
	}
	for _, r := range rcpts {
		text += "<" + r.Address + ">: " + oneLine(r.Reply) + "\r\n"
	}
	fmt.Fprintf(&buf, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", hostname)
	fmt.Fprintf(&buf, "To: <%s>\r\n", env.From)
	fmt.Fprintf(&buf, "Subject: %s\r\n", subject)
	fmt.Fprintf(&buf, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&buf, "Message-ID: <%s.%s@%s>\r\n", env.ID, kind, hostname)
	buf.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&buf, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())

	p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Description": {"Notification"}})
	io.WriteString(p, text)

	p, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}, "Content-Description": {"Delivery report"}})
	fmt.Fprintf(p, "Reporting-MTA: dns; %s\r\n", hostname)
	fmt.Fprintf(p, "X-Mailcluster-Queue-ID: %s\r\n", env.ID)
	fmt.Fprintf(p, "Arrival-Date: %s\r\n", env.Created.Format(time.RFC1123Z))
	for _, r := range rcpts {
		fmt.Fprintf(p, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Address)
		fmt.Fprintf(p, "Action: %s\r\n", kind)
		fmt.Fprintf(p, "Status: %s\r\n", dsnStatus(kind, r.Reply))
		if r.Host != "" {
			fmt.Fprintf(p, "Remote-MTA: dns; %s\r\n", oneLine(r.Host))
		}
		if code := replyCode(r.Reply); code != "" {
			fmt.Fprintf(p, "Diagnostic-Code: smtp; %s\r\n", oneLine(r.Reply))
		} else if r.Reply != "" {
			fmt.Fprintf(p, "Diagnostic-Code: X-mailcluster; %s\r\n", oneLine(r.Reply))
		}
		if !r.Updated.IsZero() {
			fmt.Fprintf(p, "Last-Attempt-Date: %s\r\n", r.Updated.Format(time.RFC1123Z))
		}
		if kind == dsnDelayed {
			fmt.Fprintf(p, "Will-Retry-Until: %s\r\n", retryUntil.Format(time.RFC1123Z))
		}
	}

	p, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/rfc822-headers"}, "Content-Description": {"Undelivered message headers"}})
	if len(origHeader) > maxReturnedHeader {
		origHeader = origHeader[:maxReturnedHeader]
	}
	p.Write(origHeader)
	mw.Close()
	buf.Write(body.Bytes())
	return buf.Bytes()
}

// oneLine flattens a reply for a DSN field: no line breaks, at most 500 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 500 {
		s = strings.ToValidUTF8(s[:500], "")
	}
	return s
}

// replyCode returns the 3-digit code a reply starts with, or "".
func replyCode(reply string) string {
	if len(reply) >= 3 && reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' && reply[2] >= '0' && reply[2] <= '9' {
		return reply[:3]
	}
	return ""
}

// dsnStatus is the Status field (RFC 3463): the enhanced code of the
// reply when it has one, else one made from the kind and reply code.
func dsnStatus(kind, reply string) string {
	f := strings.Fields(reply)
	if len(f) >= 2 && len(f[1]) >= 5 && (f[1][0] == '4' || f[1][0] == '5') && f[1][1] == '.' {
		return f[1]
	}
	switch {
	case kind == dsnDelayed:
		return "4.4.1"
	case strings.HasPrefix(reply, "5"):
		return "5.0.0"
	}
	return "4.4.7" // delivery time expired
}

// headerOf returns the header section of a message (up to and including
// the empty line), at most maxReturnedHeader bytes.
func headerOf(r io.Reader) []byte {
	br := bufio.NewReader(io.LimitReader(r, maxReturnedHeader))
	var out []byte
	for {
		line, err := br.ReadBytes('\n')
		out = append(out, line...)
		if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
			return out
		}
	}
}
