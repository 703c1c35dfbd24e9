package integration_test

import (
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// pop3Command sends one POP3 command and reads its status line; a
// multi-line answer (LIST, UIDL, RETR) is read to its end.
func pop3Command(t *testing.T, c *textproto.Conn, multi bool, format string, args ...any) []string {
	t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		t.Fatal(err)
	}
	line, err := c.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "+OK") {
		t.Fatalf("%s: %s", strings.Fields(format)[0], line)
	}
	if !multi {
		return []string{line}
	}
	lines, err := c.ReadDotLines()
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestPOP3ExpungeSeenByIMAP: a message deleted through one node's POP3
// (DELE, then QUIT) is an expunge like any other: an IMAP client idling
// on another node gets EXPUNGE through the primary's notice (folders are
// rescanned only hourly here), and usage goes down on every node. UIDL
// gives the IMAP UIDs.
func TestPOP3ExpungeSeenByIMAP(t *testing.T) {
	c, p := setupNoticeCluster(t, "IMAP", "POP3")
	secs := c.Secondaries(p)
	a, b := c.Nodes[secs[0]], c.Nodes[secs[1]]
	for i := range 2 {
		if err := sendGo(a.SMTP, "bulk@example.com", fmt.Sprintf("pop-%d", i), "for POP3"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitTimeout, "usage 2 on every node", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, "bulk@example.com").Messages != 2 {
				return false
			}
		}
		return true
	})

	w := &idleWatcher{}
	watcher := imapLogin(t, b, w.handler())
	uids, err := watcher.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}

	raw, err := net.DialTimeout("tcp", a.POP3, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	conn := textproto.NewConn(raw)
	if greeting, err := conn.ReadLine(); err != nil || !strings.HasPrefix(greeting, "+OK") {
		t.Fatalf("greeting: %q %v", greeting, err)
	}
	pop3Command(t, conn, false, "USER bulk@example.com")
	pop3Command(t, conn, false, "PASS bulk-pass-12")
	uidl := pop3Command(t, conn, true, "UIDL")
	var want []string
	for i, uid := range uids.AllUIDs() {
		want = append(want, fmt.Sprintf("%d %d", i+1, uid))
	}
	if len(uidl) != 2 || !strings.HasSuffix(uidl[0], "."+strings.Fields(want[0])[1]) || !strings.HasSuffix(uidl[1], "."+strings.Fields(want[1])[1]) {
		t.Fatalf("UIDL %q; the IMAP UIDs are %v", uidl, want)
	}
	pop3Command(t, conn, false, "DELE 1")
	pop3Command(t, conn, false, "QUIT")

	eventually(t, waitTimeout, "EXPUNGE on node B after a POP3 delete on node A", func() bool { return w.expungedAre(1) })
	endIdle(t, idle)
	eventually(t, waitTimeout, "usage 1 on every node", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, "bulk@example.com").Messages != 1 {
				return false
			}
		}
		return true
	})
}
