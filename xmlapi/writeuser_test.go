package xmlapi

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// This file checks that answers written by xmlWriter (writeUser and
// writeResponse) are byte for byte the answers of the code they replaced:
// the User element and the envelope built as etree elements (addUser and
// referenceResponse below, kept as they were) and written with etree's
// Indent(2) and WriteTo (indentedByEtree) and with writeAnswer.

// addUser appends <User id=".." displayname=".." domain=".."> with the
// sections asked for, as an etree element: the way User answers were
// built before writeUser, kept as its reference.
func addUser(parent *etree.Element, uv user, id string, s sections) {
	a := uv.Account
	u := parent.CreateElement("User")
	u.CreateAttr("id", id)
	u.CreateAttr("displayname", displayName(a))
	u.CreateAttr("domain", a.Domain)
	if s.details {
		d := u.CreateElement("Details")
		addText(d, "Email", a.Mailbox+"@"+a.Domain)
		addText(d, "FullName", a.FullName)
		addText(d, "DisplayName", displayName(a))
		addText(d, "FirstName", a.FirstName)
		addText(d, "LastName", a.LastName)
		d.CreateElement("Password").CreateAttr("note", "unavailable")
		addText(d, "MustChangePassword", "No")
		addText(d, "DontExpirePassword", "Yes")
		addText(d, "MailDir", a.MailboxPath)
		addText(d, "Frozen", mailcluster.FormatFlag(a.Frozen))
		addText(d, "Disabled", mailcluster.FormatFlag(a.Disabled))
		addText(d, "AdminRights", formatAdminRights(a.AdminRights))
		sa := d.CreateElement("SendAs")
		for _, addr := range a.SendAs {
			addText(sa, "Address", addr)
		}
		q := d.CreateElement("Quotas")
		addText(q, "MaxDiskSpaceMB", strconv.FormatInt(ceilDiv(a.QuotaBytes, mib), 10))
		addText(q, "MaxDiskSpaceBytes", strconv.FormatInt(a.QuotaBytes, 10))
		addText(q, "MaxMessageCount", strconv.FormatInt(a.QuotaMessages, 10))
		addText(d, "Created", formatTime(a.CreatedAt))
		addText(d, "Updated", formatTime(a.UpdatedAt))
	}
	if s.quotas {
		q := u.CreateElement("Quotas")
		addText(q, "ApplyQuotas", mailcluster.FormatFlag(a.QuotaBytes != 0 || a.QuotaMessages != 0))
		addText(q, "MaxDiskSpace", strconv.FormatInt(ceilDiv(a.QuotaBytes, mib), 10))
		addText(q, "MaxDiskSpaceMB", strconv.FormatInt(ceilDiv(a.QuotaBytes, mib), 10))
		addText(q, "MaxDiskSpaceBytes", strconv.FormatInt(a.QuotaBytes, 10))
		addText(q, "MaxMessageCount", strconv.FormatInt(a.QuotaMessages, 10))
	}
	if s.roles {
		r := u.CreateElement("Roles")
		addText(r, "IsGlobalAdmin", mailcluster.FormatFlag(a.AdminRights == mailcluster.AdminGlobal))
		addText(r, "IsDomainAdmin", mailcluster.FormatFlag(a.AdminRights == mailcluster.AdminDomain)).CreateAttr("domain", a.Domain)
	}
	if s.aliases {
		e := u.CreateElement("Aliases")
		for _, al := range uv.aliases {
			addText(e, "Alias", al.Address())
		}
	}
	if s.lists {
		e := u.CreateElement("ListMembership")
		for _, l := range uv.lists {
			addText(e, "List", l.Address())
		}
	}
	if s.groups {
		e := u.CreateElement("GroupMembership")
		for _, g := range uv.groups {
			addText(e, "Group", g.Name)
		}
	}
}

// referenceResponse is the envelope as respond built it before
// writeResponse, with result attached on success.
func referenceResponse(req *request, out outcome, result *etree.Element, et time.Duration) *etree.Element {
	root := etree.NewElement("MDaemon")
	api := root.CreateElement("API")
	api.CreateAttr("productversion", mailcluster.Version)
	api.CreateAttr("serviceversion", mailcluster.Version)
	api.CreateAttr("version", mailcluster.Version)
	version := APIVersion
	if req != nil {
		if req.echo {
			api.AddChild(redact(req.el.Copy()))
		}
		if req.version != "" {
			version = req.version
		}
	}
	resp := api.CreateElement("Response")
	resp.CreateAttr("version", version)
	st := etree.NewElement("Status")
	st.CreateAttr("id", strconv.Itoa(out.ID))
	st.CreateAttr("value", out.value())
	st.CreateAttr("message", out.message)
	if out.primary != "" {
		st.CreateAttr("primary", out.primary)
	}
	resp.AddChild(st)
	resp.CreateElement("ServiceVersion").SetText(mailcluster.Version)
	if out.ID == StatusOK && result != nil {
		resp.AddChild(result)
	}
	resp.CreateAttr("et", strconv.FormatFloat(et.Seconds(), 'f', 6, 64))
	return root
}

