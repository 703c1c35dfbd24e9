package pop3svc

import (
	"errors"
	"io"
	"strconv"

	"mailcluster"
)

// message parses a message number and returns its index; ok false (after
// the reply) for a bad number, one out of range, or one marked deleted.
func (s *session) message(arg string) (int, bool) {
	n, err := strconv.Atoi(arg)
	switch {
	case err != nil || len(arg) > 10:
		s.badCommand("Invalid message number")
		return 0, false
	case n < 1 || n > len(s.drop.msgs):
		s.fail("No such message")
		return 0, false
	case s.drop.deleted[n-1]:
		s.fail("Message " + arg + " is deleted")
		return 0, false
	}
	return n - 1, true
}

// cmdStat: the number and total size of the messages not marked deleted.
func (s *session) cmdStat([]string) {
	n, total := 0, int64(0)
	for i := range s.drop.msgs {
		if !s.drop.deleted[i] {
			n++
			total += s.srv.size(s.drop, i)
		}
	}
	s.ok("%d %d", n, total)
}

// cmdList: the size of one message, or of every message not marked
// deleted.
func (s *session) cmdList(args []string) {
	s.listing(args, func(i int) string { return strconv.FormatInt(s.srv.size(s.drop, i), 10) })
}

// cmdUidl: the unique id of one message, or of every message not marked
// deleted.
func (s *session) cmdUidl(args []string) {
	s.listing(args, s.drop.uidl)
}

func (s *session) listing(args []string, value func(i int) string) {
	if len(args) == 1 {
		if i, ok := s.message(args[0]); ok {
			s.ok("%d %s", i+1, value(i))
		}
		return
	}
	s.ok("%d messages", len(s.drop.msgs)-s.drop.ndeleted)
	for i := range s.drop.msgs {
		if !s.drop.deleted[i] {
			s.w.WriteString(strconv.Itoa(i+1) + " " + value(i) + "\r\n")
		}
	}
	s.w.WriteString(".\r\n")
}

// cmdRetr sends a whole message.
func (s *session) cmdRetr(args []string) {
	if i, ok := s.message(args[0]); ok {
		s.send(i, -1)
	}
}

// cmdTop sends a message's header and the first lines of its body.
func (s *session) cmdTop(args []string) {
	i, ok := s.message(args[0])
	if !ok {
		return
	}
	lines, err := strconv.Atoi(args[1])
	if err != nil || lines < 0 || len(args[1]) > 10 {
		s.badCommand("Invalid number of lines")
		return
	}
	s.send(i, lines)
}

// send writes message i dot-stuffed and ends it with ".": all of it, or
// with bodyLines >= 0 its header and that many body lines. A failure
// after the first line ends the connection (the client cannot tell where
// the message stopped).
func (s *session) send(i, bodyLines int) {
	m := s.drop.msgs[i]
	f, err := s.drop.folder.Open(m)
	if err != nil {
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			s.fail("Message " + strconv.Itoa(i+1) + " was removed by another session")
			return
		}
		s.fail(replyText(s.log, err))
		return
	}
	defer f.Close()
	if bodyLines < 0 {
		s.ok("%d octets", s.srv.size(s.drop, i))
	} else {
		s.ok("Top of message follows")
	}
	mw := &messageWriter{w: s.w, stuff: true, bodyLines: bodyLines, atStart: true}
	if _, err := io.Copy(mw, f); err != nil && !errors.Is(err, errEnough) {
		s.log.Warn("pop3: sending a message failed", "file", m.Path, "err", err)
		s.done = true
		return
	}
	if err := mw.finish(); err != nil {
		s.done = true
		return
	}
	s.w.WriteString(".\r\n")
}

// cmdDele marks a message for removal at QUIT.
func (s *session) cmdDele(args []string) {
	if i, ok := s.message(args[0]); ok {
		s.drop.deleted[i] = true
		s.drop.ndeleted++
		s.ok("Message %d deleted", i+1)
	}
}

// cmdRset unmarks every message.
func (s *session) cmdRset([]string) {
	clear(s.drop.deleted)
	s.drop.ndeleted = 0
	s.ok("%d messages", len(s.drop.msgs))
}

func (s *session) cmdNoop([]string) { s.ok("") }

// cmdQuit ends the session; in the TRANSACTION state it first removes the
// messages marked deleted (the UPDATE state).
func (s *session) cmdQuit([]string) {
	s.done = true
	if s.state != transaction {
		s.ok("Bye")
		return
	}
	ctx, cancel := s.ctx()
	defer cancel()
	left, err := s.drop.commit(ctx)
	if err != nil {
		s.log.Warn("pop3: messages marked deleted were not all removed", "account", s.acct.Address(), "err", err)
		s.fail("[SYS/TEMP] Some messages marked deleted were not removed")
		return
	}
	s.ok("Bye; %d messages left", left)
}
