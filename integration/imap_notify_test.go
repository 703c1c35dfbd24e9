package integration_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// idleWatcher records the untagged updates an IMAP client receives.
type idleWatcher struct {
	mu       sync.Mutex
	exists   uint32
	flags    []string // "seq flags"
	expunged []uint32
}

func (w *idleWatcher) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				w.mu.Lock()
				w.exists = *d.NumMessages
				w.mu.Unlock()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf == nil {
				return
			}
			w.mu.Lock()
			w.flags = append(w.flags, fmt.Sprintf("%d %v", buf.SeqNum, buf.Flags))
			w.mu.Unlock()
		},
		Expunge: func(seq uint32) {
			w.mu.Lock()
			w.expunged = append(w.expunged, seq)
			w.mu.Unlock()
		},
	}
}

// expungedAre tells whether the client got the EXPUNGE of exactly seqs.
func (w *idleWatcher) expungedAre(seqs ...uint32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Equal(w.expunged, seqs)
}

// endIdle ends IDLE and checks that it ended cleanly.
func endIdle(t *testing.T, idle *imapclient.IdleCommand) {
	t.Helper()
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE ended with %v", err)
	}
}

// allowPlaintext sets [section] AllowPlaintextLoopback (section is IMAP
// or POP3) on the primary and waits until every node has it: loopback
// clients may then log in to that protocol without TLS.
func allowPlaintext(t *testing.T, c *Cluster, p int, section string) {
	t.Helper()
	url := "/api/v1/settings/mailcluster/" + section + "/AllowPlaintextLoopback"
	if code, body := admin(t, c.Nodes[p], "PUT", url, `{"value":"Yes"}`); code >= 300 {
		t.Fatalf("allow plain %s on loopback: %d %s", section, code, body)
	}
	for i, n := range c.Nodes {
		eventually(t, waitTimeout, fmt.Sprintf("n%d has the %s setting", i, section), func() bool {
			code, body := admin(t, n, "GET", url, "")
			return code == 200 && strings.Contains(body, "Yes")
		})
	}
}

// setupNoticeCluster starts a 3-node mail cluster whose nodes rescan
// folders only hourly, so that only the primary's notices bring changes
// made elsewhere, and allows plaintext on loopback for each of sections.
func setupNoticeCluster(t *testing.T, sections ...string) (*Cluster, int) {
	t.Helper()
	slow := []string{"--imap-rescan", "1h"}
	c, p := setupMailCluster(t, 3, map[int][]string{0: slow, 1: slow, 2: slow})
	for _, s := range sections {
		allowPlaintext(t, c, p, s)
	}
	return c, p
}

// imapLogin logs bulk@example.com in on a node and selects INBOX.
func imapLogin(t *testing.T, n *Node, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(n.IMAP, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("bulk@example.com", "bulk-pass-12").Wait(); err != nil {
		t.Fatalf("login on %s: %v", n.IMAP, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIMAPNotifyAcrossNodes: an IMAP client idling on node B sees a
// delivery made through node A's SMTP (EXISTS), a flag change made
// through node C's IMAP (FETCH FLAGS) and an expunge on C (EXPUNGE).
// Every node rescans folders only once an hour here, so only the notice
// the primary publishes for each change can bring the update. A is a
// secondary (its report travels to the primary over the internal API), C
// the primary (its report is applied where it is made).
func TestIMAPNotifyAcrossNodes(t *testing.T) {
	c, p := setupNoticeCluster(t, "IMAP")
	secs := c.Secondaries(p)
	a, b, cn := c.Nodes[secs[1]], c.Nodes[secs[0]], c.Nodes[p]

	w := &idleWatcher{}
	watcher := imapLogin(t, b, w.handler())
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}

	if err := sendGo(a.SMTP, "bulk@example.com", "notify-1", "across nodes"); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, "EXISTS on node B after a delivery through node A", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.exists == 1
	})

	changer := imapLogin(t, cn, nil)
	if _, err := changer.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, "FETCH FLAGS on node B after a STORE on node C", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.Contains(w.flags, `1 [\Flagged]`)
	})

	if _, err := changer.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := changer.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, "EXPUNGE on node B after an expunge on node C", func() bool { return w.expungedAre(1) })
	endIdle(t, idle)
}

// TestIMAPRescanWithoutPrimary: while no primary is reachable, nobody
// publishes notices, and a session idling on one node still sees a
// delivery made through another by reading its folder again (every 2 s).
func TestIMAPRescanWithoutPrimary(t *testing.T) {
	never := []string{"--never-primary"}
	c, p := setupMailCluster(t, 3, map[int][]string{1: never, 2: never})
	if p != 0 {
		t.Fatalf("primary is n%d", p)
	}
	allowPlaintext(t, c, p, "IMAP")
	w := &idleWatcher{}
	watcher := imapLogin(t, c.Nodes[1], w.handler())
	c.Nodes[0].Stop()
	eventually(t, waitTimeout, "no primary", func() bool { return len(c.Primaries()) == 0 })
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := sendGo(c.Nodes[2].SMTP, "bulk@example.com", "rescan-1", "no primary"); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "EXISTS on n1 after a delivery through n2 without a primary", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.exists == 1
	})
	t.Logf("seen after %s", took.Round(time.Millisecond))
}