// answerCase is one answer: its request, outcome, et and what <Result>
// holds (a User, or an element built with etree).
type answerCase struct {
	req    *request
	out    outcome
	et     time.Duration
	u      user
	id     string
	s      sections
	tree   *etree.Element // instead of the User when set
	noUser bool           // no User and no tree: an empty result
}

// checkAnswerCase fails unless writeResponse writes c as the reference
// envelope is written by etree's Indent(2) and by writeAnswer.
func checkAnswerCase(t testing.TB, c answerCase) {
	t.Helper()
	var res result
	ref := etree.NewElement("Result")
	switch {
	case c.tree != nil:
		res.tree().AddChild(c.tree.Copy())
		ref.AddChild(c.tree.Copy())
	case !c.noUser:
		res.user, res.userID, res.userSections = c.u, c.id, c.s
		addUser(ref, c.u, c.id, c.s)
	}
	var got bytes.Buffer
	writeResponse(&got, c.req, c.out, &res, c.et)
	root := referenceResponse(c.req, c.out, ref, c.et)
	if want := indentedByEtree(t, root); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("writeResponse differs from etree's Indent(2) of the reference:\n got %q\nwant %q", got.Bytes(), want)
	}
	var old bytes.Buffer
	writeAnswer(&old, root)
	if !bytes.Equal(got.Bytes(), old.Bytes()) {
		t.Fatalf("writeResponse differs from writeAnswer of the reference:\n got %q\nwant %q", got.Bytes(), old.Bytes())
	}
}

// randomPieces are the parts random strings are made of: characters that
// must be escaped, control characters, white space, invalid UTF-8 (lone
// bytes, truncated and overlong sequences, surrogates), non-characters,
// U+FFFD itself, and plain text.
var randomPieces = []string{
	"a", "Z", "0", "-", ".", "@", " ", "  ", "\t", "\n", "\r", "\r\n",
	"<", ">", "&", `"`, "'", "]]>", "&amp;", "<!--", "-->", "<?x?>",
	"\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x7f", "\u0085", "\u2028",
	"\xff", "\xfe", "\x80", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc0\xaf", "\xed\xa0\x80",
	"\ufffd", "\xef\xbf\xbd", "\ufffe", "\uffff", "\U0010ffff", "ü", "☃", "😀", "é",
	"alice", "example.com", "Jean-Luc", "/var/mail/",
}

// randomString returns "" sometimes, white space only sometimes, else up
// to 12 random pieces.
func randomString(r *rand.Rand) string {
	switch r.IntN(10) {
	case 0:
		return ""
	case 1:
		return strings.Repeat(" \t\n"[r.IntN(3):][:1], 1+r.IntN(3))
	}
	var b strings.Builder
	for n := 1 + r.IntN(12); n > 0; n-- {
		b.WriteString(randomPieces[r.IntN(len(randomPieces))])
	}
	return b.String()
}

// randomInt64 returns quotas of every kind: 0, small, exact and inexact
// multiples of a MiB, negative, and the extremes.
func randomInt64(r *rand.Rand) int64 {
	switch r.IntN(8) {
	case 0:
		return 0
	case 1:
		return r.Int64N(1000)
	case 2:
		return r.Int64N(1<<20) * mib
	case 3:
		return r.Int64N(1<<20)*mib + 1 + r.Int64N(mib-1)
	case 4:
		return -r.Int64N(1 << 40)
	case 5:
		return []int64{math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, mib - 1, mib + 1, -mib}[r.IntN(7)]
	}
	return r.Int64()
}

// randomTime returns the zero time, times in UTC and in other zones, and
// years beyond 9999.
func randomTime(r *rand.Rand) time.Time {
	switch r.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(10000+r.IntN(100000), 1, 2, 3, 4, 5, 6, time.UTC)
	case 2:
		return time.Unix(r.Int64N(1<<32), r.Int64N(1e9)).In(time.FixedZone("X", (r.IntN(49)-24)*1800))
	}
	return time.Unix(r.Int64N(1<<34), 0).UTC()
}

// randomDuration returns the time a request took: 0, short, long, and
// the extremes.
func randomDuration(r *rand.Rand) time.Duration {
	switch r.IntN(4) {
	case 0:
		return []time.Duration{0, 1, -1, 999, 500, 1500, math.MaxInt64, math.MinInt64}[r.IntN(8)]
	case 1:
		return time.Duration(r.Int64())
	}
	return time.Duration(r.Int64N(int64(time.Second)))
}

