package mailstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/mailstore"
)

// A delivery makes the mailbox's directories when they are missing: at
// the first delivery, and when new/ or tmp/ was removed since.
func TestDeliverMakesMissingDirs(t *testing.T) {
	e := mustStoreEnv(t)
	st := e.node(t, mailstore.Options{})
	deliver := func() {
		t.Helper()
		if err := st.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(e.alice.MailboxPath, "new"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	deliver()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if st, err := os.Stat(filepath.Join(e.alice.MailboxPath, sub)); err != nil || !st.IsDir() {
			t.Fatalf("%s/ after the first delivery: %v", sub, err)
		}
	}
	for _, sub := range []string{"new", "tmp"} {
		if err := os.RemoveAll(filepath.Join(e.alice.MailboxPath, sub)); err != nil {
			t.Fatal(err)
		}
		deliver()
		if n := count(); n != 1 {
			t.Fatalf("new/ holds %d messages after %s/ was removed and one delivered, want 1", n, sub)
		}
		os.RemoveAll(filepath.Join(e.alice.MailboxPath, "new"))
	}
}
