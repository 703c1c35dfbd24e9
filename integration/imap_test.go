package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The account every IMAP test uses (made by setupMailCluster, no quota).
const (
	imapUser = "bulk@example.com"
	imapPass = "bulk-pass-12"
)

// imapConnDeadline bounds one IMAP connection of a test, from dial to
// close.
const imapConnDeadline = time.Minute

// setupIMAPCluster starts a mail cluster of n nodes (setupMailCluster)
// and lets loopback clients log in to IMAP without TLS, through the
// primary's settings: it returns once every node's IMAP listener no
// longer announces LOGINDISABLED.
func setupIMAPCluster(t *testing.T, n int, extra map[int][]string) (*Cluster, int) {
	t.Helper()
	c, p := setupMailCluster(t, n, extra)
	if code, body := admin(t, c.Nodes[p], "PUT", "/api/v1/settings/mailcluster/IMAP/AllowPlaintextLoopback", `{"value":"Yes"}`); code >= 300 {
		t.Fatalf("allow plaintext IMAP on loopback: %d %s", code, body)
	}
	for i, node := range c.Nodes {
		if node.IMAP == "" {
			t.Fatalf("n%d has no IMAP listener", i)
		}
		eventually(t, waitTimeout, fmt.Sprintf("n%d offers LOGIN without TLS on loopback", i), func() bool {
			return plaintextLoginOffered(node.IMAP)
		})
	}
	return c, p
}

// plaintextLoginOffered tells whether the IMAP server at addr lets this
// (loopback) client log in without TLS.
func plaintextLoginOffered(addr string) bool {
	cl, err := imapConnect(addr)
	if err != nil {
		return false
	}
	defer cl.Close()
	caps, err := cl.Capability().Wait()
	return err == nil && !caps.Has(imap.CapLoginDisabled)
}

// imapConnect dials an IMAP server and reads its greeting; the
// connection ends after imapConnDeadline whatever happens.
func imapConnect(addr string) (*imapclient.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(imapConnDeadline))
	cl := imapclient.New(conn, nil)
	if err := cl.WaitGreeting(); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// imapSession connects to addr and logs in as the test account; the
// connection is closed on cleanup.
func imapSession(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	cl, err := imapConnect(addr)
	if err != nil {
		t.Fatalf("IMAP connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { cl.Close() })
	if err := cl.Login(imapUser, imapPass).Wait(); err != nil {
		t.Fatalf("IMAP login at %s: %v", addr, err)
	}
	return cl
}

// imapAppend appends msg to folder and returns the UID it got.
func imapAppend(cl *imapclient.Client, folder, msg string, flags ...imap.Flag) (imap.UID, error) {
	cmd := cl.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags})
	if _, err := cmd.Write([]byte(msg)); err != nil {
		return 0, err
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, err
	}
	return data.UID, nil
}

// imapMessage is what a test compares of a message across nodes.
type imapMessage struct {
	UID     uint32
	Flags   string // sorted, space-separated
	Subject string
	Size    int64
}

// imapFolder is a folder as one node's IMAP shows it.
type imapFolder struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []imapMessage // in sequence order
}

func (f imapFolder) uids() []uint32 {
	out := make([]uint32, len(f.Messages))
	for i, m := range f.Messages {
		out[i] = m.UID
	}
	return out
}

func (f imapFolder) bySubject(subject string) (imapMessage, bool) {
	for _, m := range f.Messages {
		if m.Subject == subject {
			return m, true
		}
	}
	return imapMessage{}, false
}

