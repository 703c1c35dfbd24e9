package mailstore_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/internal/faultfs"
	"mailcluster/mailstore"
)

// asyncRep is a fakeRep that also takes deltas without waiting
// (mailstore.AsyncReporter): they count at once; the commit ends when
// the test says so (commit), with the error set in fail (then they stop
// counting, as the outbox's do).
type asyncRep struct {
	fakeRep
	commit chan struct{} // nil: each commit ends at once
	fail   error
}

func (r *asyncRep) ReportAsync(deltas ...mailcluster.UsageDelta) <-chan error {
	r.mu.Lock()
	r.deltas = append(r.deltas, deltas...)
	commit, fail := r.commit, r.fail
	r.mu.Unlock()
	ch := make(chan error, 1)
	go func() {
		if commit != nil {
			<-commit
		}
		if fail != nil {
			r.mu.Lock()
			for _, d := range deltas {
				d.Bytes, d.Messages = -d.Bytes, -d.Messages
				r.deltas = append(r.deltas, d)
			}
			r.mu.Unlock()
		}
		ch <- fail
	}()
	return ch
}

func (r *asyncRep) recorded() []mailcluster.UsageDelta {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mailcluster.UsageDelta(nil), r.deltas...)
}

// mustAsyncStore returns the env and a Store over it whose Reporter is
// an asyncRep, with fsys as its file system (nil: the os one).
func mustAsyncStore(t *testing.T, fsys mailstore.FS) (*storeEnv, *asyncRep, *mailstore.Store) {
	e := mustStoreEnv(t)
	rep := &asyncRep{}
	return e, rep, mailstore.NewStore(e.dir, rep, slog.New(slog.NewTextHandler(testWriter{t}, nil)), mailstore.Options{FS: fsys})
}

const earlyMessage = "Subject: early\r\n\r\nhello\r\n"

// A delivery of one copy counts its usage once its message is linked into
// new/, not before (a node killed before that would count a message it
// never stored): while the message file syncs nothing is pending; while
// new/ syncs the mailbox's pending usage holds the message (its commit
// overlaps the sync), and no change of INBOX is told yet (the other
// nodes' readers would look before the message is durable); that change
// is reported once the message is stored, with no usage of its own.
func TestDeliverCountsUsageOnceLinked(t *testing.T) {
	type blocked struct {
		op    string
		bytes int64
		msgs  int64
	}
	for _, step := range []blocked{{"sync", 0, 0}, {"syncdir", int64(len(earlyMessage)), 1}} {
		t.Run(step.op, func(t *testing.T) {
			release := make(chan struct{})
			waiting := make(chan struct{}, 1)
			fsys := &faultfs.FS{FS: mailstore.OSFS, Check: func(op, path string) error {
				if op == step.op && (op == "sync" || strings.HasSuffix(path, "new")) {
					select {
					case waiting <- struct{}{}:
					default:
					}
					<-release
				}
				return nil
			}}
			e, rep, s := mustAsyncStore(t, fsys)
			done := make(chan error, 1)
			go func() {
				done <- s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20)
			}()
			select {
			case <-waiting:
			case <-time.After(10 * time.Second):
				close(release)
				t.Fatalf("no %s during the delivery", step.op)
			}
			b, m := rep.Pending("example.com", "alice")
			ds := rep.recorded()
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if b != step.bytes || m != step.msgs {
				t.Errorf("pending during the %s = %d bytes, %d messages; want %d, %d", step.op, b, m, step.bytes, step.msgs)
			}
			for _, d := range ds {
				if d.Folder != "" {
					t.Errorf("a change of %s was reported before the message was stored: %+v", d.Folder, d)
				}
			}
			var notices int
			for _, d := range rep.recorded() {
				if d.Folder == mailstore.Inbox && d.Kind == mailcluster.MailDelivered {
					notices++
					if d.Bytes != 0 || d.Messages != 0 {
						t.Errorf("the change of INBOX carries usage: %+v", d)
					}
				}
			}
			if notices != 1 {
				t.Errorf("%d changes of INBOX reported; want 1", notices)
			}
			if b, m := rep.Pending("example.com", "alice"); b != int64(len(earlyMessage)) || m != 1 {
				t.Errorf("pending after the delivery = %d, %d; want %d, 1", b, m, len(earlyMessage))
			}
		})
	}
}

