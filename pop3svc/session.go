package pop3svc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"mailcluster"
)

// Bounds of a session (see the package doc).
const (
	maxLine            = 4096 // bytes of a command line, CRLF included
	maxAuthCommands    = 30   // commands in the AUTHORIZATION state
	maxAuthFailures    = 3    // failed logins of one connection
	maxBadCommands     = 10   // unknown, misplaced or malformed commands
	baseCommands       = 1000 // commands after login, besides perMessageCommands
	perMessageCommands = 10   // commands after login per message of the maildrop
	commandTimeout     = time.Minute
)

// state is a session's POP3 state (RFC 1939 3); UPDATE is the end of
// QUIT in the TRANSACTION state and needs no state of its own.
type state uint8

const (
	authorization state = 1 << iota
	transaction
)

// command is an entry of the command table: the states it is valid in,
// its argument count, and its handler, which writes the reply.
type command struct {
	states  state
	minArgs int
	maxArgs int // restArg: the rest of the line is one argument (spaces kept)
	run     func(s *session, args []string)
}

const restArg = -1

// commands is the command table of RFC 1939, RFC 2449 (CAPA), RFC 2595
// (STLS) and RFC 5034 (AUTH). APOP is not offered.
var commands = map[string]command{
	"CAPA": {authorization | transaction, 0, 0, (*session).cmdCapa},
	"STLS": {authorization, 0, 0, (*session).cmdStls},
	"USER": {authorization, 1, 1, (*session).cmdUser},
	"PASS": {authorization, 1, restArg, (*session).cmdPass},
	"AUTH": {authorization, 0, 2, (*session).cmdAuth},
	"QUIT": {authorization | transaction, 0, 0, (*session).cmdQuit},
	"STAT": {transaction, 0, 0, (*session).cmdStat},
	"LIST": {transaction, 0, 1, (*session).cmdList},
	"UIDL": {transaction, 0, 1, (*session).cmdUidl},
	"RETR": {transaction, 1, 1, (*session).cmdRetr},
	"TOP":  {transaction, 2, 2, (*session).cmdTop},
	"DELE": {transaction, 1, 1, (*session).cmdDele},
	"RSET": {transaction, 0, 0, (*session).cmdRset},
	"NOOP": {transaction, 0, 0, (*session).cmdNoop},
}

// session is one POP3 connection.
type session struct {
	srv     *Server
	log     *slog.Logger
	conn    net.Conn // the connection as read and written (TLS after STLS)
	r       *bufio.Reader
	w       *bufio.Writer
	ip      string
	tls     bool // the connection is TLS
	plainOK bool // a loopback client allowed to log in without TLS

	state    state
	user     string // the name of a USER awaiting its PASS
	commands int    // commands in the current state
	bad      int
	failures int
	acct     *mailcluster.Account
	drop     *maildrop
	done     bool // the connection ends after the reply in hand
}

func (s *Server) newSession(c net.Conn, implicitTLS bool) *session {
	conn := net.Conn(deadlineConn{Conn: c, idle: s.idleTimeout()})
	if implicitTLS {
		conn = tls.Server(conn, s.cfg.TLS)
	}
	return &session{srv: s, log: s.cfg.Log, conn: conn, r: bufio.NewReaderSize(conn, maxLine), w: bufio.NewWriter(conn),
		ip: remoteIP(c), tls: implicitTLS, plainOK: s.plaintextAllowed(c), state: authorization}
}

// run greets the client and answers commands until QUIT, an error of the
// connection, or a bound is passed.
func (s *session) run() {
	s.ok("mailcluster POP3 server ready")
	for !s.done {
		if err := s.flush(); err != nil {
			return
		}
		line, err := s.readLine()
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				s.fail("Line too long")
				_ = s.w.Flush()
			case isTimeout(err):
				s.fail("Autologout; idle for too long")
				_ = s.w.Flush()
			}
			return
		}
		s.dispatch(line)
	}
	_ = s.w.Flush()
}

// flush sends the replies written so far unless more pipelined commands
// are waiting (RFC 2449 PIPELINING).
func (s *session) flush() error {
	if s.r.Buffered() > 0 {
		return nil
	}
	return s.w.Flush()
}

var errLineTooLong = errors.New("pop3svc: line too long")

// readLine reads one line without its line end (CRLF, or a bare LF).
func (s *session) readLine() (string, error) {
	b, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dispatch runs one command line through the command table.
func (s *session) dispatch(line string) {
	s.commands++
	limit := maxAuthCommands
	if s.state == transaction {
		limit = baseCommands + perMessageCommands*len(s.drop.msgs)
	}
	if s.commands > limit {
		s.fail("Too many commands; closing")
		s.done = true
		return
	}
	name, rest, _ := strings.Cut(line, " ")
	cmd, ok := commands[strings.ToUpper(name)]
	var args []string
	if cmd.maxArgs == restArg {
		if rest != "" {
			args = []string{rest}
		}
	} else {
		args = strings.Fields(rest)
	}
	switch {
	case !ok:
		s.badCommand("Unknown command")
	case cmd.states&s.state == 0:
		s.badCommand("Command not valid in this state")
	case len(args) < cmd.minArgs || cmd.maxArgs != restArg && len(args) > cmd.maxArgs:
		s.badCommand("Wrong number of arguments")
	default:
		cmd.run(s, args)
	}
}

// badCommand answers a command that is not understood, and ends the
// session after too many.
func (s *session) badCommand(msg string) {
	if s.bad++; s.bad >= maxBadCommands {
		s.fail(msg + "; too many bad commands, closing")
		s.done = true
		return
	}
	s.fail(msg)
}

// ok writes a positive status line.
func (s *session) ok(format string, args ...any) {
	if format == "" {
		s.w.WriteString("+OK\r\n")
		return
	}
	fmt.Fprintf(s.w, "+OK "+format+"\r\n", args...)
}

// fail writes a negative status line (with a response code in brackets
// when msg starts with one, RFC 2449 8).
func (s *session) fail(msg string) {
	s.w.WriteString("-ERR " + msg + "\r\n")
}

// ctx bounds the storage and login work of one command.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), commandTimeout)
}

// loginAllowed: over TLS, or a loopback client allowed plain text.
func (s *session) loginAllowed() bool { return s.tls || s.plainOK }

// setState enters a state; its command count starts again.
func (s *session) setState(st state) {
	s.state, s.commands = st, 0
}
