package imapsvc_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"mailcluster"
	"mailcluster/imapsvc"
	"mailcluster/mailstore"
)

// wantNo asserts an IMAP NO answer with a response code.
func wantNo(t *testing.T, err error, code imap.ResponseCode) {
	t.Helper()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != code {
		t.Fatalf("answer %v, want NO [%s]", err, code)
	}
}

// greeting reads the first line a new connection gets.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestLoginNeedsTLS: without TLS, LOGIN and AUTHENTICATE are refused (and
// announced so) and nothing reaches screening; after STARTTLS or on the
// implicit-TLS listener both work; the loopback setting allows plain text
// from 127.0.0.1.
func TestLoginNeedsTLS(t *testing.T) {
	e := mustOpenEnv(t)
	plain, err := imapclient.DialInsecure(e.node.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	caps, err := plain.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapStartTLS) || caps.Has(imap.AuthCap("PLAIN")) {
		t.Fatalf("capabilities before TLS: %v, want LOGINDISABLED and STARTTLS, no AUTH=PLAIN", caps)
	}
	wantNo(t, plain.Login("alice@example.com", alicePass).Wait(), imap.ResponseCodePrivacyRequired)
	wantNo(t, plain.Authenticate(sasl.NewPlainClient("", "alice@example.com", alicePass)), imap.ResponseCodePrivacyRequired)
	if fs := e.failures.all(); len(fs) != 0 {
		t.Fatalf("refused plain-text logins reached screening: %+v", fs)
	}

	t.Run("STARTTLS", func(t *testing.T) {
		c := e.dial(e.node.imap, nil)
		if err := c.Login("alice@example.com", alicePass).Wait(); err != nil {
			t.Fatal(err)
		}
		caps := c.Caps()
		for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapIdle, imap.CapUIDPlus, imap.CapMove, imap.CapNamespace,
			imap.CapSpecialUse, imap.CapListStatus, imap.CapUnselect, imap.CapEnable, "APPENDLIMIT=26214400"} {
			if !caps.Has(want) {
				t.Errorf("capability %s missing after login: %v", want, caps)
			}
		}
	})
	t.Run("AuthenticatePlain", func(t *testing.T) {
		c := e.dial(e.node.imap, nil)
		if err := c.Authenticate(sasl.NewPlainClient("", "alice@example.com", alicePass)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ImplicitTLS", func(t *testing.T) {
		c, err := imapclient.DialTLS(e.node.imaps, &imapclient.Options{TLSConfig: e.client})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("alice@example.com", alicePass).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PlaintextLoopback", func(t *testing.T) {
		e.setSetting(imapsvc.SectionIMAP, imapsvc.KeyAllowPlaintextLoopback, "Yes")
		c, err := imapclient.DialInsecure(e.node.imap, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("alice@example.com", alicePass).Wait(); err != nil {
			t.Fatalf("plain-text login from loopback with the setting: %v", err)
		}
	})
}

// TestLoginScreening: every failed login goes through screening (counted
// with the client address), frozen and disabled accounts cannot log in,
// and once screening blocks the address new connections are refused at
// connect.
func TestLoginScreening(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.dial(e.node.imap, nil)
	for _, tc := range []struct{ user, pass string }{
		{"ice@example.com", "ice-pass-123"},
		{"off@example.com", "off-pass-123"},
	} {
		wantNo(t, c.Login(tc.user, tc.pass).Wait(), imap.ResponseCodeAuthenticationFailed)
	}
	for i := range 5 {
		c := e.dial(e.node.imap, nil)
		wantNo(t, c.Login("alice@example.com", fmt.Sprintf("wrong-%d", i)).Wait(), imap.ResponseCodeAuthenticationFailed)
	}
	fs := e.failures.all()
	var mine []mailcluster.LoginFailure
	for _, f := range fs {
		if f.IP != "127.0.0.1" {
			t.Fatalf("failure recorded without the client address: %+v", f)
		}
		if f.Address == "alice@example.com" {
			mine = append(mine, f)
		}
	}
	if len(mine) != 5 {
		t.Fatalf("screening counted %d failures for alice, want 5: %+v", len(mine), fs)
	}
	if err := e.svc.ReportFailures(sysCtx, fs); err != nil {
		t.Fatal(err)
	}
	if _, blocked := e.local.BlockedIP("127.0.0.1"); !blocked {
		t.Fatal("127.0.0.1 is not blocked after the failures were reported")
	}
	if g := greeting(t, e.node.imap); !strings.HasPrefix(g, "* BYE ") || !strings.Contains(g, "blocked") {
		t.Fatalf("greeting of a blocked address: %q", g)
	}
	// On the implicit-TLS listener the connection is closed before TLS.
	if _, err := tls.Dial("tcp", e.node.imaps, e.client); err == nil {
		t.Fatal("TLS handshake with a blocked address succeeded")
	}
}

// TestFolders: the default folders with their special use, and the
// folder commands.
func TestFolders(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	list := func(opts *imap.ListOptions) string {
		t.Helper()
		l, err := c.List("", "*", opts).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range l {
			var attrs []string
			for _, a := range d.Attrs {
				if a != imap.MailboxAttrHasNoChildren {
					attrs = append(attrs, string(a))
				}
			}
			out = append(out, strings.TrimSpace(d.Mailbox+" "+strings.Join(attrs, " ")))
		}
		return strings.Join(out, ", ")
	}
	if got, want := list(nil), `INBOX, Drafts \Drafts, Junk \Junk, Sent \Sent, Trash \Trash`; got != want {
		t.Fatalf("LIST after the first login: %s, want %s", got, want)
	}
	if got, want := list(&imap.ListOptions{SelectSpecialUse: true}), `Drafts \Drafts, Junk \Junk, Sent \Sent, Trash \Trash`; got != want {
		t.Fatalf("LIST (SPECIAL-USE): %s, want %s", got, want)
	}
	for _, n := range []string{"Projects", "Projects.2024", "Entwürfe"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	wantNo(t, c.Create("Projects", nil).Wait(), imap.ResponseCodeAlreadyExists)
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Work.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := list(nil), `INBOX, Drafts \Drafts, Entwürfe, Junk \Junk, Sent \Sent, Trash \Trash, Work \HasChildren, Work.2024`; got != want {
		t.Fatalf("LIST after create and rename: %s, want %s", got, want)
	}
	if got, want := list(&imap.ListOptions{SelectSubscribed: true}), `INBOX \Subscribed, Drafts \Subscribed \Drafts, Junk \Subscribed \Junk, Sent \Subscribed \Sent, Trash \Subscribed \Trash, Work.2024 \Subscribed`; got != want {
		t.Fatalf("LIST (SUBSCRIBED): %s, want %s", got, want)
	}
	if err := c.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := list(nil), `INBOX, Drafts \Drafts, Entwürfe, Junk \Junk, Sent \Sent, Trash \Trash, Work \Noselect \HasChildren, Work.2024`; got != want {
		t.Fatalf("LIST after deleting a parent: %s, want %s", got, want)
	}
	wantNo(t, c.Delete("INBOX").Wait(), imap.ResponseCodeCannot)
	wantNo(t, c.Delete("Nothing").Wait(), imap.ResponseCodeNonExistent)
	_, err := c.Select("Nothing", nil).Wait()
	wantNo(t, err, imap.ResponseCodeNonExistent)
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '.' {
		t.Fatalf("NAMESPACE: %+v %v", ns, err)
	}
	appendMsg(t, c, "Entwürfe", message("draft", "text"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}})
	st, err := c.Status("Entwürfe", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 1 || st.UIDNext != 2 || st.UIDValidity == 0 || *st.NumUnseen != 1 || *st.Size != int64(len(message("draft", "text"))) {
		t.Fatalf("STATUS: %+v %v", st, err)
	}
	// LIST-STATUS
	l, err := c.List("", "Entw%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil || len(l) != 1 || l[0].Status == nil || *l[0].Status.NumMessages != 1 {
		t.Fatalf("LIST RETURN (STATUS): %+v %v", l, err)
	}
}

// TestAppendFetch: an appended message is stored with its flags and date,
// answered with APPENDUID, and read back through FETCH.
func TestAppendFetch(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	msg := "From: Carol <carol@remote.test>\r\nTo: Alice <alice@example.com>\r\nSubject: Hello there\r\n" +
		"Date: Mon, 02 Jan 2023 15:04:05 +0000\r\nMessage-ID: <hello@remote.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n" +
		"--b1\r\nContent-Type: text/html\r\n\r\n<p>second</p>\r\n--b1--\r\n"
	date := time.Date(2023, 1, 2, 16, 0, 0, 0, time.UTC)
	uid := appendMsg(t, c, "INBOX", msg, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, "$Custom"}, Time: date})
	if uid != 1 {
		t.Fatalf("APPENDUID %d, want 1", uid)
	}
	if files := e.folderFiles("alice@example.com", "INBOX"); len(files) != 1 || !strings.HasPrefix(files[0], "cur/") || !strings.HasSuffix(files[0], ":2,S") {
		t.Fatalf("files after APPEND: %v, want one in cur/ ending :2,S", files)
	}
	e.waitUsage("alice", int64(len(msg)), 1)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 || sel.UIDNext != 2 || !slices.Contains(sel.PermanentFlags, imap.FlagSeen) {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	part2 := &imap.FetchItemBodySection{Part: []int{2}, Peek: true}
	whole := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{header, part2, whole}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	m := msgs[0]
	if m.UID != uid || fmt.Sprint(m.Flags) != `[\Seen]` || m.RFC822Size != int64(len(msg)) || !m.InternalDate.Equal(date) {
		t.Fatalf("FETCH uid %d flags %v size %d date %v", m.UID, m.Flags, m.RFC822Size, m.InternalDate)
	}
	if m.Envelope == nil || m.Envelope.Subject != "Hello there" || len(m.Envelope.From) != 1 || m.Envelope.From[0].Addr() != "carol@remote.test" ||
		m.Envelope.MessageID != "hello@remote.test" {
		t.Fatalf("ENVELOPE %+v", m.Envelope)
	}
	if bs, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || bs.Subtype != "mixed" || len(bs.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", m.BodyStructure)
	}
	if got := string(m.FindBodySection(header)); got != "Subject: Hello there\r\n\r\n" {
		t.Fatalf("BODY[HEADER.FIELDS (SUBJECT)] = %q", got)
	}
	if got := string(m.FindBodySection(part2)); got != "<p>second</p>" {
		t.Fatalf("BODY[2] = %q", got)
	}
	if got := string(m.FindBodySection(whole)); got != msg {
		t.Fatalf("BODY[] = %q", got)
	}
	wantNo(t, appendErr(c, "Nothing", "x"), imap.ResponseCodeTryCreate)
}

func appendErr(c *imapclient.Client, folder, msg string) error {
	cmd := c.Append(folder, int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	_, err := cmd.Wait()
	return err
}

// TestStoreFlags: STORE and reading a body change the flags in the file
// name, as other Maildir tools see them; another session is told.
func TestStoreFlags(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	appendMsg(t, c, "INBOX", message("one", "body"), nil)
	var mu sync.Mutex
	var seen []string
	other := e.login(&imapclient.UnilateralDataHandler{Fetch: func(m *imapclient.FetchMessageData) {
		buf, _ := m.Collect()
		mu.Lock()
		seen = append(seen, fmt.Sprint(buf.Flags))
		mu.Unlock()
	}})
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fileFlags := func() string {
		files := e.folderFiles("alice@example.com", "INBOX")
		if len(files) != 1 {
			t.Fatalf("files: %v", files)
		}
		_, info, _ := strings.Cut(files[0], ":2,")
		return info
	}
	for _, tc := range []struct {
		op    imap.StoreFlagsOp
		flags []imap.Flag
		want  string
		imap  string
	}{
		{imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged, imap.FlagAnswered}, "FR", `[\Flagged \Answered]`},
		{imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted, imap.FlagDraft}, "DFRT", `[\Draft \Flagged \Answered \Deleted]`},
		{imap.StoreFlagsDel, []imap.Flag{imap.FlagDeleted, imap.FlagDraft}, "FR", `[\Flagged \Answered]`},
		{imap.StoreFlagsSet, []imap.Flag{imap.FlagForwarded}, "P", `[$Forwarded]`},
	} {
		got, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: tc.op, Flags: tc.flags}, nil).Collect()
		if err != nil || len(got) != 1 || fmt.Sprint(got[0].Flags) != tc.imap {
			t.Fatalf("STORE %v %v: %+v %v, want %s", tc.op, tc.flags, got, err, tc.imap)
		}
		if f := fileFlags(); f != tc.want {
			t.Fatalf("file name flags %q, want %q", f, tc.want)
		}
	}
	// Reading the body without PEEK sets \Seen, and says so.
	got, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(got) != 1 || fmt.Sprint(got[0].Flags) != `[$Forwarded \Seen]` {
		t.Fatalf("FETCH BODY[]: %+v %v", got, err)
	}
	if f := fileFlags(); f != "PS" {
		t.Fatalf("file name flags after reading: %q", f)
	}
	if err := other.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// imapclient hands unilateral FETCH responses to the handler in a
	// goroutine of its own.
	waitFor(t, "the other session to see the flags", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, `[$Forwarded \Seen]`)
	})
}