// A delivery that fails after its usage was counted reports it back out,
// once the commit of the first report ended; one that does not fit the
// quota is refused before anything is reported.
func TestDeliverCountedUsageBackedOut(t *testing.T) {
	t.Run("SyncOfNewFails", func(t *testing.T) {
		fsys := &faultfs.FS{FS: mailstore.OSFS, Check: func(op, path string) error {
			if op == "syncdir" && strings.HasSuffix(path, "new") {
				return &fs.PathError{Op: op, Path: path, Err: syscall.EIO}
			}
			return nil
		}}
		e, rep, s := mustAsyncStore(t, fsys)
		rep.commit = make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20)
		}()
		// The delivery waits for its report's commit before it reports
		// back out (a report back before the commit could be applied
		// first).
		select {
		case err := <-done:
			t.Fatalf("the delivery ended (%v) before its report was committed", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(rep.commit)
		err := <-done
		var le *mailstore.LocalError
		if !errors.As(err, &le) {
			t.Fatalf("Deliver = %v; want a LocalError", err)
		}
		if b, m := rep.Pending("example.com", "alice"); b != 0 || m != 0 {
			t.Errorf("pending after a failed delivery = %d, %d; want 0, 0", b, m)
		}
		for _, d := range rep.recorded() {
			if d.Folder != "" {
				t.Errorf("a failed delivery reported a change of %s: %+v", d.Folder, d)
			}
		}
	})
	t.Run("CommitFails", func(t *testing.T) {
		// The usage could not be recorded: the message is stored all the
		// same (a recount corrects the count), and nothing stays pending.
		e, rep, s := mustAsyncStore(t, nil)
		rep.fail = errors.New("disk full")
		if err := s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20); err != nil {
			t.Fatal(err)
		}
		if b, m := rep.Pending("example.com", "alice"); b != 0 || m != 0 {
			t.Errorf("pending after a failed commit = %d, %d; want 0, 0", b, m)
		}
		if got := len(mustList(t, s, e.alice)); got != 1 {
			t.Errorf("%d messages stored; want 1", got)
		}
	})
	t.Run("OverQuota", func(t *testing.T) {
		e, rep, s := mustAsyncStore(t, nil)
		e.setQuota(int64(len(earlyMessage))-1, 0)
		err := s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20)
		var qe *mailstore.QuotaError
		if !errors.As(err, &qe) {
			t.Fatalf("Deliver = %v; want a QuotaError", err)
		}
		if ds := rep.recorded(); len(ds) != 0 {
			t.Errorf("a refused delivery reported %+v", ds)
		}
		// Exactly to the quota fits.
		e.setQuota(int64(len(earlyMessage)), 1)
		if err := s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20); err != nil {
			t.Fatalf("a message exactly to the quota: %v", err)
		}
	})
}

// Concurrent deliveries into a mailbox with room for some of them: those
// that fit are stored, the others refused (by the check before the
// report or under the lock), and the usage counted is exactly that of
// the messages stored.
func TestDeliverCountedUsageUnderRace(t *testing.T) {
	e, rep, s := mustAsyncStore(t, nil)
	const fit = 3
	e.setQuota(0, fit)
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20)
		}()
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		var qe *mailstore.QuotaError
		switch {
		case err == nil:
			stored++
		case !errors.As(err, &qe):
			t.Errorf("Deliver = %v; want nil or a QuotaError", err)
		}
	}
	if stored != fit {
		t.Errorf("%d messages delivered; want %d", stored, fit)
	}
	if got := len(mustList(t, s, e.alice)); got != stored {
		t.Errorf("%d messages in the mailbox; %d deliveries succeeded", got, stored)
	}
	if b, m := rep.Pending("example.com", "alice"); m != int64(stored) || b != int64(stored*len(earlyMessage)) {
		t.Errorf("pending = %d bytes, %d messages; want %d, %d", b, m, stored*len(earlyMessage), stored)
	}
}

// mustList lists the messages of a's INBOX (new/ and cur/).
func mustList(t *testing.T, s *mailstore.Store, a *mailcluster.Account) []mailcluster.Message {
	t.Helper()
	msgs, _, err := s.List(a, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// A delivery whose new/ sync fails takes its message back even when a
// reader moved it to cur/ while the sync ran (under the mailbox's lock,
// by the message's key): the sender, told to try again, does not leave
// a copy behind.
func TestDeliverTakenBackAfterMove(t *testing.T) {
	e := mustStoreEnv(t)
	ffs := newFaultFS(mailstore.OSFS)
	s := e.node(t, mailstore.Options{FS: ffs})
	newDir := filepath.Join(e.alice.MailboxPath, "new")
	ffs.mu.Lock()
	ffs.block, ffs.hit = make(chan struct{}), make(chan string, 1)
	ffs.mu.Unlock()
	ffs.set("syncdir", newDir)
	done := make(chan error, 1)
	go func() {
		done <- s.Deliver(context.Background(), []*mailcluster.Account{e.alice}, nil, strings.NewReader(earlyMessage), 1<<20)
	}()
	select {
	case <-ffs.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("new/ was never synced")
	}
	des, err := os.ReadDir(newDir)
	if err != nil || len(des) != 1 {
		t.Fatalf("new/ while it syncs: %v %v", des, err)
	}
	name := des[0].Name()
	if err := os.MkdirAll(filepath.Join(e.alice.MailboxPath, "cur"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(newDir, name), filepath.Join(e.alice.MailboxPath, "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	close(ffs.block)
	var le *mailstore.LocalError
	if err := <-done; !errors.As(err, &le) {
		t.Fatalf("delivery with a failing new/ sync: %v", err)
	}
	for _, sub := range []string{"new", "cur"} {
		if des, _ := os.ReadDir(filepath.Join(e.alice.MailboxPath, sub)); len(des) != 0 {
			t.Errorf("%s/ after the failed delivery holds %d files", sub, len(des))
		}
	}
}