// randomUser returns a random account with random memberships.
func randomUser(r *rand.Rand) user {
	rights := []mailcluster.AdminRights{mailcluster.AdminNone, mailcluster.AdminDomain, mailcluster.AdminGlobal, "", "other"}
	a := &mailcluster.Account{Domain: randomString(r), Mailbox: randomString(r), FullName: randomString(r),
		FirstName: randomString(r), LastName: randomString(r), PasswordHash: "$2a$10$secret", MailboxPath: randomString(r),
		Frozen: r.IntN(2) == 0, Disabled: r.IntN(2) == 0, QuotaBytes: randomInt64(r), QuotaMessages: randomInt64(r),
		AdminRights: rights[r.IntN(len(rights))], CreatedAt: randomTime(r), UpdatedAt: randomTime(r)}
	if r.IntN(4) == 0 {
		a.FullName = "" // the display name from the first and last names
	}
	switch r.IntN(3) {
	case 0: // nil
	case 1:
		a.SendAs = []string{}
	default:
		for n := 1 + r.IntN(4); n > 0; n-- {
			a.SendAs = append(a.SendAs, randomString(r))
		}
	}
	u := user{Account: a}
	for n := r.IntN(4); n > 0; n-- {
		u.aliases = append(u.aliases, &mailcluster.Alias{Domain: randomString(r), Name: randomString(r)})
	}
	for n := r.IntN(4); n > 0; n-- {
		u.lists = append(u.lists, &mailcluster.MailingList{Domain: randomString(r), Name: randomString(r)})
	}
	for n := r.IntN(4); n > 0; n-- {
		u.groups = append(u.groups, &mailcluster.Group{Domain: randomString(r), Name: randomString(r)})
	}
	return u
}

// sectionsOf returns the sections the six low bits of n ask for.
func sectionsOf(n uint) sections {
	return sections{n&1 != 0, n&2 != 0, n&4 != 0, n&8 != 0, n&16 != 0, n&32 != 0}
}

// randomRequest returns nil (refused before the operation ran) or a
// decoded request, echoed or not, with or without a version.
func randomRequest(t testing.TB, r *rand.Rand) *request {
	if r.IntN(4) == 0 {
		return nil
	}
	body := echoedRequests[r.IntN(len(echoedRequests))]
	doc := etree.NewDocument()
	doc.ReadSettings.PreserveCData = r.IntN(2) == 0
	if err := doc.ReadFromString(body); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	req := &request{el: doc.FindElement("//Request"), op: "GetUserInfo", echo: r.IntN(3) == 0}
	if r.IntN(2) == 0 {
		req.version = randomString(r)
	}
	return req
}

// randomOutcome returns success most of the time, else any status with a
// random message, and a primary for the read-only status.
func randomOutcome(r *rand.Rand) outcome {
	if r.IntN(3) != 0 {
		return translate(nil)
	}
	out := outcome{status: statuses[r.IntN(len(statuses))], message: randomString(r)}
	if out.ID == StatusReadOnly || r.IntN(4) == 0 {
		out.primary = randomString(r)
	}
	return out
}

// randomCase returns a random answer.
func randomCase(t testing.TB, r *rand.Rand) answerCase {
	c := answerCase{req: randomRequest(t, r), out: randomOutcome(r),
		et: randomDuration(r), u: randomUser(r), id: randomString(r), s: sectionsOf(r.UintN(64))}
	switch r.IntN(10) {
	case 0: // another operation's answer, built with etree
		c.tree = etree.NewElement("Domain")
		c.tree.CreateAttr("name", randomString(r))
		addText(c.tree, "Description", randomString(r))
		c.tree.CreateElement("Empty")
	case 1:
		c.noUser = true
	}
	return c
}

func TestWriteResponseAsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		checkAnswerCase(t, randomCase(t, r))
	}
}

func TestWriteUserEverySection(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range uint(64) {
		for range 20 {
			checkAnswerCase(t, answerCase{out: translate(nil), et: time.Microsecond, u: randomUser(r), id: randomString(r), s: sectionsOf(n)})
		}
	}
}

// TestWriteResponseVersions varies the server's version, written in
// attributes and as text, the empty version included.
func TestWriteResponseVersions(t *testing.T) {
	saved := mailcluster.Version
	t.Cleanup(func() { mailcluster.Version = saved })
	r := rand.New(rand.NewPCG(5, 6))
	for _, v := range append([]string{"", " ", "1.0 <beta> & \"rc\"", "\xff\x00"}, hostileText...) {
		mailcluster.Version = v
		for range 10 {
			checkAnswerCase(t, randomCase(t, r))
		}
	}
}

