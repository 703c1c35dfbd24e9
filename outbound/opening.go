package outbound

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// The opening of a session (greeting, EHLO, STARTTLS) is spoken here and
// the rest by go-smtp's client: go-smtp v0.26 starts TLS only from
// NewClientStartTLS, which greets as "localhost" and cannot fall back to
// clear text. After the opening the client gets the connection with a
// repeated greeting in front of it, and sends its own EHLO (RFC 3207 asks
// for a new EHLO after STARTTLS; in clear it is a harmless repetition).

// maxOpening bounds what the server may send during the opening.
const maxOpening = 64 << 10

// replyError is a reply with an unexpected code during the opening.
type replyError struct {
	code int
	msg  string
}

func (e *replyError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

// opening is the state of a session before go-smtp's client takes over.
type opening struct {
	conn     net.Conn
	br       *bufio.Reader
	tp       *textproto.Reader
	timeout  time.Duration
	greeting string            // first line of the greeting
	ext      map[string]string // EHLO keywords in upper case and their parameters
}

// newOpening reads the greeting of conn and sends EHLO helo (HELO when the
// server does not know EHLO).
func newOpening(conn net.Conn, helo string, timeout time.Duration) (*opening, string, error) {
	o := &opening{conn: conn, timeout: timeout}
	o.br = bufio.NewReader(io.LimitReader(conn, maxOpening))
	o.tp = textproto.NewReader(o.br)
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, "greeting", err
	}
	_, msg, err := o.read(220)
	if err != nil {
		return nil, "greeting", err
	}
	o.greeting, _, _ = strings.Cut(msg, "\n")
	if err := o.ehlo(helo); err != nil {
		return nil, "EHLO", err
	}
	return o, "", nil
}

// read reads a reply and checks its code.
func (o *opening) read(want int) (int, string, error) {
	code, msg, err := o.tp.ReadResponse(want)
	var te *textproto.Error
	if errors.As(err, &te) {
		return code, msg, &replyError{code: te.Code, msg: te.Msg}
	}
	return code, msg, err
}

// cmd sends one command and reads its reply.
func (o *opening) cmd(want int, line string) (string, error) {
	if err := o.conn.SetDeadline(time.Now().Add(o.timeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(o.conn, line+"\r\n"); err != nil {
		return "", err
	}
	_, msg, err := o.read(want)
	return msg, err
}

// ehlo sends EHLO and records the keywords; a 500 or 502 falls back to
// HELO (RFC 5321 3.2).
func (o *opening) ehlo(helo string) error {
	msg, err := o.cmd(250, "EHLO "+helo)
	var re *replyError
	if errors.As(err, &re) && (re.code == 500 || re.code == 502) {
		o.ext = map[string]string{}
		_, err = o.cmd(250, "HELO "+helo)
		return err
	}
	if err != nil {
		return err
	}
	o.ext = map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		o.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// has reports whether the server announced keyword.
func (o *opening) has(keyword string) bool {
	_, ok := o.ext[keyword]
	return ok
}

// startTLS sends STARTTLS and checks that the server sent nothing after
// its reply (text injected before the handshake would be read as if it came
// over TLS: CVE-2011-0411).
func (o *opening) startTLS() error {
	if _, err := o.cmd(220, "STARTTLS"); err != nil {
		return err
	}
	return o.drained()
}

// drained checks that nothing is buffered beyond the last reply.
func (o *opening) drained() error {
	if o.br.Buffered() > 0 {
		return errors.New("server sent data before its turn")
	}
	return o.conn.SetDeadline(time.Time{})
}

// quit sends QUIT without waiting long for the reply.
func (o *opening) quit() {
	_ = o.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(o.conn, "QUIT\r\n")
	_, _, _ = o.read(221)
}

// greetedConn replays a greeting before the bytes of the connection.
type greetedConn struct {
	net.Conn
	pre []byte
}

func (c *greetedConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