// readFolder logs in at addr on a fresh connection, EXAMINEs folder and
// reads every message with UID FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE).
func readFolder(t testing.TB, addr, folder string) imapFolder {
	t.Helper()
	cl := imapSession(t, addr)
	defer cl.Close()
	sel, err := cl.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s at %s: %v", folder, addr, err)
	}
	out := imapFolder{UIDValidity: sel.UIDValidity, UIDNext: uint32(sel.UIDNext)}
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatalf("UID FETCH 1:* in %s at %s: %v", folder, addr, err)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].SeqNum < msgs[j].SeqNum })
	for _, m := range msgs {
		var subject string
		if m.Envelope != nil {
			subject = m.Envelope.Subject
		}
		out.Messages = append(out.Messages, imapMessage{UID: uint32(m.UID), Flags: flagString(m.Flags), Subject: subject, Size: m.RFC822Size})
	}
	if uint32(len(out.Messages)) != sel.NumMessages {
		t.Fatalf("%s at %s: EXISTS %d but UID FETCH 1:* gave %d messages", folder, addr, sel.NumMessages, len(out.Messages))
	}
	_ = cl.Logout().Wait()
	return out
}

func flagString(flags []imap.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = string(f)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// checkUIDsIncreasing fails when the UIDs of f are not strictly
// increasing in sequence order or UIDNEXT is not above the highest.
func checkUIDsIncreasing(t testing.TB, where string, f imapFolder) {
	t.Helper()
	for i := 1; i < len(f.Messages); i++ {
		if f.Messages[i].UID <= f.Messages[i-1].UID {
			t.Fatalf("%s: UIDs not strictly increasing at sequence %d: %v", where, i+1, f.uids())
		}
	}
	if n := len(f.Messages); n > 0 && f.UIDNext <= f.Messages[n-1].UID {
		t.Fatalf("%s: UIDNEXT %d is not above the highest UID %d", where, f.UIDNext, f.Messages[n-1].UID)
	}
}

// runTool runs an external client, bounded to a minute, and returns its
// combined output; a failure fails the test.
func runTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: `make test` installs it (make test-deps)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imaplibScript drives IMAP with Python's imaplib over plain text on
// loopback: LOGIN, LIST, APPEND to Sent, SELECT, FETCH, STORE, SEARCH,
// COPY, EXPUNGE, then the UIDs and flags of Sent and INBOX. It prints one
// JSON object.
const imaplibScript = `
import imaplib, json, re, sys, time

host, port, user, password = sys.argv[1:5]
out = {}
m = imaplib.IMAP4(host, int(port), timeout=30)
out["login"] = m.login(user, password)[0]
out["list"] = [d.decode() for d in m.list()[1]]

def msg(subject):
    return ("From: Python <py@remote.test>\r\nTo: %s\r\nSubject: %s\r\n"
            "Date: Tue, 03 Jan 2023 10:00:00 +0000\r\n\r\nbody of %s\r\n" % (user, subject, subject)).encode()

out["append"] = []
for s in ["sent one", "sent two", "sent three"]:
    typ, data = m.append("Sent", None, imaplib.Time2Internaldate(time.time()), msg(s))
    out["append"].append([typ, data[0].decode()])
typ, data = m.select("Sent")
out["select"] = [typ, data[0].decode()]
typ, data = m.fetch("2", "(UID FLAGS BODY.PEEK[])")
out["fetch"] = [typ, data[0][0].decode(), data[0][1].decode()]
typ, data = m.store("1:2", "+FLAGS", r"(\Seen)")
out["store"] = [typ, [d.decode() for d in data]]
out["search_seen"] = m.search(None, "SEEN")[1][0].decode()
out["search_unseen"] = m.search(None, "UNSEEN")[1][0].decode()
out["uid_search"] = m.uid("SEARCH", "SUBJECT", '"sent two"')[1][0].decode()
typ, data = m.copy("2", "INBOX")
out["copy"] = [typ, data[0].decode() if data[0] else ""]
m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
out["expunge"] = [typ, [d.decode() for d in data if d]]

out["state"] = {}
for folder in ["Sent", "INBOX"]:
    typ, data = m.select(folder)
    validity = m.response("UIDVALIDITY")[1][0].decode()
    msgs = {}
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
    for d in data:
        if not d:
            continue
        line = d.decode() if isinstance(d, bytes) else d[0].decode()
        uid = re.search(r"UID (\d+)", line).group(1)
        flags = re.search(r"FLAGS \(([^)]*)\)", line).group(1)
        msgs[uid] = " ".join(sorted(flags.split()))
    out["state"][folder] = {"uidvalidity": validity, "messages": msgs}
m.logout()
print(json.dumps(out))
`

// TestIMAPPythonImaplib drives node 2's IMAP with Python's imaplib
// (LOGIN, LIST with special-use, APPEND to Sent, SELECT, FETCH, STORE,
// SEARCH, COPY, EXPUNGE); node 3's IMAP then shows the same UIDs and
// flags.
func TestIMAPPythonImaplib(t *testing.T) {
	c, _ := setupIMAPCluster(t, 3, nil)
	dir := t.TempDir()
	script := filepath.Join(dir, "imaplib_cluster.py")
	if err := os.WriteFile(script, []byte(imaplibScript), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(c.Nodes[1].IMAP)
	raw := runTool(t, dir, "python3", script, host, port, imapUser, imapPass)
	var got struct {
		Login        string
		List         []string
		Append       [][]string
		Select       []string
		Fetch        []string
		Store        []any
		SearchSeen   string `json:"search_seen"`
		SearchUnseen string `json:"search_unseen"`
		UIDSearch    string `json:"uid_search"`
		Copy         []string
		Expunge      []any
		State        map[string]struct {
			UIDValidity string            `json:"uidvalidity"`
			Messages    map[string]string `json:"messages"`
		}
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("imaplib output: %v\n%s", err, raw)
	}
	t.Logf("imaplib saw: %s", raw)

	if got.Login != "OK" {
		t.Fatalf("LOGIN: %q", got.Login)
	}
	for folder, use := range map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`} {
		re := regexp.MustCompile(`^\(([^)]*)\) "\." "?` + folder + `"?$`)
		found := false
		for _, l := range got.List {
			if m := re.FindStringSubmatch(l); m != nil {
				found = true
				if use != "" && !slices.Contains(strings.Fields(m[1]), use) {
					t.Errorf("LIST shows %s without %s: %q", folder, use, l)
				}
			}
		}
		if !found {
			t.Errorf("LIST lacks %s: %q", folder, got.List)
		}
	}
	for i, a := range got.Append {
		if a[0] != "OK" || !strings.Contains(a[1], fmt.Sprintf("APPENDUID %s %d]", got.State["Sent"].UIDValidity, i+1)) {
			t.Errorf("APPEND %d: %v (UIDVALIDITY of Sent %s)", i+1, a, got.State["Sent"].UIDValidity)
		}
	}
	switch {
	case got.Select[0] != "OK" || got.Select[1] != "3":
		t.Errorf("SELECT Sent: %v", got.Select)
	case got.Fetch[0] != "OK" || !strings.Contains(got.Fetch[1], "UID 2") || !strings.Contains(got.Fetch[2], "Subject: sent two") ||
		!strings.Contains(got.Fetch[2], "body of sent two"):
		t.Errorf("FETCH 2: %q", got.Fetch)
	case got.Store[0] != "OK":
		t.Errorf("STORE: %v", got.Store)
	case got.SearchSeen != "1 2" || got.SearchUnseen != "3" || got.UIDSearch != "2":
		t.Errorf("SEARCH SEEN %q, UNSEEN %q, UID SEARCH SUBJECT %q", got.SearchSeen, got.SearchUnseen, got.UIDSearch)
	case got.Copy[0] != "OK" || !strings.Contains(got.Copy[1], "COPYUID"):
		t.Errorf("COPY: %v", got.Copy)
	case fmt.Sprint(got.Expunge) != "[OK [1]]":
		t.Errorf("EXPUNGE: %v", got.Expunge)
	}
	want := map[string]map[string]string{"Sent": {"2": `\Seen`, "3": ""}, "INBOX": {"1": `\Seen`}}
	for folder, w := range want {
		if !reflect.DeepEqual(got.State[folder].Messages, w) {
			t.Errorf("%s through n1 (imaplib): %v, want %v", folder, got.State[folder].Messages, w)
		}
		// The same folder through another node's IMAP.
		f := readFolder(t, c.Nodes[2].IMAP, folder)
		other := map[string]string{}
		for _, m := range f.Messages {
			other[strconv.FormatUint(uint64(m.UID), 10)] = m.Flags
		}
		if !reflect.DeepEqual(other, got.State[folder].Messages) || strconv.FormatUint(uint64(f.UIDValidity), 10) != got.State[folder].UIDValidity {
			t.Errorf("%s through n2: UIDVALIDITY %d, %v; through n1: UIDVALIDITY %s, %v", folder, f.UIDValidity, other,
				got.State[folder].UIDValidity, got.State[folder].Messages)
		}
	}
}

// TestIMAPCurl lists the folders and fetches a message by UID with curl's
// IMAP client against node 1.
func TestIMAPCurl(t *testing.T) {
	c, _ := setupIMAPCluster(t, 3, nil)
	for i := 1; i <= 3; i++ {
		if err := sendGo(c.Nodes[i-1].SMTP, imapUser, fmt.Sprintf("curl-%d", i), fmt.Sprintf("Body number %d for curl.", i)); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	// Expunge the first message, so that UIDs and sequence numbers differ.
	cl := imapSession(t, c.Nodes[0].IMAP)
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	f := readFolder(t, c.Nodes[0].IMAP, "INBOX")
	third, ok := f.bySubject("curl-3")
	if len(f.Messages) != 2 || !ok || third.UID != 3 {
		t.Fatalf("INBOX after the expunge: %+v", f.Messages)
	}

	base := "imap://" + c.Nodes[0].IMAP
	user := imapUser + ":" + imapPass
	list := runTool(t, "", "curl", "--silent", "--show-error", "--max-time", "30", "--url", base+"/", "--user", user)
	for _, folder := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk"} {
		if !regexp.MustCompile(`(?m)^\* LIST \([^)]*\) "\." "?` + folder + `"?\r?$`).MatchString(list) {
			t.Errorf("curl's folder list lacks %s:\n%s", folder, list)
		}
	}
	msg := runTool(t, "", "curl", "--silent", "--show-error", "--max-time", "30", "--url", fmt.Sprintf("%s/INBOX;UID=%d", base, third.UID), "--user", user)
	if !strings.Contains(msg, "Subject: curl-3") || !strings.Contains(msg, "Body number 3 for curl.") || strings.Contains(msg, "curl-2") {
		t.Fatalf("curl fetched UID %d:\n%s", third.UID, msg)
	}
	// The fetch was a BODY[] without PEEK: the message is now \Seen.
	if f := readFolder(t, c.Nodes[2].IMAP, "INBOX"); f.Messages[1].Flags != `\Seen` || f.Messages[0].Flags != "" {
		t.Fatalf("flags after curl's fetch, through n2: %+v", f.Messages)
	}
}

// maildirContents maps the message files of a local Maildir folder (new/
// and cur/) to their contents, by path relative to the folder.
func maildirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, de := range des {
			b, err := os.ReadFile(filepath.Join(dir, sub, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+de.Name()] = string(b)
		}
	}
	return out
}

// localFile returns the path (relative to dir) of the one file of a
// local Maildir folder whose content has Subject: subject.
func localFile(t *testing.T, dir, subject string) string {
	t.Helper()
	var found []string
	for name, content := range maildirContents(t, dir) {
		if strings.Contains(content, "Subject: "+subject+"\r\n") || strings.Contains(content, "Subject: "+subject+"\n") {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("local files with subject %q in %s: %v", subject, dir, found)
	}
	return found[0]
}

// setLocalFlag adds a Maildir flag letter to the local file of a message
// (moving it to cur/).
func setLocalFlag(t *testing.T, dir, subject string, letter rune) {
	t.Helper()
	old := localFile(t, dir, subject)
	base, info, _ := strings.Cut(filepath.Base(old), ":2,")
	flags := []rune(info + string(letter))
	slices.Sort(flags)
	if err := os.Rename(filepath.Join(dir, old), filepath.Join(dir, "cur", base+":2,"+string(flags))); err != nil {
		t.Fatal(err)
	}
}

// TestIMAPMbsync syncs a local Maildir two ways with the account through
// node 2 with isync's mbsync: deliveries reach the Maildir, a local
// message, a local folder and a local flag reach the server (seen
// through node 3), an expunge on either side removes the message on the
// other, and a further run changes nothing.
func TestIMAPMbsync(t *testing.T) {
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Fatal("mbsync is not installed: `make test` installs it (make test-deps, package isync)")
	}
	c, _ := setupIMAPCluster(t, 3, nil)
	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	inbox := filepath.Join(local, "INBOX")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(c.Nodes[1].IMAP)
	rc := filepath.Join(dir, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount cluster
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN
Timeout 30

IMAPStore remote
Account cluster

MaildirStore local
Path %s/
Inbox %s
SubFolders Verbatim

Channel cluster
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
`, host, port, imapUser, imapPass, local, inbox)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	mbsync := func() string {
		t.Helper()
		return runTool(t, dir, "mbsync", "--config", rc, "--all")
	}

	for i := 1; i <= 2; i++ {
		if err := sendGo(c.Nodes[i].SMTP, imapUser, fmt.Sprintf("mbsync-%d", i), "delivered by SMTP"); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	mbsync()
	localFile(t, inbox, "mbsync-1")
	localFile(t, inbox, "mbsync-2")
	for _, folder := range []string{"Sent", "Drafts", "Trash", "Junk"} {
		if st, err := os.Stat(filepath.Join(local, folder, "cur")); err != nil || !st.IsDir() {
			t.Errorf("the server's folder %s was not created locally: %v", folder, err)
		}
	}

	// A local message, a local folder with a message, and a flag set
	// locally on a delivered message.
	writeLocal := func(folder, name, subject string) {
		t.Helper()
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(folder, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		msg := "From: Local <local@example.com>\r\nTo: " + imapUser + "\r\nSubject: " + subject + "\r\nDate: Wed, 04 Jan 2023 09:00:00 +0000\r\n\r\nwritten locally\r\n"
		if err := os.WriteFile(filepath.Join(folder, "new", name), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeLocal(inbox, "1672822800.local1.test", "local-1")
	writeLocal(filepath.Join(local, "Archive"), "1672822801.local2.test", "archived")
	setLocalFlag(t, inbox, "mbsync-1", 'F')
	mbsync()

	n3 := c.Nodes[2].IMAP
	f := readFolder(t, n3, "INBOX")
	checkUIDsIncreasing(t, "INBOX through n2", f)
	m1, ok1 := f.bySubject("mbsync-1")
	_, ok2 := f.bySubject("mbsync-2")
	_, okl := f.bySubject("local-1")
	if len(f.Messages) != 3 || !ok1 || !ok2 || !okl {
		t.Fatalf("INBOX through n2 after the local changes: %+v", f.Messages)
	}
	if !strings.Contains(m1.Flags, `\Flagged`) {
		t.Fatalf("the flag set locally did not reach the server: %+v", m1)
	}
	if a := readFolder(t, n3, "Archive"); len(a.Messages) != 1 || a.Messages[0].Subject != "archived" {
		t.Fatalf("the local folder Archive through n2: %+v", a.Messages)
	}

	// An expunge on the server (through node 3) removes the local file;
	// a message flagged deleted locally is expunged on the server.
	cl := imapSession(t, n3)
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	m2, _ := f.bySubject("mbsync-2")
	if err := cl.Store(imap.UIDSetNum(imap.UID(m2.UID)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	setLocalFlag(t, inbox, "local-1", 'T')
	mbsync()
	if files := maildirContents(t, inbox); len(files) != 1 {
		t.Fatalf("local INBOX after the expunges holds %d files: %v", len(files), files)
	}
	localFile(t, inbox, "mbsync-1")
	if f := readFolder(t, n3, "INBOX"); len(f.Messages) != 1 || f.Messages[0].UID != m1.UID {
		t.Fatalf("INBOX through n2 after the expunges: %+v", f.Messages)
	}

	// Stable: one more run changes neither side.
	before, beforeLocal := readFolder(t, n3, "INBOX"), maildirContents(t, inbox)
	mbsync()
	after, afterLocal := readFolder(t, n3, "INBOX"), maildirContents(t, inbox)
	if !reflect.DeepEqual(before, after) || !reflect.DeepEqual(beforeLocal, afterLocal) {
		t.Fatalf("a run with nothing to do changed something:\nserver %+v\n    -> %+v\nlocal %v\n   -> %v", before, after, beforeLocal, afterLocal)
	}
}

// TestIMAPConcurrentDeliveries delivers 3 x 50 messages through the three
// nodes at once into one mailbox while an IMAP client on each node reads
// the folder's status (so that every node assigns UIDs): every message
// gets its own UID, and every node's IMAP shows the same UIDs for the
// same messages, with UIDNEXT above the highest.
func TestIMAPConcurrentDeliveries(t *testing.T) {
	c, _ := setupIMAPCluster(t, 3, nil)
	const perNode = 50
	done := make(chan struct{})
	var readers sync.WaitGroup
	readErrs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		cl := imapSession(t, n.IMAP)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait(); err != nil {
					readErrs <- fmt.Errorf("STATUS during the deliveries: %w", err)
					return
				}
			}
		}()
	}
	var senders sync.WaitGroup
	sendErrs := make(chan error, len(c.Nodes)*perNode)
	for i, n := range c.Nodes {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for j := range perNode {
				if err := sendGo(n.SMTP, imapUser, fmt.Sprintf("conc-%d-%d", i, j), "concurrent"); err != nil {
					sendErrs <- fmt.Errorf("n%d message %d: %w", i, j, err)
				}
			}
		}()
	}
	senders.Wait()
	close(done)
	readers.Wait()
	close(sendErrs)
	close(readErrs)
	for err := range sendErrs {
		t.Error(err)
	}
	for err := range readErrs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	var first imapFolder
	for i, n := range c.Nodes {
		f := readFolder(t, n.IMAP, "INBOX")
		where := fmt.Sprintf("INBOX through n%d", i)
		checkUIDsIncreasing(t, where, f)
		if len(f.Messages) != len(c.Nodes)*perNode {
			t.Fatalf("%s: %d messages, want %d", where, len(f.Messages), len(c.Nodes)*perNode)
		}
		subjects := map[string]bool{}
		for _, m := range f.Messages {
			if subjects[m.Subject] {
				t.Fatalf("%s: %q twice", where, m.Subject)
			}
			subjects[m.Subject] = true
		}
		if i == 0 {
			first = f
			continue
		}
		if f.UIDValidity != first.UIDValidity || f.UIDNext != first.UIDNext || !reflect.DeepEqual(f.Messages, first.Messages) {
			t.Fatalf("%s differs from n0: UIDVALIDITY %d/%d UIDNEXT %d/%d\n%+v\n%+v", where, f.UIDValidity, first.UIDValidity,
				f.UIDNext, first.UIDNext, f.Messages, first.Messages)
		}
	}
	t.Logf("%d messages, UIDs %d..%d, UIDNEXT %d", len(first.Messages), first.Messages[0].UID, first.Messages[len(first.Messages)-1].UID, first.UIDNext)
}

// accountMailbox returns the mailbox path of the test account.
func accountMailbox(t *testing.T, n *Node) string {
	t.Helper()
	mb, dom, _ := strings.Cut(imapUser, "@")
	code, body := admin(t, n, "GET", "/api/v1/domains/"+dom+"/accounts/"+mb, "")
	var a struct {
		MailboxPath string `json:"mailboxPath"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.MailboxPath == "" {
		t.Fatalf("account %s: %d %s", imapUser, code, body)
	}
	return a.MailboxPath
}

var reSize = regexp.MustCompile(`,S=([0-9]+)`)

// checkMaildir fails on a message file in new/ or cur/ of dir that does
// not parse as a message or whose size is not the one its name carries;
// it returns the Subject of every file.
func checkMaildir(t *testing.T, dir string) []string {
	t.Helper()
	var subjects []string
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			path := filepath.Join(dir, sub, de.Name())
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m := reSize.FindStringSubmatch(de.Name())
			if m == nil || m[1] != strconv.Itoa(len(b)) {
				t.Errorf("%s/%s holds %d bytes", sub, de.Name(), len(b))
			}
			msg, err := mail.ReadMessage(bytes.NewReader(b))
			if err != nil {
				t.Errorf("%s/%s does not parse: %v", sub, de.Name(), err)
				continue
			}
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(msg.Body)
			if !strings.HasSuffix(body.String(), "end of message\r\n") {
				t.Errorf("%s/%s is cut: its body ends with %q", sub, de.Name(), body.String()[max(0, body.Len()-40):])
			}
			subjects = append(subjects, msg.Header.Get("Subject"))
		}
	}
	return subjects
}

// uidNextOnDisk reads UIDNEXT from a folder's UID map.
func uidNextOnDisk(t *testing.T, dir string) uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "mailcluster-uids"))
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(head)
	if len(f) != 4 {
		t.Fatalf("UID map header %q", head)
	}
	n, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		t.Fatalf("UID map header %q: %v", head, err)
	}
	return uint32(n)
}

// TestIMAPKillDuringAppends kills a node with SIGKILL while clients
// append to it: no message file in the Maildir is partial, every APPEND
// that got OK is there with its UID on every node, UIDs are strictly
// increasing, and after the restart UIDNEXT has not gone back and no UID
// is given again.
func TestIMAPKillDuringAppends(t *testing.T) {
	c, p := setupIMAPCluster(t, 3, nil)
	vi := c.Secondaries(p)[0]
	victim := c.Nodes[vi]
	other := c.Nodes[p]
	inbox := accountMailbox(t, other)

	const clients, perClient = 4, 300
	var mu sync.Mutex
	ok := map[string]uint32{} // subject -> UID of every APPEND that got OK
	cut := 0                  // APPENDs that got no answer
	var wg sync.WaitGroup
	for w := range clients {
		cl := imapSession(t, victim.IMAP)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				subject := fmt.Sprintf("kill-%d-%d", w, i)
				// Sizes from 1 KiB to about 200 KiB, so that the kill may
				// come in the middle of a write.
				body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 16*(1+(i*7+w)%200))
				msg := "From: Appender <a@remote.test>\r\nTo: " + imapUser + "\r\nSubject: " + subject + "\r\n\r\n" + body + "end of message\r\n"
				uid, err := imapAppend(cl, "INBOX", msg)
				if err != nil {
					mu.Lock()
					cut++
					mu.Unlock()
					return // the node is gone (or refused: then nothing is owed)
				}
				mu.Lock()
				ok[subject] = uint32(uid)
				mu.Unlock()
			}
		}()
	}
	eventually(t, 30*time.Second, "APPENDs answered before the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ok) >= 20
	})
	_ = victim.Signal(syscall.SIGKILL)
	victim.Wait()
	wg.Wait()
	mu.Lock()
	acked := len(ok)
	mu.Unlock()
	if cut == 0 {
		t.Fatal("every APPEND finished before the kill: nothing was tested")
	}
	nextAtKill := uidNextOnDisk(t, inbox)

	subjects := checkMaildir(t, inbox)
	for s := range ok {
		if !slices.Contains(subjects, s) {
			t.Errorf("APPEND of %s got OK (UID %d) but no file holds it", s, ok[s])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	c.Start(vi)
	var maxUID uint32
	var first imapFolder
	for i, n := range c.Nodes {
		f := readFolder(t, n.IMAP, "INBOX")
		where := fmt.Sprintf("INBOX through n%d after the restart", i)
		checkUIDsIncreasing(t, where, f)
		if f.UIDNext < nextAtKill {
			t.Fatalf("%s: UIDNEXT %d, it was %d at the kill", where, f.UIDNext, nextAtKill)
		}
		for s, uid := range ok {
			if m, found := f.bySubject(s); !found || m.UID != uid {
				t.Fatalf("%s: %s has %+v (found %v), APPEND said UID %d", where, s, m, found, uid)
			}
		}
		if i == 0 {
			first = f
		} else if !reflect.DeepEqual(f, first) {
			t.Fatalf("%s differs from n0:\n%+v\n%+v", where, f, first)
		}
		if n := len(f.Messages); n > 0 {
			maxUID = f.Messages[n-1].UID
		}
	}
	cl := imapSession(t, c.Nodes[vi].IMAP)
	uid, err := imapAppend(cl, "INBOX", "Subject: after the restart\r\n\r\nend of message\r\n")
	if err != nil {
		t.Fatalf("APPEND after the restart: %v", err)
	}
	if uint32(uid) < nextAtKill || uint32(uid) <= maxUID {
		t.Fatalf("APPEND after the restart got UID %d: UIDNEXT was %d at the kill, the highest UID is %d", uid, nextAtKill, maxUID)
	}
	checkMaildir(t, inbox)
	t.Logf("%d APPENDs got OK before SIGKILL and %d were cut by it; %d messages stored, UIDNEXT %d at the kill, next UID %d",
		acked, cut, len(first.Messages), nextAtKill, uid)
}

// TestIMAPWithoutPrimary stops the primary while the other two nodes may
// not become primary: a secondary keeps serving IMAP (login, SELECT,
// FETCH, APPEND), and once the primary is back the usage counts the
// APPEND.
func TestIMAPWithoutPrimary(t *testing.T) {
	never := []string{"--never-primary"}
	c, p := setupIMAPCluster(t, 3, map[int][]string{1: never, 2: never})
	if p != 0 {
		t.Fatalf("primary is n%d", p)
	}
	if err := sendGo(c.Nodes[1].SMTP, imapUser, "before", "Delivered while the primary was up."); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, "usage 1 on every node", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, imapUser).Messages != 1 {
				return false
			}
		}
		return true
	})
	c.Nodes[0].Stop()
	awaitNoPrimarySeen(t, c.Nodes[1], "n1")

	cl := imapSession(t, c.Nodes[1].IMAP)
	if sel, err := cl.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT without a primary: %v %+v", err, sel)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].BodySection) != 1 || !bytes.Contains(msgs[0].BodySection[0].Bytes, []byte("Delivered while the primary was up.")) {
		t.Fatalf("FETCH without a primary: %v %+v", err, msgs)
	}
	appended := "From: Offline <o@remote.test>\r\nTo: " + imapUser + "\r\nSubject: without primary\r\n\r\nAppended while no node was primary.\r\n"
	uid, err := imapAppend(cl, "INBOX", appended)
	if err != nil {
		t.Fatalf("APPEND without a primary: %v", err)
	}
	if f := readFolder(t, c.Nodes[2].IMAP, "INBOX"); len(f.Messages) != 2 || f.Messages[1].UID != uint32(uid) {
		t.Fatalf("INBOX through n2 without a primary: %+v (APPEND gave UID %d)", f.Messages, uid)
	}
	if u := getUsage(t, c.Nodes[1], imapUser); u.Messages != 1 {
		t.Fatalf("usage published without a primary: %+v", u)
	}
	cl.Close()

	c.Start(0)
	want := usage{Bytes: msgs[0].RFC822Size + int64(len(appended)), Messages: 2}
	eventually(t, 10*time.Second, "usage counts the APPEND on every node once the primary is back", func() bool {
		for _, n := range c.Nodes {
			if getUsage(t, n, imapUser) != want {
				return false
			}
		}
		return true
	})
}
