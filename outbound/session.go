package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
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

// converse runs the session; see session.
func (d *delivery) converse(ctx context.Context, t target, ip net.IP, addr string) *failure {
	c := d.c
	dialer := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	raw, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(t.port)))
	if err != nil {
		if ctx.Err() != nil {
			return temporary("", "4.4.7", "delivery canceled while connecting to %s", addr)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return temporary("", "4.4.1", "connection refused by %s", addr)
		}
		return temporary("", "4.4.1", "cannot connect to %s: %s", addr, netText(err))
	}
	defer raw.Close()
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
			return temporary("", "4.7.5", "TLS handshake with %s failed", addr)
		}
		conn, secure = tc, true
	}
	op, stage, err := newOpening(conn, c.helo, c.cfg.CommandTimeout)
	if err != nil {
		return openingFailure(ctx, t.host, addr, err, stage)
	}
	if !secure && t.mode != TLSNone && op.has("STARTTLS") {
		err := op.startTLS()
		var re *replyError
		switch {
		case errors.As(err, &re) && t.mode == TLSOpportunistic:
			// Refused: go on in clear (RFC 3207 4.1).
		case err != nil:
			op.quit()
			return openingFailure(ctx, t.host, addr, err, "STARTTLS")
		default:
			tc := tls.Client(conn, d.tlsConfig(t))
			hctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				c.log.Warn("outbound: TLS handshake", "host", t.host, "err", err)
				f := temporary("", "4.7.5", "TLS handshake with %s failed", addr)
				f.plainRetry = t.mode == TLSOpportunistic && ctx.Err() == nil
				return f
			}
			conn, secure = tc, true
		}
	}
	if !secure && (t.mode == TLSStartTLS || t.mode == TLSImplicit) {
		op.quit()
		return temporary(t.host, "4.7.4", "TLS required but not offered by %s", addr)
	}
	if err := op.drained(); err != nil {
		return temporary(t.host, "4.5.0", "protocol error of %s: %v", addr, err)
	}

	sc := smtp.NewClient(&greetedConn{Conn: conn, pre: []byte("220 " + op.greeting + "\r\n")})
	sc.CommandTimeout = c.cfg.CommandTimeout
	sc.SubmissionTimeout = c.cfg.DataTimeout
	defer sc.Close()
	if err := sc.Hello(c.helo); err != nil {
		return errFailure(ctx, t.host, addr, err, "EHLO").forHost()
	}
	if t.smarthost && c.cfg.Smarthost.Username != "" {
		if f := d.auth(ctx, sc, t, addr, secure); f != nil {
			_ = sc.Quit()
			return f
		}
	}
	return d.transaction(ctx, sc, conn, t, addr)
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
// MAIL was refused with 4xx or the connection broke before RCPT.
func (d *delivery) transaction(ctx context.Context, sc *smtp.Client, conn net.Conn, t target, addr string) *failure {
	m := d.msg
	if max, ok := sc.MaxMessageSize(); ok && max > 0 && m.Size > int64(max) {
		_ = sc.Quit()
		d.failAll(&failure{permanent: true, enhanced: "5.3.4", host: t.host,
			text: fmt.Sprintf("message size %d exceeds the limit %d of %s", m.Size, max, addr)})
		return nil
	}
	opts := &smtp.MailOptions{Size: m.Size}
	if needsUTF8(m.From, m.Rcpts) {
		if ok, _ := sc.Extension("SMTPUTF8"); !ok {
			_ = sc.Quit()
			d.failAll(permanent(t.host, "5.6.7", "%s does not support SMTPUTF8, which the addresses need", addr))
			return nil
		}
		opts.UTF8 = true
	}
	if err := sc.Mail(m.From, opts); err != nil {
		f := errFailure(ctx, t.host, addr, err, "MAIL FROM")
		if f.code >= 500 && f.code < 600 {
			_ = sc.Quit()
			d.failAll(f)
			return nil
		}
		_ = sc.Quit()
		return f.forHost()
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
			return nil
		}
		d.results[i] = f.result(m.Rcpts[i])
	}
	d.pending = accepted
	if len(accepted) == 0 {
		_ = sc.Quit()
		return nil
	}
	w, err := sc.Data()
	if err != nil {
		d.failAll(errFailure(ctx, t.host, addr, err, "DATA"))
		return nil
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
		return nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		d.failAll(errFailure(ctx, t.host, addr, err, "end of DATA"))
		return nil
	}
	enh, text := splitEnhanced(250, resp.StatusText)
	for _, i := range d.pending {
		d.results[i] = Result{Rcpt: m.Rcpts[i], Delivered: true, Code: 250, Enhanced: enh, Text: text, Host: t.host}
	}
	d.pending = nil
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_ = sc.Quit()
	return nil
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