// TestSearch covers flags, header fields, text, dates, sizes and UIDs.
func TestSearch(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	day := func(d int) time.Time { return time.Date(2024, 3, d, 12, 0, 0, 0, time.UTC) }
	appendMsg(t, c, "INBOX", message("apple pie", "a recipe"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: day(1)})
	appendMsg(t, c, "INBOX", message("banana", "yellow fruit "+strings.Repeat("x", 2000)), &imap.AppendOptions{Time: day(5)})
	appendMsg(t, c, "INBOX", strings.Replace(message("cherry", "red fruit"), "carol@remote.test", "dave@other.test", 1),
		&imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: day(9)})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want string
	}{
		{"Seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, "[1]"},
		{"Unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, "[2 3]"},
		{"Flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, "[3]"},
		{"Subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "BANANA"}}}, "[2]"},
		{"From", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "dave@"}}}, "[3]"},
		{"Body", imap.SearchCriteria{Body: []string{"fruit"}}, "[2 3]"},
		{"Text", imap.SearchCriteria{Text: []string{"apple"}}, "[1]"},
		{"Since", imap.SearchCriteria{Since: day(5)}, "[2 3]"},
		{"Before", imap.SearchCriteria{Before: day(5)}, "[1]"},
		{"SentBefore", imap.SearchCriteria{SentBefore: day(1)}, "[1 2 3]"},
		{"Larger", imap.SearchCriteria{Larger: 1000}, "[2]"},
		{"Smaller", imap.SearchCriteria{Smaller: 1000}, "[1 3]"},
		{"UID", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2, 3)}}, "[2 3]"},
		{"Seq", imap.SearchCriteria{SeqNum: []imap.SeqSet{{imap.SeqRange{Start: 2, Stop: 0}}}}, "[2 3]"},
		{"Not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"fruit"}}}}, "[1]"},
		{"Or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagSeen}}, {Flag: []imap.Flag{imap.FlagFlagged}}}}}, "[1 3]"},
		{"None", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "durian"}}}, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crit := tc.c
			data, err := c.Search(&crit, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(data.AllSeqNums()); got != tc.want {
				t.Fatalf("SEARCH: %s, want %s", got, tc.want)
			}
			crit = tc.c
			udata, err := c.UIDSearch(&crit, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(udata.AllUIDs()); got != tc.want { // UIDs are 1, 2, 3 here
				t.Fatalf("UID SEARCH: %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCopyMoveExpunge: COPY and MOVE answer with COPYUID; MOVE and
// EXPUNGE remove the messages from the source with EXPUNGE responses.
func TestCopyMoveExpunge(t *testing.T) {
	e := mustOpenEnv(t)
	var mu sync.Mutex
	var expunged []uint32
	c := e.login(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) {
		mu.Lock()
		expunged = append(expunged, seq)
		mu.Unlock()
	}})
	for i := range 4 {
		appendMsg(t, c, "INBOX", message(fmt.Sprintf("m%d", i), "body"), nil)
	}
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	size := int64(len(message("m0", "body")))
	e.waitUsage("alice", 4*size, 4)
	cp, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || fmt.Sprint(cp.SourceUIDs) != "1:2" || fmt.Sprint(cp.DestUIDs) != "1:2" || cp.UIDValidity == 0 {
		t.Fatalf("COPY: %+v %v", cp, err)
	}
	e.waitUsage("alice", 6*size, 6)
	_, err = c.Copy(imap.SeqSetNum(1), "Nothing").Wait()
	wantNo(t, err, imap.ResponseCodeTryCreate)
	mv, err := c.Move(imap.SeqSetNum(3), "Trash").Wait()
	if err != nil || fmt.Sprint(mv.SourceUIDs) != "3" || fmt.Sprint(mv.DestUIDs) != "1" {
		t.Fatalf("MOVE: %+v %v", mv, err)
	}
	mu.Lock()
	if fmt.Sprint(expunged) != "[3]" {
		t.Fatalf("EXPUNGE responses after MOVE: %v", expunged)
	}
	mu.Unlock()
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	gone, err := c.Expunge().Collect()
	if err != nil || fmt.Sprint(gone) != "[1]" {
		t.Fatalf("EXPUNGE: %v %v", gone, err)
	}
	left, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil || fmt.Sprint(left.AllUIDs()) != "[2 4]" {
		t.Fatalf("INBOX after MOVE and EXPUNGE: %v %v", left, err)
	}
	if files := e.folderFiles("alice@example.com", "Trash"); len(files) != 1 {
		t.Fatalf("Trash holds %v", files)
	}
	if files := e.folderFiles("alice@example.com", "INBOX"); len(files) != 2 {
		t.Fatalf("INBOX holds %v", files)
	}
	// UID EXPUNGE removes only the UIDs named.
	if _, err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if gone, err := c.UIDExpunge(imap.UIDSetNum(4)).Collect(); err != nil || fmt.Sprint(gone) != "[2]" {
		t.Fatalf("UID EXPUNGE 4: %v %v", gone, err)
	}
	// A new message gets a UID never used in the folder.
	if uid := appendMsg(t, c, "INBOX", message("new", "body"), nil); uid != 5 {
		t.Fatalf("UID after expunges: %d, want 5", uid)
	}
}

// TestQuota: an APPEND over the account's quota or over the size limit is
// refused and changes nothing.
func TestQuota(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.loginTo(e.node, "small@example.com", "small-pass-1", nil)
	big := message("big", strings.Repeat("y", 3000))
	wantNo(t, appendErr(c, "INBOX", big), imap.ResponseCodeOverQuota)
	appendMsg(t, c, "INBOX", message("fits", strings.Repeat("z", 1000)), nil)
	wantNo(t, appendErr(c, "Sent", message("second", strings.Repeat("z", 1000))), imap.ResponseCodeOverQuota)
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, AppendLimit: true}).Wait()
	if err != nil || *st.NumMessages != 1 {
		t.Fatalf("STATUS after refused APPENDs: %+v %v", st, err)
	}
	e.waitUsage("small", int64(len(message("fits", strings.Repeat("z", 1000)))), 1)
	if files := e.folderFiles("small@example.com", "Sent"); len(files) != 0 {
		t.Fatalf("Sent holds %v after the refused APPEND", files)
	}
	e.setSetting(mailstore.SectionSMTP, mailstore.KeyMaxMessageSize, "500")
	c2 := e.login(nil)
	if !c2.Caps().Has("APPENDLIMIT=500") {
		t.Fatalf("capabilities %v, want APPENDLIMIT=500", c2.Caps())
	}
	wantNo(t, appendErr(c2, "INBOX", message("large", strings.Repeat("w", 600))), imap.ResponseCodeTooBig)
	if files := e.folderFiles("alice@example.com", "INBOX"); len(files) != 0 {
		t.Fatalf("INBOX holds %v after the refused APPEND", files)
	}
}

