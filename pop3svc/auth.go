package pop3svc

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"strings"

	"mailcluster"
	"mailcluster/service"
)

// protocol is the name logins are screened under.
const protocol = "pop3"

// maxUserLen bounds a USER name (an address is at most 320 bytes).
const maxUserLen = 320

// cmdCapa lists the capabilities (RFC 2449 5): the login mechanisms only
// where a login is allowed (RFC 2595 4), STLS only before TLS and login.
func (s *session) cmdCapa([]string) {
	s.ok("Capability list follows")
	lines := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == authorization && s.loginAllowed() {
		lines = append(lines, "USER", "SASL PLAIN")
	}
	if s.state == authorization && !s.tls && s.srv.cfg.TLS != nil {
		lines = append(lines, "STLS")
	}
	lines = append(lines, "IMPLEMENTATION mailcluster")
	for _, l := range lines {
		s.w.WriteString(l + "\r\n")
	}
	s.w.WriteString(".\r\n")
}

// cmdStls starts TLS (RFC 2595 4). Commands a client pipelined after STLS
// are dropped with the plain-text buffer, so none can be injected into
// the TLS session.
func (s *session) cmdStls([]string) {
	if s.tls || s.srv.cfg.TLS == nil {
		s.badCommand("STLS not available")
		return
	}
	s.ok("Begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		s.done = true
		return
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLS)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Debug("pop3: TLS handshake failed", "ip", s.ip, "err", err)
		s.done = true
		return
	}
	s.conn, s.tls, s.user = tc, true, ""
	s.r = bufio.NewReaderSize(tc, maxLine)
	s.w.Reset(tc)
}

// cmdUser names the user of a following PASS (RFC 1939 7).
func (s *session) cmdUser(args []string) {
	s.user = ""
	switch {
	case !s.loginAllowed():
		s.fail("[AUTH] Plain-text login is disabled here; use STLS first")
	case len(args[0]) > maxUserLen:
		s.badCommand("User name too long")
	default:
		s.user = args[0]
		s.ok("Send your password")
	}
}

// cmdPass logs in the user of the USER just before it (RFC 1939 7). The
// password is the rest of the line, spaces included.
func (s *session) cmdPass(args []string) {
	user := s.user
	s.user = ""
	if user == "" {
		s.badCommand("USER first")
		return
	}
	s.login(user, args[0])
}

// cmdAuth: AUTH PLAIN (RFC 5034, RFC 4616), with the credentials on the
// command line or after an empty "+ " challenge ("*" cancels). AUTH
// without a mechanism lists the mechanisms.
func (s *session) cmdAuth(args []string) {
	s.user = ""
	if len(args) == 0 {
		s.ok("Mechanisms follow")
		s.w.WriteString("PLAIN\r\n.\r\n")
		return
	}
	if !strings.EqualFold(args[0], "PLAIN") {
		s.fail("Unsupported authentication mechanism")
		return
	}
	if !s.loginAllowed() {
		s.fail("[AUTH] Plain-text login is disabled here; use STLS first")
		return
	}
	var resp string
	if len(args) == 2 {
		resp = args[1]
		if resp == "=" {
			resp = ""
		}
	} else {
		s.w.WriteString("+ \r\n")
		if err := s.w.Flush(); err != nil {
			s.done = true
			return
		}
		line, err := s.readLine()
		if err != nil {
			s.done = true
			return
		}
		if line == "*" {
			s.fail("Authentication cancelled")
			return
		}
		resp = line
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		s.badCommand("Invalid base64 data")
		return
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[1]) > maxUserLen {
		s.badCommand("Invalid PLAIN response")
		return
	}
	authz, user := string(parts[0]), string(parts[1])
	if authz != "" && !strings.EqualFold(authz, user) {
		// Acting for another account is not supported.
		s.refuseLogin()
		return
	}
	s.login(user, string(parts[2]))
}

// login checks the credentials through the screening of the domain
// service and opens the maildrop (the TRANSACTION state).
func (s *session) login(user, password string) {
	ctx, cancel := s.ctx()
	defer cancel()
	ctx = mailcluster.NewContextWithClientIP(service.Anonymous(ctx), s.ip)
	a, err := s.srv.dir.AuthenticateMailUser(ctx, protocol, user, password)
	if err != nil {
		switch mailcluster.ErrorCode(err) {
		case mailcluster.EUNAUTHORIZED:
			s.refuseLogin()
		case mailcluster.EFORBIDDEN:
			s.fail("[AUTH] Too many failed logins from your address; try again later")
			s.done = true
		default:
			s.fail(replyText(s.log, err))
		}
		return
	}
	d, err := s.srv.openMaildrop(ctx, a)
	if err != nil {
		s.fail(replyText(s.log, err))
		return
	}
	s.acct, s.drop = a, d
	s.setState(transaction)
	s.log.Debug("pop3: logged in", "account", a.Address(), "ip", s.ip, "messages", len(d.msgs))
	s.ok("Logged in; %d messages", len(d.msgs))
}

// refuseLogin answers a failed login, and ends the session after
// maxAuthFailures of them.
func (s *session) refuseLogin() {
	s.fail("[AUTH] Authentication failed")
	if s.failures++; s.failures >= maxAuthFailures {
		s.done = true
	}
}
