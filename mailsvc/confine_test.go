package mailsvc_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/service"
)

// pathsDir is the service with some accounts' mailbox paths replaced, as
// if they had been stored before paths were checked (or by a bug).
type pathsDir struct {
	*service.Local
	mu    sync.Mutex
	paths map[string]string // address -> MailboxPath
}

func (d *pathsDir) LookupAccount(address string) (*mailcluster.Account, error) {
	a, err := d.Local.LookupAccount(address)
	if err != nil {
		return nil, err
	}
	return d.withPath(a), nil
}

func (d *pathsDir) ResolveRecipient(address, sender string) (*mailcluster.Recipient, error) {
	r, err := d.Local.ResolveRecipient(address, sender)
	if err != nil {
		return nil, err
	}
	c := *r
	c.Accounts = make([]*mailcluster.Account, len(r.Accounts))
	for i, a := range r.Accounts {
		c.Accounts[i] = d.withPath(a)
	}
	return &c, nil
}

// withPath returns a with its mailbox path replaced when one is set.
func (d *pathsDir) withPath(a *mailcluster.Account) *mailcluster.Account {
	d.mu.Lock()
	p, ok := d.paths[a.Address()]
	d.mu.Unlock()
	if !ok {
		return a
	}
	c := *a
	c.MailboxPath = p
	return &c
}

// setPath makes address's mailbox path p ("" restores the stored one).
func (d *pathsDir) setPath(address, p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p == "" {
		delete(d.paths, address)
	} else {
		d.paths[address] = p
	}
}

// MustOpenPathsEnv is MustOpenEnv whose mail service sees the mailbox
// paths of pathsDir.
func MustOpenPathsEnv(t *testing.T) (*env, *pathsDir) {
	t.Helper()
	var d *pathsDir
	e := mustOpenEnvDir(t, slog.New(slog.NewTextHandler(testWriter{t}, nil)), func(svc *service.Service) mailsvc.Directory {
		d = &pathsDir{Local: mustLocal(svc), paths: map[string]string{}}
		return d
	})
	return e, d
}

// wantNothingAt asserts that p does not exist.
func wantNothingAt(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists (or cannot be checked: %v)", p, err)
	}
}

// wantEmptyDir asserts that dir exists and holds nothing.
func wantEmptyDir(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 0 {
		t.Fatalf("%s holds %d entries, want none: %v", dir, len(des), des)
	}
}

// newCount returns the number of files in dir/new.
func newCount(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return len(des)
}

