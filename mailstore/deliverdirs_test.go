package mailstore_test

import (
	"bytes"
	"context"
	"errors"
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

// A delivered file holds the header and then the body, byte for byte, for
// bodies smaller and larger than the write buffer (64 KiB), and a body one
// byte over the limit is refused with nothing left in the mailbox.
func TestDeliverWritesHeaderAndBody(t *testing.T) {
	e := mustStoreEnv(t)
	st := e.node(t, mailstore.Options{})
	header := []byte("Return-Path: <s@remote.test>\r\n")
	for _, size := range []int{0, 10 << 10, 64<<10 - len(header), 64 << 10, 200<<10 + 7} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte('a' + i%26)
		}
		newDir := filepath.Join(e.alice.MailboxPath, "new")
		os.RemoveAll(newDir)
		if err := st.Deliver(context.Background(), []*mailcluster.Account{e.alice}, header, bytes.NewReader(body), int64(len(header)+size)); err != nil {
			t.Fatalf("body of %d bytes: %v", size, err)
		}
		ents, err := os.ReadDir(newDir)
		if err != nil || len(ents) != 1 {
			t.Fatalf("body of %d bytes: new/ holds %d files (%v)", size, len(ents), err)
		}
		got, err := os.ReadFile(filepath.Join(newDir, ents[0].Name()))
		if err != nil || !bytes.Equal(got, append(append([]byte{}, header...), body...)) {
			t.Fatalf("body of %d bytes: the file holds %d bytes (%v), want the header and body (%d)", size, len(got), err, len(header)+size)
		}
		os.RemoveAll(newDir)
		err = st.Deliver(context.Background(), []*mailcluster.Account{e.alice}, header, bytes.NewReader(body), int64(len(header)+size-1))
		if size > 0 && !errors.Is(err, mailstore.ErrTooLarge) {
			t.Fatalf("body of %d bytes over the limit by one: %v, want ErrTooLarge", size, err)
		}
		for _, sub := range []string{"new", "tmp"} {
			if ents, _ := os.ReadDir(filepath.Join(e.alice.MailboxPath, sub)); len(ents) != 0 {
				t.Fatalf("%s/ after a refused delivery holds %d files", sub, len(ents))
			}
		}
	}
}
