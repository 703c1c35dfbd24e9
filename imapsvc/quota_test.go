package imapsvc_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster"
)

// res is a resource list of a QUOTA answer.
type res = map[imap.QuotaResourceType]imapclient.QuotaResourceData

// wantQuotaRoot asserts the answer to GETQUOTAROOT of a folder: the root
// "" with resources want.
func wantQuotaRoot(t *testing.T, c *imapclient.Client, folder string, want res) {
	t.Helper()
	qs, err := c.GetQuotaRoot(folder).Wait()
	if err != nil {
		t.Fatalf("GETQUOTAROOT %s: %v", folder, err)
	}
	if len(qs) != 1 || qs[0].Root != "" || !maps.Equal(qs[0].Resources, want) {
		t.Fatalf("GETQUOTAROOT %s: %+v, want root \"\" with %v", folder, qs, want)
	}
}

// wantQuota asserts the answer to GETQUOTA "".
func wantQuota(t *testing.T, c *imapclient.Client, want res) {
	t.Helper()
	q, err := c.GetQuota("").Wait()
	if err != nil {
		t.Fatalf("GETQUOTA: %v", err)
	}
	if q == nil || q.Root != "" || !maps.Equal(q.Resources, want) {
		t.Fatalf("GETQUOTA: %+v, want %v", q, want)
	}
}

// kib is bytes in KiB, rounded up.
func kib(bytes int64) int64 { return (bytes + 1023) / 1024 }

// TestQuotaExtension: QUOTA (RFC 9208) is announced with its STORAGE and
// MESSAGE resources; every folder is under the root "", whose usage
// follows APPENDs and expunges and whose limits follow a change of quota
// at once; another root or a missing folder is NO; SETQUOTA is NO.
func TestQuotaExtension(t *testing.T) {
	e := mustOpenEnv(t)
	if _, err := e.svc.CreateAccount(sysCtx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "q", Password: "q-pass-1234",
		QuotaBytes: 20 * 1024, QuotaMessages: 5}); err != nil {
		t.Fatal(err)
	}
	c := e.loginTo(e.node, "q@example.com", "q-pass-1234", nil)
	for _, want := range []imap.Cap{"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"} {
		if !c.Caps().Has(want) {
			t.Fatalf("capabilities %v, want %s", c.Caps(), want)
		}
	}
	wantQuotaRoot(t, c, "INBOX", res{imap.QuotaResourceStorage: {Usage: 0, Limit: 20}, imap.QuotaResourceMessage: {Usage: 0, Limit: 5}})

	m1, m2 := message("one", strings.Repeat("a", 1500)), message("two", strings.Repeat("b", 3000))
	appendMsg(t, c, "INBOX", m1, nil)
	appendMsg(t, c, "Sent", m2, nil)
	size := int64(len(m1) + len(m2))
	e.waitUsage("q", size, 2)
	after := res{imap.QuotaResourceStorage: {Usage: kib(size), Limit: 20}, imap.QuotaResourceMessage: {Usage: 2, Limit: 5}}
	if after[imap.QuotaResourceStorage].Usage*1024 == size {
		t.Fatal("the test needs a size that is not a multiple of 1024")
	}
	wantQuotaRoot(t, c, "INBOX", after)
	wantQuotaRoot(t, c, "Sent", after)
	wantQuota(t, c, after)

	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if gone, err := c.Expunge().Collect(); err != nil || fmt.Sprint(gone) != "[1]" {
		t.Fatalf("EXPUNGE: %v %v", gone, err)
	}
	e.waitUsage("q", int64(len(m2)), 1)
	wantQuota(t, c, res{imap.QuotaResourceStorage: {Usage: kib(int64(len(m2))), Limit: 20}, imap.QuotaResourceMessage: {Usage: 1, Limit: 5}})

	// An administrator's change applies at once; a limit of 0 is none.
	bytes, none := int64(100*1024+1000), int64(0)
	if _, err := e.svc.UpdateAccount(sysCtx, "example.com", "q", mailcluster.AccountUpdate{QuotaBytes: &bytes, QuotaMessages: &none}); err != nil {
		t.Fatal(err)
	}
	wantQuota(t, c, res{imap.QuotaResourceStorage: {Usage: kib(int64(len(m2))), Limit: 100}})

	_, err := c.GetQuota("other").Wait()
	wantNo(t, err, imap.ResponseCodeNonExistent)
	_, err = c.GetQuotaRoot("Nothing").Wait()
	wantNo(t, err, imap.ResponseCodeNonExistent)
	err = c.SetQuota("", map[imap.QuotaResourceType]int64{imap.QuotaResourceStorage: 1 << 20}).Wait()
	wantNo(t, err, imap.ResponseCodeNoPerm)
	wantQuota(t, c, res{imap.QuotaResourceStorage: {Usage: kib(int64(len(m2))), Limit: 100}})
}

// TestQuotaUnlimitedAndGroupDefault: an account without a quota has the
// root "" with no resource; one whose quota comes from its group's
// default shows that default.
func TestQuotaUnlimitedAndGroupDefault(t *testing.T) {
	e := mustOpenEnv(t)
	c := e.login(nil)
	appendMsg(t, c, "INBOX", message("one", "body"), nil)
	wantQuotaRoot(t, c, "INBOX", res{})
	wantQuota(t, c, res{})

	if _, err := e.svc.CreateGroup(sysCtx, mailcluster.GroupCreate{Domain: "example.com", Name: "staff",
		QuotaBytes: 50 * 1024, QuotaMessages: 30, Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	b := e.loginTo(e.node, "bob@example.com", bobPass, nil)
	m := message("hello", strings.Repeat("c", 2000))
	appendMsg(t, b, "INBOX", m, nil)
	e.waitUsage("bob", int64(len(m)), 1)
	wantQuotaRoot(t, b, "INBOX", res{imap.QuotaResourceStorage: {Usage: kib(int64(len(m))), Limit: 50}, imap.QuotaResourceMessage: {Usage: 1, Limit: 30}})
}
