package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// session delivers to one address of t. It returns nil when the
// transaction ran (the results of the recipients it reached are set), or
// the failure that sends the message to the next host: the server could not
// be reached, did not greet, refused EHLO or MAIL with 4xx, or TLS could not
// be had where it is required.
func (d *delivery) session(ctx context.Context, t target, ip net.IP) *failure {
	c := d.c
	addr := fmt.Sprintf("%s[%s]:%d", t.host, ip, t.port)
	log := c.log.With("domain", d.domain, "host", t.host, "addr", net.JoinHostPort(ip.String(), strconv.Itoa(t.port)))
	f := d.converse(ctx, t, ip, addr)
	switch {
	case f != nil:
		log.Info("outbound: host failed", "text", f.text, "code", f.code)
	default:
		log.Info("outbound: session done")
	}
	return f
}

// tlsConfig returns the client TLS configuration for t.
func (d *delivery) tlsConfig(t target) *tls.Config {
	cfg := &tls.Config{}
	if d.c.cfg.TLSConfig != nil {
		cfg = d.c.cfg.TLSConfig.Clone()
	}
	if net.ParseIP(t.host) == nil {
		cfg.ServerName = t.host
	}
	if !t.smarthost {
		// MX certificates are not checked (no DANE or MTA-STS here):
		// encryption against passive listeners only.
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// converse runs the session; see session. With a Pool, a session kept
// open to the same host and address is used first; one that the server
// closed meanwhile is replaced by a new session (not counted as an
// attempt).
func (d *delivery) converse(ctx context.Context, t target, ip net.IP, addr string) *failure {
	key := d.c.sessionKey(t, ip)
	if s := d.c.cfg.Pool.take(key); s != nil {
		if f, ok := d.use(ctx, s, t, addr, true); ok {
			return f
		}
		d.c.log.Debug("outbound: kept session closed by the server; opening a new one", "host", t.host, "addr", addr)
	}
	s, f := d.open(ctx, t, ip, addr, key)
	if f != nil {
		return f
	}
	f, _ = d.use(ctx, s, t, addr, false)
	return f
}

// sessionKey names the sessions a delivery to t at ip may share: same
// host, address, port, TLS mode, EHLO name and smarthost login.
func (c *Client) sessionKey(t target, ip net.IP) string {
	user := ""
	if t.smarthost && c.cfg.Smarthost != nil {
		user = c.cfg.Smarthost.Username
	}
	return strings.Join([]string{t.host, ip.String(), strconv.Itoa(t.port), string(t.mode), strconv.FormatBool(t.smarthost), c.helo, user}, "|")
}

// use runs one transaction on s, then keeps s in the pool when it ended
// cleanly, else ends it. ok is false only for a kept session (reused)
// that the server had closed before MAIL got an answer: nothing was sent,
// and the caller opens a new session.
func (d *delivery) use(ctx context.Context, s *pooled, t target, addr string, reused bool) (f *failure, ok bool) {
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	f, clean, gone := d.transaction(ctx, s.sc, conn, t, addr, reused)
	if !stop() {
		clean = false // ctx ended: the connection was closed under the transaction
	}
	if reused && gone {
		_ = s.sc.Close()
		return nil, false
	}
	switch {
	case clean && d.c.cfg.Pool != nil:
		d.c.cfg.Pool.put(s)
	case clean:
		s.quit()
	default:
		// Broken, or in a state that must not go on (a message not
		// ended): closed without a word, so that nothing more is sent.
		_ = s.sc.Close()
	}
	return f, true
}

// open connects to ip, reads the greeting, negotiates TLS as t.mode
// asks, says EHLO and authenticates to a smarthost: the session is then
// ready for MAIL.
func (d *delivery) open(ctx context.Context, t target, ip net.IP, addr, key string) (*pooled, *failure) {
	c := d.c
	dialer := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	raw, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(t.port)))
	if err != nil {
		if ctx.Err() != nil {
			return nil, temporary("", "4.4.7", "delivery canceled while connecting to %s", addr)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, temporary("", "4.4.1", "connection refused by %s", addr)
		}
		return nil, temporary("", "4.4.1", "cannot connect to %s: %s", addr, netText(err))
	}
	ready := false
	defer func() {
		if !ready {
			raw.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	var conn net.Conn = raw
	secure := false
	if t.mode == TLSImplicit {
		tc := tls.Client(raw, d.tlsConfig(t))
		hctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.log.Warn("outbound: TLS handshake", "host", t.host, "err", err)
			return nil, temporary("", "4.7.5", "TLS handshake with %s failed", addr)
		}
		conn, secure = tc, true
	}
	op, stage, err := newOpening(conn, c.helo, c.cfg.CommandTimeout)
	if err != nil {
		return nil, openingFailure(ctx, t.host, addr, err, stage)
	}
	if !secure && t.mode != TLSNone && op.has("STARTTLS") {
		err := op.startTLS()
		var re *replyError
		switch {
		case errors.As(err, &re) && t.mode == TLSOpportunistic:
			// Refused: go on in clear (RFC 3207 4.1).
		case err != nil:
			op.quit()
			return nil, openingFailure(ctx, t.host, addr, err, "STARTTLS")
		default:
			tc := tls.Client(conn, d.tlsConfig(t))
			hctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				c.log.Warn("outbound: TLS handshake", "host", t.host, "err", err)
				f := temporary("", "4.7.5", "TLS handshake with %s failed", addr)
				f.plainRetry = t.mode == TLSOpportunistic && ctx.Err() == nil
				return nil, f
			}
			conn, secure = tc, true
		}
	}
	if !secure && (t.mode == TLSStartTLS || t.mode == TLSImplicit) {
		op.quit()
		return nil, temporary(t.host, "4.7.4", "TLS required but not offered by %s", addr)
	}
	if err := op.drained(); err != nil {
		return nil, temporary(t.host, "4.5.0", "protocol error of %s: %v", addr, err)
	}

	sc := smtp.NewClient(&greetedConn{Conn: conn, pre: []byte("220 " + op.greeting + "\r\n")})
	sc.CommandTimeout = c.cfg.CommandTimeout
	sc.SubmissionTimeout = c.cfg.DataTimeout
	if err := sc.Hello(c.helo); err != nil {
		return nil, errFailure(ctx, t.host, addr, err, "EHLO").forHost()
	}
	if t.smarthost && c.cfg.Smarthost.Username != "" {
		if f := d.auth(ctx, sc, t, addr, secure); f != nil {
			_ = sc.Quit()
			return nil, f
		}
	}
	if !stop() {
		return nil, temporary("", "4.4.7", "delivery to %s canceled during the opening", addr)
	}
	ready = true
	return &pooled{key: key, sc: sc, conn: conn, born: time.Now()}, nil
}