// TestUIDsAcrossNodes: two nodes serve one shared path; clients of both
// append at once and mail is delivered meanwhile: every message has one
// UID, the same on both nodes and after a restart, and no UID is used
// twice.
func TestUIDsAcrossNodes(t *testing.T) {
	e := mustOpenEnv(t)
	second := e.startNode()
	nodes := []*node{e.node, second}
	const per = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[imap.UID]bool{}
	for i, n := range nodes {
		c := e.loginTo(n, "alice@example.com", alicePass, nil)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range per {
				msg := message(fmt.Sprintf("n%d-%d", i, j), "body")
				cmd := c.Append("INBOX", int64(len(msg)), nil)
				cmd.Write([]byte(msg))
				cmd.Close()
				data, err := cmd.Wait()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if got[data.UID] {
					t.Errorf("UID %d given twice", data.UID)
				}
				got[data.UID] = true
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			for j := range per / 2 {
				if err := smtp.SendMail(e.smtp, nil, "x@remote.test", []string{"alice@example.com"}, []byte(message(fmt.Sprintf("smtp%d-%d", i, j), "b"))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	uidsOn := func(n *node) (uint32, string) {
		t.Helper()
		c := e.loginTo(n, "alice@example.com", alicePass, nil)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, fmt.Sprintf("%d=%s", m.UID, m.Envelope.Subject))
		}
		sort.Strings(out)
		c.Logout().Wait()
		return sel.UIDValidity, strings.Join(out, " ")
	}
	v1, a := uidsOn(e.node)
	v2, b := uidsOn(second)
	if v1 != v2 || a != b || len(strings.Fields(a)) != 2*per+per {
		t.Fatalf("node 1 (validity %d): %s\nnode 2 (validity %d): %s\nwant the same %d messages", v1, a, v2, b, 3*per)
	}
	seen := map[string]bool{}
	for _, f := range strings.Fields(a) {
		uid, _, _ := strings.Cut(f, "=")
		if seen[uid] {
			t.Fatalf("UID %s twice: %s", uid, a)
		}
		seen[uid] = true
	}
	// A restarted node (a new store and server) sees the same.
	second.srv.Close()
	restarted := e.startNode()
	if v3, c := uidsOn(restarted); v3 != v1 || c != a {
		t.Fatalf("after a restart (validity %d): %s, want %s", v3, c, a)
	}
}

// TestIdle: a session idling in INBOX sees a message delivered by SMTP
// (EXISTS), a flag change and an expunge by another session (FETCH,
// EXPUNGE), and a message another process put into the folder without
// telling this node (seen by the rescan).
func TestIdle(t *testing.T) {
	e := mustOpenEnv(t)
	var mu sync.Mutex
	var exists []uint32
	var expunges []uint32
	var flags []string
	c := e.login(&imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = append(exists, *d.NumMessages)
				mu.Unlock()
			}
		},
		Expunge: func(seq uint32) {
			mu.Lock()
			expunges = append(expunges, seq)
			mu.Unlock()
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			mu.Lock()
			flags = append(flags, fmt.Sprintf("%d %v", buf.SeqNum, buf.Flags))
			mu.Unlock()
		},
	})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	lastExists := func() uint32 {
		mu.Lock()
		defer mu.Unlock()
		if len(exists) == 0 {
			return 0
		}
		return exists[len(exists)-1]
	}
	if err := smtp.SendMail(e.smtp, nil, "x@remote.test", []string{"alice@example.com"}, []byte(message("delivered", "b"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EXISTS 1 after the SMTP delivery", func() bool { return lastExists() == 1 })

	other := e.login(nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, other, "INBOX", message("appended", "b"), nil)
	waitFor(t, "EXISTS 2 after another session's APPEND", func() bool { return lastExists() == 2 })
	if _, err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FETCH FLAGS after another session's STORE", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(flags, `1 [\Flagged]`)
	})
	if _, err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EXPUNGE after another session's EXPUNGE", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(expunges, 1)
	})
	// Another process (a node whose change reaches no Hub here) adds a
	// message: the idle session's rescan finds it.
	other.Logout().Wait()
	mu.Lock()
	before := len(exists)
	mu.Unlock()
	far := mailstore.NewStore(e.local, e.outbox, e.log, mailstore.Options{})
	if err := far.Deliver(sysCtx, []*mailcluster.Account{e.account("alice@example.com")}, nil, strings.NewReader(message("far", "b")), 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EXISTS 2 after a delivery elsewhere", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(exists) > before && exists[len(exists)-1] == 2
	})
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}