// FuzzWriteUser checks writeResponse against the reference on accounts
// built from the fuzzer's strings; lists are split at "\x1e". bits picks
// the sections (6 bits), the flags, the admin rights, the outcome and
// whether the request is echoed.
func FuzzWriteUser(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 40 {
		u := randomUser(r)
		a := u.Account
		var aliases, groups []string
		for _, al := range u.aliases {
			aliases = append(aliases, al.Name)
		}
		for _, g := range u.groups {
			groups = append(groups, g.Name)
		}
		f.Add(randomString(r), a.Domain, a.Mailbox, a.FullName, a.FirstName, a.LastName, a.MailboxPath,
			strings.Join(a.SendAs, "\x1e"), strings.Join(aliases, "\x1e"), strings.Join(groups, "\x1e"),
			a.QuotaBytes, a.QuotaMessages, a.CreatedAt.Unix(), r.Uint64())
	}
	f.Fuzz(func(t *testing.T, id, domain, mailbox, fullName, firstName, lastName, path, sendAs, aliases, groups string,
		quotaBytes, quotaMessages, created int64, bits uint64) {
		rights := []mailcluster.AdminRights{mailcluster.AdminNone, mailcluster.AdminDomain, mailcluster.AdminGlobal, "x"}
		a := &mailcluster.Account{Domain: domain, Mailbox: mailbox, FullName: fullName, FirstName: firstName,
			LastName: lastName, MailboxPath: path, Frozen: bits&(1<<6) != 0, Disabled: bits&(1<<7) != 0,
			QuotaBytes: quotaBytes, QuotaMessages: quotaMessages, AdminRights: rights[bits>>8&3],
			CreatedAt: time.Unix(created%(1<<40), 0), UpdatedAt: time.Unix(created%(1<<40), 0).In(time.FixedZone("Y", 3600))}
		if bits&(1<<10) != 0 {
			a.SendAs = strings.Split(sendAs, "\x1e")
		}
		u := user{Account: a}
		if bits&(1<<11) != 0 {
			for _, s := range strings.Split(aliases, "\x1e") {
				u.aliases = append(u.aliases, &mailcluster.Alias{Domain: domain, Name: s})
				u.lists = append(u.lists, &mailcluster.MailingList{Domain: s, Name: mailbox})
			}
		}
		if bits&(1<<12) != 0 {
			for _, s := range strings.Split(groups, "\x1e") {
				u.groups = append(u.groups, &mailcluster.Group{Domain: domain, Name: s})
			}
		}
		c := answerCase{out: translate(nil), et: time.Duration(created), u: u, id: id, s: sectionsOf(uint(bits))}
		if bits&(1<<13) != 0 {
			c.out = outcome{status: statuses[StatusReadOnly], message: fullName, primary: path}
		}
		if bits&(1<<14) != 0 {
			doc := etree.NewDocument()
			if err := doc.ReadFromString(echoedRequests[2]); err != nil {
				t.Fatal(err)
			}
			c.req = &request{el: doc.FindElement("//Request"), echo: true, version: lastName}
		}
		checkAnswerCase(t, c)
	})
}

// TestPlainAsEtree checks plain byte by byte, and on strings of plain
// bytes: what it accepts, etree's text and attribute escaping with
// writeSettings writes unchanged; what it refuses, etree changes (alone,
// or in a string of plain bytes for a lone byte of UTF-8), so that the
// fast path is no wider than needed.
func TestPlainAsEtree(t *testing.T) {
	escaped := func(s string) (text, attr string) {
		var b bytes.Buffer
		cd := etree.CharData{Data: s}
		cd.WriteTo(&b, &writeSettings)
		text = b.String()
		b.Reset()
		a := etree.Attr{Key: "k", Value: s}
		a.WriteTo(&b, &writeSettings)
		return text, strings.TrimSuffix(strings.TrimPrefix(b.String(), `k="`), `"`)
	}
	for c := range 256 {
		s := string([]byte{byte(c)})
		text, attr := escaped(s)
		same := text == s && attr == s
		if plain(s) != same {
			t.Errorf("plain(%q) = %v, but etree writes text %q and attribute %q", s, plain(s), text, attr)
		}
	}
	var all []byte
	for c := range 256 {
		if plain(string([]byte{byte(c)})) {
			all = append(all, byte(c))
		}
	}
	if text, attr := escaped(string(all)); !plain(string(all)) || text != string(all) || attr != string(all) {
		t.Errorf("the plain bytes together are escaped: text %q, attribute %q", text, attr)
	}
	for _, s := range []string{"", "alice", "a b\tc\r\nd", "/var/mail/x/"} {
		if !plain(s) {
			t.Errorf("plain(%q) = false", s)
		}
	}
	for _, s := range []string{"ü", "a&b", "a\x00", "\xff", "\ufffd"} {
		if plain(s) {
			t.Errorf("plain(%q) = true", s)
		}
	}
}