// auth authenticates to the smarthost with AUTH PLAIN, only over TLS.
func (d *delivery) auth(ctx context.Context, sc *smtp.Client, t target, addr string, secure bool) *failure {
	sh := d.c.cfg.Smarthost
	if !secure {
		return temporary(t.host, "4.7.10", "not sending the smarthost password to %s in clear: the connection is not encrypted (TLS mode %q)", addr, t.mode)
	}
	if !sc.SupportsAuth("PLAIN") {
		return temporary(t.host, "4.7.4", "smarthost %s does not offer AUTH PLAIN", addr)
	}
	if err := sc.Auth(sasl.NewPlainClient("", sh.Username, sh.Password)); err != nil {
		f := errFailure(ctx, t.host, addr, err, "AUTH")
		f.text = "authentication to the smarthost failed: " + f.text
		return f.forHost()
	}
	return nil
}

// transaction sends MAIL, RCPT and DATA; it returns a failure only when
// MAIL was refused with 4xx or the connection broke before RCPT. clean
// tells that the session may carry another transaction; gone, for a
// reused session, that the server had closed it before answering MAIL
// (nothing was sent: no result is set).
func (d *delivery) transaction(ctx context.Context, sc *smtp.Client, conn net.Conn, t target, addr string, reused bool) (f *failure, clean, gone bool) {
	m := d.msg
	if max, ok := sc.MaxMessageSize(); ok && max > 0 && m.Size > int64(max) {
		d.failAll(&failure{permanent: true, enhanced: "5.3.4", host: t.host,
			text: fmt.Sprintf("message size %d exceeds the limit %d of %s", m.Size, max, addr)})
		return nil, true, false
	}
	opts := &smtp.MailOptions{Size: m.Size}
	if needsUTF8(m.From, m.Rcpts) {
		if ok, _ := sc.Extension("SMTPUTF8"); !ok {
			d.failAll(permanent(t.host, "5.6.7", "%s does not support SMTPUTF8, which the addresses need", addr))
			return nil, true, false
		}
		opts.UTF8 = true
	}
	if err := sc.Mail(m.From, opts); err != nil {
		f := errFailure(ctx, t.host, addr, err, "MAIL FROM")
		if reused && ctx.Err() == nil && (f.code == 0 || f.code == 421) {
			return nil, false, true
		}
		if f.code >= 500 && f.code < 600 {
			d.failAll(f)
			return nil, true, false
		}
		_ = sc.Quit()
		return f.forHost(), false, false
	}
	var accepted []int
	for n, i := range d.pending {
		err := sc.Rcpt(m.Rcpts[i], nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		f := errFailure(ctx, t.host, addr, err, "RCPT TO")
		if f.code == 0 {
			// The connection broke: everyone waits for the next try.
			d.pending = append(accepted, d.pending[n:]...)
			d.failAll(f)
			return nil, false, false
		}
		d.results[i] = f.result(m.Rcpts[i])
	}
	d.pending = accepted
	if len(accepted) == 0 {
		// MAIL was accepted: the session would need RSET; end it.
		_ = sc.Quit()
		return nil, false, false
	}
	w, err := sc.Data()
	if err != nil {
		d.failAll(errFailure(ctx, t.host, addr, err, "DATA"))
		return nil, false, false
	}
	_ = conn.SetDeadline(time.Now().Add(d.c.cfg.DataTimeout))
	body := &readErrReader{r: d.body}
	_, err = w.Write(m.Prefix)
	if err == nil {
		_, err = io.Copy(w, body)
	}
	if err != nil {
		// The end of data is never sent: the server discards the message.
		if body.err != nil {
			d.c.log.Error("outbound: read message", "domain", d.domain, "err", body.err)
			d.failAll(temporary(t.host, "4.3.0", "the queued message cannot be read"))
		} else {
			d.failAll(errFailure(ctx, t.host, addr, err, "the message"))
		}
		return nil, false, false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		d.failAll(errFailure(ctx, t.host, addr, err, "end of DATA"))
		return nil, false, false
	}
	enh, text := splitEnhanced(250, resp.StatusText)
	for _, i := range d.pending {
		d.results[i] = Result{Rcpt: m.Rcpts[i], Delivered: true, Code: 250, Enhanced: enh, Text: text, Host: t.host}
	}
	d.pending = nil
	_ = conn.SetDeadline(time.Time{})
	return nil, true, false
}

// forHost makes f a failure of the host (tried again on the next host, and
// retried later when it was the last): never permanent.
func (f *failure) forHost() *failure {
	f.permanent = false
	return f
}

// openingFailure maps an error of the opening to a failure of the host.
func openingFailure(ctx context.Context, host, addr string, err error, stage string) *failure {
	var re *replyError
	if errors.As(err, &re) {
		return replyFailure(host, re.code, re.msg, stage).forHost()
	}
	return errFailure(ctx, host, addr, err, stage).forHost()
}

// readErrReader remembers a read error, to tell it from a write error.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// needsUTF8 reports whether an address has non-ASCII characters.
func needsUTF8(from string, rcpts []string) bool {
	for _, s := range append([]string{from}, rcpts...) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}