// TestMailboxConfinement points accounts' mailbox paths outside the
// mailbox root, directly or through a symbolic link inside it: delivery
// is refused with a temporary error and creates nothing there, and the
// mailbox operations of the REST API are refused with EFORBIDDEN and
// neither read nor delete the mail found there.
func TestMailboxConfinement(t *testing.T) {
	e, d := MustOpenPathsEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	root := mustLocal(e.svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, "")
	if root == "" {
		t.Fatal("no MailboxRoot")
	}

	t.Run("OK", func(t *testing.T) {
		before := len(messages(t, e, "alice@example.com"))
		if err := send(dial(t, e.inbound), "s@remote.test", []string{"alice@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if n := len(messages(t, e, "alice@example.com")); n != before+1 {
			t.Fatalf("alice has %d messages, want %d", n, before+1)
		}
	})

	t.Run("ErrOutsideRoot", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "victim")
		d.setPath("bob@example.com", outside)
		defer d.setPath("bob@example.com", "")
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"bob@example.com"}, msg), 451, smtp.EnhancedCode{4, 3, 0})
		wantNothingAt(t, outside)
	})

	t.Run("ErrOutsideRootAfterRcpt", func(t *testing.T) {
		// The path changes between RCPT and the end of DATA: the check
		// made when the message is stored refuses it all the same, and
		// the other recipient gets nothing either.
		outside := filepath.Join(t.TempDir(), "victim")
		before := len(messages(t, e, "alice@example.com"))
		c := dial(t, e.inbound)
		if err := c.Mail("s@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"alice@example.com", "bob@example.com"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		d.setPath("bob@example.com", outside)
		defer d.setPath("bob@example.com", "")
		if _, err := w.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		wantReply(t, w.Close(), 451, smtp.EnhancedCode{4, 3, 0})
		wantNothingAt(t, outside)
		if n := len(messages(t, e, "alice@example.com")); n != before {
			t.Fatalf("alice has %d messages, want %d", n, before)
		}
	})

	t.Run("ErrSymlinkInsideRoot", func(t *testing.T) {
		// root/evil.test/bob -> a directory outside the root.
		target := t.TempDir()
		link := filepath.Join(root, "evil.test", "bob")
		if err := os.MkdirAll(filepath.Dir(link), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		d.setPath("bob@example.com", link)
		defer d.setPath("bob@example.com", "")
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"bob@example.com"}, msg), 451, smtp.EnhancedCode{4, 3, 0})
		wantEmptyDir(t, target)
	})

	t.Run("ErrSymlinkBetweenMessages", func(t *testing.T) {
		// A mailbox inside the root takes one message; then, on the same
		// connection, it is replaced by a link to a directory outside
		// the root: the next message is refused, and nothing is written
		// there.
		box := filepath.Join(root, "example.com", "swapped")
		target := t.TempDir()
		d.setPath("bob@example.com", box)
		defer d.setPath("bob@example.com", "")
		c := dial(t, e.inbound)
		if err := send(c, "s@remote.test", []string{"bob@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if n := newCount(t, box); n != 1 {
			t.Fatalf("the mailbox has %d messages, want 1", n)
		}
		if err := os.RemoveAll(box); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, box); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(box)
		wantReply(t, send(c, "s@remote.test", []string{"bob@example.com"}, msg), 451, smtp.EnhancedCode{4, 3, 0})
		wantEmptyDir(t, target)
		// The connection goes on: a recipient whose mailbox is fine
		// still gets mail.
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		before := len(messages(t, e, "alice@example.com"))
		if err := send(c, "s@remote.test", []string{"alice@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if n := len(messages(t, e, "alice@example.com")); n != before+1 {
			t.Fatalf("alice has %d messages, want %d", n, before+1)
		}
	})

	t.Run("ErrThawMessageOutsideRoot", func(t *testing.T) {
		a, err := mustLocal(e.svc).LookupAccount("bob@example.com")
		if err != nil {
			t.Fatal(err)
		}
		c := *a
		c.MailboxPath = filepath.Join(t.TempDir(), "victim")
		if err := e.store.NotifyFrozen(ctx, &c, "token", time.Now().Add(time.Hour)); err == nil {
			t.Fatal("thaw message delivered outside the root")
		}
		wantNothingAt(t, c.MailboxPath)
	})

	t.Run("ErrStoreOutsideRoot", func(t *testing.T) {
		// Another tenant's mailbox outside the root, with a message in it.
		victim := t.TempDir()
		if err := mailstore.Maildir(victim).Init(); err != nil {
			t.Fatal(err)
		}
		id := "1700000000.M1P1Q1Rabc.host,S=5"
		msgPath := filepath.Join(victim, "new", id)
		if err := os.WriteFile(msgPath, []byte("x: y\r\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		a, err := mustLocal(e.svc).LookupAccount("bob@example.com")
		if err != nil {
			t.Fatal(err)
		}
		c := *a
		c.MailboxPath = victim
		wantForbidden := func(what string, err error) {
			t.Helper()
			if mailcluster.ErrorCode(err) != mailcluster.EFORBIDDEN {
				t.Fatalf("%s: %v, want EFORBIDDEN", what, err)
			}
		}
		_, _, err = e.store.List(&c, 0, "")
		wantForbidden("List", err)
		rc, _, err := e.store.Open(&c, id)
		if err == nil {
			rc.Close()
		}
		wantForbidden("Open", err)
		wantForbidden("Delete", e.store.Delete(ctx, &c, id))
		_, err = e.store.Recount(ctx, &c)
		wantForbidden("Recount", err)
		if _, err := os.Stat(msgPath); err != nil {
			t.Fatalf("the victim's message: %v", err)
		}
	})

	t.Run("MigrationNextRoot", func(t *testing.T) {
		next := t.TempDir()
		moved := filepath.Join(next, "example.com", "bob")
		d.setPath("bob@example.com", moved)
		defer d.setPath("bob@example.com", "")
		// Not migrating: the next root is just another directory.
		wantReply(t, send(dial(t, e.inbound), "s@remote.test", []string{"bob@example.com"}, msg), 451, smtp.EnhancedCode{4, 3, 0})
		wantNothingAt(t, moved)
		if err := e.svc.SetSetting(ctx, "mailcluster", mailcluster.SectionDirectories, mailcluster.KeyMailboxRootNext, next); err != nil {
			t.Fatal(err)
		}
		defer e.svc.DeleteSetting(ctx, "mailcluster", mailcluster.SectionDirectories, mailcluster.KeyMailboxRootNext)
		if err := send(dial(t, e.inbound), "s@remote.test", []string{"bob@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		if n := newCount(t, moved); n != 1 {
			t.Fatalf("the mailbox under the next root has %d messages, want 1", n)
		}
	})
}
