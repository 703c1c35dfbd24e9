package mailstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailcluster"
)

// Directory is what the store needs of the domain service. It is
// satisfied by *service.Local.
type Directory interface {
	// LookupAccount returns an account (with its mailbox path) by address.
	// Errors: EINVALID, ENOTFOUND.
	LookupAccount(address string) (*mailcluster.Account, error)
	// Usage returns the cluster-wide usage the primary published.
	Usage(domain, mailbox string) mailcluster.Usage
	// SetUsage publishes a recounted usage (primary only).
	SetUsage(ctx context.Context, domain, mailbox string, u mailcluster.Usage) error
	// Setting reads the main ini file.
	Setting(section, key, def string) string
}

// Reporter carries changes to mail to the primary: usage deltas, and the
// folder each changed (a change of flags or folders is a delta of zero
// usage). Report must persist the deltas before it returns (they survive
// a crash) and assign their Seq; it should send them at once.
type Reporter interface {
	Report(deltas ...mailcluster.UsageDelta) error
	// Pending returns what was reported for a mailbox but is not yet
	// published by the primary.
	Pending(domain, mailbox string) (bytes, messages int64)
}

// AsyncReporter is a Reporter that can take deltas without waiting for
// them to be persisted: they count as pending from the call on, and the
// channel receives the error of their commit (*cluster.Outbox implements
// it). A delivery of one copy reports this way as soon as its size is
// known, so that the commit overlaps the delivery's own syncs.
type AsyncReporter interface {
	Reporter
	ReportAsync(deltas ...mailcluster.UsageDelta) <-chan error
}

// WrittenReporter is an AsyncReporter whose reports a sync of the file
// system holding its file makes durable (*cluster.Outbox implements it):
// WriteReport returns once the deltas are written to that file, not yet
// synced (they count as pending from then on), and the reporter syncs
// them itself before it passes them on. A delivery onto that same file
// system, synced whole after its links (FileSystemSyncer), reports this
// way: the one sync serves the message, its links and its report.
type WrittenReporter interface {
	AsyncReporter
	// FileSystem returns the identity of the file system holding the
	// reporter's file, as FileSystemSyncer.FileSystem gives it; ok is
	// false when it is not known.
	FileSystem() (id uint64, ok bool)
	WriteReport(deltas ...mailcluster.UsageDelta) error
}

// Store is the node's access to the mailboxes on the shared path.
// It is safe for concurrent use.
type Store struct {
	dir Directory
	rep Reporter
	log *slog.Logger
	fs  FS
	hub Hub

	views views // the folder views, by directory (views.go)
	syncs DirSyncs

	syncMethod SyncMethod
	fsyncs     fsSyncs
}

// Options are the optional parts of a Store; the zero value is the os
// file system and no Hub.
type Options struct {
	// FS is the file system seam of deliveries and folder changes; nil
	// means OSFS.
	FS FS
	// Hub receives a notice of every change the Store makes to a folder
	// (deliveries, deletions, IMAP changes); nil: none is sent.
	Hub Hub
	// Sync is how deliveries make their messages durable; zero:
	// SyncAuto.
	Sync SyncMethod
}

// NewStore returns a Store.
func NewStore(dir Directory, rep Reporter, log *slog.Logger, opts Options) *Store {
	s := &Store{dir: dir, rep: rep, log: log, fs: opts.FS, hub: opts.Hub, syncMethod: opts.Sync}
	if s.fs == nil {
		s.fs = OSFS
	}
	if s.hub == nil {
		s.hub = nopHub{}
	}
	return s
}

// locked runs fn while holding the account's lock file.
func (s *Store) locked(ctx context.Context, a *mailcluster.Account, fn func() error) error {
	l, err := s.locker().Lock(ctx, a.Address())
	if err != nil {
		if errors.Is(err, ErrLockBusy) {
			return ErrBusy
		}
		if ctx.Err() != nil {
			return err
		}
		return &LocalError{Err: err}
	}
	defer func() {
		if err := l.Unlock(); err != nil {
			s.log.Error("mailstore: lock lost while held", "address", a.Address(), "err", err)
		}
	}()
	return fn()
}

// current reads an account again (a change of quota applies at once);
// the account as given when it cannot be read.
func (s *Store) current(a *mailcluster.Account) *mailcluster.Account {
	if cur, err := s.dir.LookupAccount(a.Address()); err == nil {
		return cur
	}
	return a
}

// changed tells of a change this node made to a folder (its IMAP name
// and directory): a notice on the Hub for this node's readers, and a
// delta (with the usage it moved) to the Reporter, for the primary, which
// tells the other nodes.
func (s *Store) changed(a *mailcluster.Account, folder, dir string, kind mailcluster.MailChangeKind, bytes, messages int64) {
	s.hub.Publish(dir)
	s.report(change(a, folder, kind, bytes, messages))
}

// change is the delta of a change to a folder of a.
func change(a *mailcluster.Account, folder string, kind mailcluster.MailChangeKind, bytes, messages int64) mailcluster.UsageDelta {
	return mailcluster.UsageDelta{Domain: a.Domain, Mailbox: a.Mailbox, Bytes: bytes, Messages: messages, At: time.Now().UTC(), Folder: folder, Kind: kind}
}

// report hands changes to mail to the Reporter.
func (s *Store) report(deltas ...mailcluster.UsageDelta) {
	if err := s.rep.Report(deltas...); err != nil {
		// The mail is safely stored; only the usage count lags until a
		// recount, and other nodes see the change at their next rescan.
		s.log.Error("recording a change to mail", "address", deltas[0].Mailbox+"@"+deltas[0].Domain, "err", err)
	}
}

// PublishChange tells this node's readers of a folder change learned from
// another node (see service.Local.FollowMailChanges): a notice on the Hub
// for the folder's directory. A change of an account or folder this node
// cannot resolve is dropped (logged at debug level): nobody here reads it.
func (s *Store) PublishChange(c mailcluster.MailChange) {
	a, err := s.dir.LookupAccount(c.Mailbox + "@" + c.Domain)
	if err == nil {
		var fs *Folders
		if fs, err = s.Folders(a); err == nil {
			var dir string
			if dir, _, err = fs.dirOf(c.Folder); err == nil {
				s.hub.Publish(dir)
				return
			}
		}
	}
	s.log.Debug("mailstore: a folder change of another node not told", "address", c.Mailbox+"@"+c.Domain, "folder", c.Folder, "err", err)
}

// PublishAll tells every reader of this node that its folder may have
// changed: changes of other nodes were missed.
func (s *Store) PublishAll() { s.hub.PublishAll() }

// Usage returns an account's usage: what the primary published plus what
// this node reported since.
func (s *Store) Usage(a *mailcluster.Account) (bytes, messages int64) { return s.usage(a) }

// FS is the seam for the file operations of a delivery that fail
// when a disk is full or a mailbox is not writable: creating, writing and
// syncing the message file, linking or copying it into new/, syncing
// new/. A Store uses OSFS unless Options.FS is set: tests give it a file
// system that fails an operation on demand, so that the failures are
// tested everywhere, not only where a small file system can be mounted.
// Reads, directory creation and the removals of a rollback call the os
// package directly.
type FS interface {
	// CreateTemp creates a new file in dir for writing (os.CreateTemp).
	CreateTemp(dir, pattern string) (File, error)
	// Link makes newname a hard link to oldname (os.Link).
	Link(oldname, newname string) error
	// Rename renames oldname to newname (os.Rename).
	Rename(oldname, newname string) error
	// SyncDir makes the entries of a directory durable (SyncDir).
	SyncDir(dir string) error
}

// File is a file a delivery writes (an *os.File).
type File interface {
	io.Writer
	Name() string
	Sync() error
	Close() error
}

// OSFS is the FS of the os package.
var OSFS FS = osFS{}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (File, error) {
	f, err := createTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Link(oldname, newname string) error   { return os.Link(oldname, newname) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) SyncDir(dir string) error             { return syncDirFd(dir) }

// The file operations of a delivery and of lock files open regular files
// and directories with open(2) and os.NewFile rather than os.OpenFile:
// os.OpenFile tries to register every file with the network poller (four
// fcntl and a failing epoll_ctl for a disk file), which made a third of a
// delivery's system calls.

// openFile is os.OpenFile for a regular file (or directory), without the
// poller's registration.
func openFile(name string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, perm)
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if err != syscall.EINTR {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// createTemp is os.CreateTemp (a new file, mode 0600, named by pattern
// with its last "*" replaced by a random string) with openFile.
func createTemp(dir, pattern string) (*os.File, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndexByte(pattern, '*'); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(mrand.Uint64(), 36)+suffix)
		f, err := openFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		return f, err
	}
}

// syncDirFd is SyncDir with open(2): the entries made or renamed in dir
// are durable when it returns; a file system that cannot sync a directory
// (EINVAL) is no error.
func syncDirFd(dir string) error {
	var fd int
	var err error
	for {
		if fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mailstore: sync %s: %w", dir, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	defer syscall.Close(fd)
	for {
		if err = syscall.Fsync(fd); err != syscall.EINTR {
			break
		}
	}
	if err != nil && err != syscall.EINVAL {
		return fmt.Errorf("mailstore: sync %s: %w", dir, &fs.PathError{Op: "sync", Path: dir, Err: err})
	}
	return nil
}

// The refusals of a delivery; LocalError and QuotaError are the others.
var (
	// ErrTooLarge: the message is larger than the limit it was given.
	ErrTooLarge = errors.New("mailstore: message too large")
	// ErrBusy: a mailbox's lock stayed held by another process.
	ErrBusy = errors.New("mailstore: mailbox is busy")
)

// QuotaError refuses a message that would exceed an account's quota.
type QuotaError struct{ Address string }

func (e *QuotaError) Error() string { return "mailstore: mailbox of " + e.Address + " is full" }

// LocalError is a failure of the local file system (a full disk, a
// mailbox that is not writable): temporary for the sender, and never
// shown to a client (Err is for the log).
type LocalError struct{ Err error }

func (e *LocalError) Error() string { return "mailstore: " + e.Err.Error() }
func (e *LocalError) Unwrap() error { return e.Err }

// lockLinger is how long a mailbox's lock file is kept after its release
// for the next delivery or change of this node (Locker.Linger): a sender
// sends its messages one after the other, each a few milliseconds apart.
const lockLinger = 20 * time.Millisecond

func (s *Store) locker() *Locker {
	def := filepath.Join(os.TempDir(), "mailcluster-locks")
	return &Locker{Dir: s.dir.Setting(mailcluster.SectionDirectories, mailcluster.KeyLockFiles, def), Linger: lockLinger}
}

// MailboxDir returns an account's Maildir at its mailbox path resolved
// (symbolic links included) and confined below the mailbox roots:
// [Directories] MailboxRoot and, while a migration runs, MailboxRootNext.
// Every file operation on a mailbox goes through it, so that a path set
// before the check existed, or a symbolic link created later, cannot lead
// outside the roots. A refusal (EFORBIDDEN) is logged here; nothing is
// created or written.
func (s *Store) MailboxDir(a *mailcluster.Account) (Maildir, error) {
	return s.mailboxDirIn(s.resolveRoots(mailcluster.MailboxRoots(s.dir.Setting)), a)
}

// resolveRoots resolves the mailbox roots once for the paths of one
// operation.
func (s *Store) resolveRoots(roots []string) mailcluster.MailboxRootSet {
	return mailcluster.ResolveMailboxRoots(roots...)
}

// mailboxDirIn is MailboxDir against roots resolved by the caller.
func (s *Store) mailboxDirIn(roots mailcluster.MailboxRootSet, a *mailcluster.Account) (Maildir, error) {
	p, err := roots.Confine(a.MailboxPath)
	if err != nil {
		s.log.Error("mailstore: mailbox path outside the mailbox roots refused", "address", a.Address(), "path", a.MailboxPath)
		return "", err
	}
	return Maildir(p), nil
}

// usage is the published usage plus what this node reported meanwhile.
// The two are read at different moments: a report the primary applied
// in between would be counted in neither (or, when it took usage away,
// in both), so the published usage is read again after the pending, and
// the sum taken again when it moved (at most twice more).
func (s *Store) usage(a *mailcluster.Account) (bytes, messages int64) {
	u := s.dir.Usage(a.Domain, a.Mailbox)
	for i := 0; ; i++ {
		pb, pm := s.rep.Pending(a.Domain, a.Mailbox)
		again := s.dir.Usage(a.Domain, a.Mailbox)
		if i == 2 || again.Bytes == u.Bytes && again.Messages == u.Messages {
			return again.Bytes + pb, again.Messages + pm
		}
		u = again
	}
}

// OverQuota tells whether adding bytes and messages would exceed a quota
// (with 0 and 0: whether the mailbox is already full).
func (s *Store) OverQuota(a *mailcluster.Account, addBytes, addMessages int64) bool {
	b, m := s.usage(a)
	if a.QuotaBytes > 0 && (b+addBytes > a.QuotaBytes || addBytes == 0 && b >= a.QuotaBytes) {
		return true
	}
	return a.QuotaMessages > 0 && (m+addMessages > a.QuotaMessages || addMessages == 0 && m >= a.QuotaMessages)
}

// Deliver writes one message for every recipient as one transaction: the
// message is written once to a temporary file and synced; then, with every
// recipient's mailbox locked, quotas are checked with the real size and
// the file is renamed into each new/ directory (and the directories
// synced); on any failure the renames done are undone, so a message is
// delivered to all recipients or to none. The usage deltas are reported
// before Deliver returns. header is prepended (trace fields). A recipient
// whose mailbox path is outside the mailbox roots fails the whole delivery
// with EFORBIDDEN before anything is written.
func (s *Store) Deliver(ctx context.Context, rcpts []*mailcluster.Account, header []byte, body io.Reader, maxSize int64) error {
	return s.deliver(ctx, rcpts, header, body, maxSize, true)
}

func (s *Store) deliver(ctx context.Context, rcpts []*mailcluster.Account, header []byte, body io.Reader, maxSize int64, checkQuota bool) error {
	if len(rcpts) == 0 {
		return errors.New("mailstore: no recipients")
	}
	_, err := s.DeliverCopies(ctx, []Copy{{Header: header, Accounts: rcpts}}, body, maxSize-int64(len(header)), checkQuota)
	return err
}

// Copy is one version of a message in a delivery: the fields written
// before the rest of the message, and the accounts that receive it.
type Copy struct {
	Header   []byte
	Accounts []*mailcluster.Account
	// Optional is set for a mailing list's copy: a member that cannot
	// receive it (disabled, mailbox full, mailbox path refused) is left
	// out and logged, and the others still receive it.
	Optional bool
	List     string // the list's address, for the log
}

// DeliverCopies delivers several versions of one message as one
// transaction, as Deliver does for one: body (the part of the message
// after each copy's header, at most maxBody bytes, else ErrTooLarge) is
// written once, with the first copy's header, to a file in the first
// mailbox's tmp/ (unnamed where the file system can: see UnnamedFS; else
// a temporary name there); every other copy is written beside it with
// its own header and the same body. Then every mailbox is locked, quotas are
// checked (checkQuota) with each copy's real size, and each copy is
// linked into its accounts' new/ directories; a failure undoes every
// link, except that an optional copy leaves out a member that cannot
// receive it. It returns, once every file and link is durable (files and
// new/ directories synced, or the file system synced whole: see
// SyncMethod), the number of mailboxes that received a copy
// (with no accounts at all: the body is read and nothing is written).
// The accounts of different copies must be distinct.
func (s *Store) DeliverCopies(ctx context.Context, copies []Copy, body io.Reader, maxBody int64, checkQuota bool) (delivered int, err error) {
	// Every mailbox is confined before anything is written anywhere. The
	// roots are resolved once for the whole delivery (again under the
	// locks only if their setting changed meanwhile).
	rootNames := mailcluster.MailboxRoots(s.dir.Setting)
	roots := s.resolveRoots(rootNames)
	var kept []Copy
	var firstDir Maildir
	for _, c := range copies {
		accs := make([]*mailcluster.Account, 0, len(c.Accounts))
		for _, a := range c.Accounts {
			md, err := s.mailboxDirIn(roots, a)
			if err != nil {
				if !c.Optional {
					return 0, err
				}
				s.skipped(c, a, "mailbox path refused")
				continue
			}
			if firstDir == "" {
				firstDir = md
			}
			accs = append(accs, a)
		}
		if len(accs) > 0 {
			c.Accounts = accs
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		// Nobody to deliver to (a list without members that can
		// receive): the message is still read, and refused when too big.
		n, err := io.Copy(io.Discard, io.LimitReader(body, max(maxBody, 0)+1))
		if err != nil {
			return 0, err
		}
		if n > maxBody {
			return 0, ErrTooLarge
		}
		return 0, nil
	}
	first := firstDir
	tmpDir := filepath.Join(string(first), "tmp")
	// On a file system synced whole (SyncAuto; see FileSystemSyncer) the
	// message file is not fsynced on its own: the deliveries waiting at
	// one time share one sync of the file system, after their links.
	failed := s.fsyncs.failures.Load()
	wfs, fsID, whole := s.wholeFS(string(first))
	// A mailbox's directories are made at its first delivery (when tmp/
	// or new/ is missing), not checked at every one.
	msg, err := s.createMessage(tmpDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := first.Init(); err != nil {
			return 0, tempFail(err)
		}
		msg, err = s.createMessage(tmpDir)
	}
	if err != nil {
		return 0, tempFail(err)
	}
	msgs := []*message{msg}
	defer func() {
		for _, m := range msgs {
			m.release()
		}
	}()
	n, werr, err := writeMessage(msg.f, kept[0].Header, body, max(maxBody, 0)+1)
	if werr != nil {
		return 0, tempFail(werr)
	}
	if err != nil {
		return 0, err // a read error of the client's data: mapped by the caller
	}
	if n > maxBody {
		return 0, ErrTooLarge
	}
	// A delivery of one copy reports its usage without waiting, once its
	// links are made (below), so that the report's commit overlaps the
	// directory syncs. A message that does not fit is refused here,
	// before anything else is written; the check under the locks still
	// catches the deliveries that race.
	ar, async := s.rep.(AsyncReporter)
	async = async && len(kept) == 1 && !kept[0].Optional
	// On a file system synced whole that also holds the reporter's
	// file, the report is written without a sync of its own: the
	// delivery's sync of the file system makes it durable.
	wr, writeReport := s.rep.(WrittenReporter)
	if writeReport {
		id, ok := wr.FileSystem()
		writeReport = async && whole && ok && id == fsID
	}
	if async && checkQuota {
		size := int64(len(kept[0].Header)) + n
		for _, a := range kept[0].Accounts {
			if s.OverQuota(s.current(a), size, 1) {
				return 0, &QuotaError{Address: a.Address()}
			}
		}
	}
	if !whole {
		if err := msg.f.Sync(); err != nil {
			return 0, tempFail(err)
		}
		if err := msg.written(); err != nil {
			return 0, tempFail(err)
		}
	}
	msg.size = int64(len(kept[0].Header)) + n
	sizes := []int64{msg.size}
	for _, c := range kept[1:] {
		m, err := s.writeCopy(tmpDir, c.Header, msg, int64(len(kept[0].Header)))
		if m != nil {
			msgs = append(msgs, m)
		}
		if err != nil {
			return 0, tempFail(err)
		}
		sizes = append(sizes, m.size)
	}

	// Lock every mailbox, in a fixed order so that deliveries cannot deadlock.
	var order []string
	for _, c := range kept {
		for _, a := range c.Accounts {
			order = append(order, a.Address())
		}
	}
	sort.Strings(order)
	lk := s.locker()
	var held []*Lock
	defer func() {
		for _, l := range held {
			_ = l.Unlock()
		}
	}()
	for i, addr := range order {
		if i > 0 && addr == order[i-1] {
			continue
		}
		l, err := lk.Lock(ctx, addr)
		if err != nil {
			if errors.Is(err, ErrLockBusy) {
				return 0, ErrBusy
			}
			return 0, tempFail(err)
		}
		held = append(held, l)
	}
	// Under the locks, read each account again: a mailbox moved (or an
	// account changed) while the message was being received is delivered
	// where the account is now.
	// The mailbox paths are confined again, closest to the links: a
	// symbolic link placed in a mailbox path while the message was being
	// received is refused all the same.
	if now := mailcluster.MailboxRoots(s.dir.Setting); !slices.Equal(now, rootNames) {
		roots = s.resolveRoots(now)
	}
	mds := make([][]Maildir, len(kept))
	accs := make([][]*mailcluster.Account, len(kept))
	for i, c := range kept {
		for _, a := range c.Accounts {
			if cur, err := s.dir.LookupAccount(a.Address()); err == nil {
				a = cur
			}
			if c.Optional && a.Disabled {
				s.skipped(c, a, "disabled")
				continue
			}
			if checkQuota && s.OverQuota(a, sizes[i], 1) {
				if c.Optional {
					s.skipped(c, a, "mailbox full")
					continue
				}
				return 0, &QuotaError{Address: a.Address()}
			}
			md, err := s.mailboxDirIn(roots, a)
			if err != nil {
				if c.Optional {
					s.skipped(c, a, "mailbox path refused")
					continue
				}
				return 0, err
			}
			mds[i] = append(mds[i], md)
			accs[i] = append(accs[i], a)
		}
	}
	var done, doneBy []string // the links made, and the address of each
	defer func() {
		if err != nil {
			for _, p := range done {
				os.Remove(p)
			}
		}
	}()
	var newDirs []string
	for i := range kept {
		name := uniqueName(sizes[i])
		for j, md := range mds[i] {
			dst := filepath.Join(string(md), "new", name)
			err := s.linkOrCopyMessage(msgs[i], dst, filepath.Join(string(md), "tmp"))
			if errors.Is(err, fs.ErrNotExist) {
				if err = md.Init(); err == nil {
					err = s.linkOrCopyMessage(msgs[i], dst, filepath.Join(string(md), "tmp"))
				}
			}
			if err != nil {
				// Name the directory at fault when one is (a file in
				// place of new/ or tmp/) rather than the file.
				if ierr := md.Init(); ierr != nil {
					err = ierr
				}
				return 0, tempFail(err)
			}
			done, doneBy = append(done, dst), append(doneBy, accs[i][j].Address())
			newDirs = append(newDirs, filepath.Join(string(md), "new"))
		}
	}
	// The links are made: the usage is reported (without waiting, for a
	// delivery of one copy) while the locks are held, so that the next
	// delivery's quota check counts this message; then the locks can go,
	// so that the next delivery into these mailboxes links its file while
	// this one waits for the directory syncs, which concurrent deliveries
	// share (group commit), and for the report's commit, which overlaps
	// them. Nothing is acknowledged before the syncs and the commit end;
	// a failed sync takes the links back and reports the usage back out.
	// The usage is reported only once the message is in new/, so that a
	// node killed before that does not count a message it never stored
	// (one killed after it counts a message stored, but not acknowledged,
	// until a recount).
	now := time.Now().UTC()
	var deltas []mailcluster.UsageDelta
	var reported <-chan error
	var notices []mailcluster.UsageDelta // the change of INBOX, once delivered
	if async {
		for _, a := range accs[0] {
			deltas = append(deltas, mailcluster.UsageDelta{Domain: a.Domain, Mailbox: a.Mailbox, Bytes: sizes[0], Messages: 1, At: now})
			notices = append(notices, mailcluster.UsageDelta{Domain: a.Domain, Mailbox: a.Mailbox, At: now, Folder: Inbox, Kind: mailcluster.MailDelivered})
		}
		if writeReport {
			ch := make(chan error, 1)
			ch <- wr.WriteReport(deltas...)
			reported = ch
		} else {
			reported = ar.ReportAsync(deltas...)
		}
	}
	for _, l := range held {
		_ = l.Unlock()
	}
	held = nil
	if !async {
		for i := range kept {
			for _, a := range accs[i] {
				deltas = append(deltas, mailcluster.UsageDelta{Domain: a.Domain, Mailbox: a.Mailbox, Bytes: sizes[i], Messages: 1, At: now,
					Folder: Inbox, Kind: mailcluster.MailDelivered})
			}
		}
		ch := make(chan error, 1)
		if len(deltas) > 0 {
			go func() { ch <- s.rep.Report(deltas...) }()
		} else {
			ch <- nil
		}
		reported = ch
	}
	var serr error
	if whole {
		serr = s.syncLinks(newDirs, first, msg, wfs, fsID, failed)
	} else {
		serr = s.syncDirs(newDirs)
	}
	rerr := <-reported
	if serr != nil {
		s.takeBack(done, doneBy)
		done = nil
		if len(deltas) > 0 && rerr == nil {
			s.report(reverse(deltas)...)
		}
		return 0, tempFail(serr)
	}
	if rerr != nil {
		// The mail is safely stored; only the usage count lags until a
		// recount, and other nodes see the change at their next rescan.
		s.log.Error("recording a change to mail", "address", deltas[0].Mailbox+"@"+deltas[0].Domain, "err", rerr)
	}
	for i := range kept {
		for _, md := range mds[i] {
			s.hub.Publish(string(md))
		}
	}
	if len(notices) > 0 && writeReport {
		// Not synced: the message is stored; a notice lost in a crash
		// only delays the other nodes' readers to their next look.
		if err := wr.WriteReport(notices...); err != nil {
			s.log.Error("recording a change to mail", "address", notices[0].Mailbox+"@"+notices[0].Domain, "err", err)
		}
	} else if len(notices) > 0 {
		// Not waited for: the message is stored; a notice lost in a
		// crash only delays the other nodes' readers to their next look.
		ch := ar.ReportAsync(notices...)
		go func() {
			if err := <-ch; err != nil {
				s.log.Error("recording a change to mail", "address", notices[0].Mailbox+"@"+notices[0].Domain, "err", err)
			}
		}()
	}
	return len(deltas), nil
}

// takeBack removes the messages of a delivery whose directory syncs failed
// after the locks were released (links, in new/, made for the addresses
// by): under each mailbox's lock in turn and by the message's key, so
// that a reader that moved one to cur/ meanwhile (a rename) does not keep
// it after the sender was told to try again. When a lock cannot be had
// the message is removed without it.
func (s *Store) takeBack(links, by []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, p := range links {
		md, key := filepath.Dir(filepath.Dir(p)), filepath.Base(p)
		remove := func() error {
			os.Remove(p)
			des, err := os.ReadDir(filepath.Join(md, "cur"))
			for _, de := range des {
				if strings.HasPrefix(de.Name(), key+":") {
					os.Remove(filepath.Join(md, "cur", de.Name()))
				}
			}
			return err
		}
		l, err := s.locker().Lock(ctx, by[i])
		if err != nil {
			s.log.Error("mailstore: taking back a failed delivery without the mailbox's lock", "address", by[i], "err", err)
			_ = remove()
			s.hub.Publish(md)
			continue
		}
		_ = remove()
		_ = l.Unlock()
		s.hub.Publish(md)
	}
}

// reverse returns the deltas that undo deltas (of a delivery that failed
// after they were reported).
func reverse(deltas []mailcluster.UsageDelta) []mailcluster.UsageDelta {
	back := make([]mailcluster.UsageDelta, len(deltas))
	now := time.Now().UTC()
	for i, d := range deltas {
		d.Bytes, d.Messages, d.At = -d.Bytes, -d.Messages, now
		if d.Folder != "" {
			d.Kind = mailcluster.MailExpunged
		}
		back[i] = d
	}
	return back
}

// messageBufs are the buffers of writeMessage.
var messageBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// writeMessage writes header and then at most limit bytes of body to w,
// through a pooled buffer, so that a message of up to 64 KiB takes one
// write. It returns the bytes of body read, and the error of a write
// (werr) or of a read of body (rerr).
func writeMessage(w io.Writer, header []byte, body io.Reader, limit int64) (n int64, werr, rerr error) {
	bp := messageBufs.Get().(*[]byte)
	defer messageBufs.Put(bp)
	buf := *bp
	fill := 0
	if len(header) < len(buf)/2 {
		fill = copy(buf, header)
	} else if _, err := w.Write(header); err != nil {
		return 0, err, nil
	}
	r := io.LimitReader(body, limit)
	for {
		m, err := io.ReadFull(r, buf[fill:])
		n += int64(m)
		fill += m
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return n, nil, err
		}
		if fill > 0 {
			if _, err := w.Write(buf[:fill]); err != nil {
				return n, err, nil
			}
			fill = 0
		}
		if err != nil {
			return n, nil, nil
		}
	}
}

// syncDirs syncs each directory once (in parallel when several), shared
// with concurrent deliveries.
func (s *Store) syncDirs(dirs []string) error {
	sort.Strings(dirs)
	dirs = slices.Compact(dirs)
	if len(dirs) == 1 {
		return s.syncs.Sync(dirs[0], s.fs.SyncDir)
	}
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.syncs.Sync(d, s.fs.SyncDir) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// syncLinks makes the links of a delivery whose message file (msg, in
// the mailbox first) was not fsynced durable: the file system w calls
// id, which holds first, is synced (shared with the deliveries waiting
// for it), then msg's writes are checked; the new/ directories
// (newDirs) on another file system (copies, each synced when written)
// are synced on their own. failed is the count of failed file-system
// syncs when the delivery began.
func (s *Store) syncLinks(newDirs []string, first Maildir, msg *message, w FileSystemSyncer, id, failed uint64) error {
	var others []string
	for _, d := range newDirs {
		if filepath.Dir(d) == string(first) {
			continue
		}
		if oid, whole, err := w.FileSystem(d); err == nil && whole && oid == id {
			continue
		}
		others = append(others, d)
	}
	if len(others) > 0 {
		if err := s.syncDirs(others); err != nil {
			return err
		}
	}
	if err := s.syncFileSystem(w, id, string(first), failed); err != nil {
		return err
	}
	if err := w.Written(msg.f); err != nil {
		return fmt.Errorf("mailstore: write the message file in %s: %w", first, err)
	}
	return nil
}

// skipped logs a list member left out of a delivery.
func (s *Store) skipped(c Copy, a *mailcluster.Account, reason string) {
	s.log.Warn("mailstore: list member skipped", "list", c.List, "member", a.Address(), "reason", reason)
}

// writeCopy writes header followed by the content of src from offset off
// to a new file in dir (unnamed where the file system can), synced, and
// returns it (also when a later step fails, so that the caller releases
// it).
func (s *Store) writeCopy(dir string, header []byte, src *message, off int64) (*message, error) {
	in, err := src.reader(off)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	m, err := s.createMessage(dir)
	if err != nil {
		return nil, err
	}
	_, err = m.f.Write(header)
	if err == nil {
		var k int64
		k, err = io.Copy(m.f, in)
		m.size = int64(len(header)) + k
	}
	if err == nil {
		err = m.f.Sync()
	}
	if cerr := m.written(); err == nil {
		err = cerr
	}
	return m, err
}

// linkOrCopy hard-links the file src to dst, or copies it across file
// systems, as linkOrCopyMessage does.
func (s *Store) linkOrCopy(src, dst, tmpDir string) error {
	return s.linkOrCopyMessage(&message{path: src}, dst, tmpDir)
}

// linkOrCopyMessage links src to dst (the same file for every
// recipient: an unnamed file gets its first name), or copies it across
// file systems (not when a directory is missing: fs.ErrNotExist is
// returned then): the copy is written to tmpDir (the recipient's tmp/),
// synced and renamed to dst, so that dst never names a partial file; a
// failed copy is removed.
func (s *Store) linkOrCopyMessage(src *message, dst, tmpDir string) error {
	err := s.link(src, dst)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return err // missing: the caller makes the directories
	}
	in, err := src.reader(0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := s.fs.CreateTemp(tmpDir, ".copy-*")
	if err != nil {
		return err
	}
	tmp := out.Name()
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// List returns one page of an account's messages in id (arrival) order and
// the cursor of the next page ("" on the last). Errors: EINVALID,
// EFORBIDDEN (the mailbox path is outside the mailbox roots), EUNAVAILABLE.
func (s *Store) List(a *mailcluster.Account, limit int, cursor string) ([]mailcluster.Message, string, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	md, err := s.MailboxDir(a)
	if err != nil {
		return nil, "", err
	}
	es, err := md.entries()
	if err != nil {
		return nil, "", &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The mailbox cannot be read.", Err: err}
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].id > cursor })
	out := []mailcluster.Message{}
	for ; i < len(es) && len(out) < limit; i++ {
		out = append(out, summary(es[i]))
	}
	next := ""
	if i < len(es) && len(out) > 0 {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Open returns a message's content and size. Errors: EINVALID, ENOTFOUND,
// EFORBIDDEN (the mailbox path is outside the mailbox roots).
func (s *Store) Open(a *mailcluster.Account, id string) (io.ReadCloser, int64, error) {
	md, err := s.MailboxDir(a)
	if err != nil {
		return nil, 0, err
	}
	p, err := md.find(id)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Message %s does not exist.", id)
		}
		return nil, 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The message cannot be read.", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The message cannot be read.", Err: err}
	}
	return f, st.Size(), nil
}

// Delete removes a message and reports the change. It is a change to mail,
// not to configuration, so it is allowed on every node.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN (the mailbox path is outside the
// mailbox roots), EUNAVAILABLE.
func (s *Store) Delete(ctx context.Context, a *mailcluster.Account, id string) error {
	md, err := s.MailboxDir(a)
	if err != nil {
		return err
	}
	if _, err := md.find(id); err != nil {
		return err
	}
	l, err := s.locker().Lock(ctx, a.Address())
	if err != nil {
		return &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The mailbox is busy; try again.", Err: err}
	}
	defer l.Unlock()
	p, err := md.find(id)
	if err != nil {
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Message %s does not exist.", id)
	}
	size := messageSize(id)
	if size < 0 {
		size = st.Size()
	}
	if err := os.Remove(p); err != nil {
		return &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The message cannot be deleted.", Err: err}
	}
	_ = syncDir(filepath.Dir(p))
	s.changed(a, Inbox, string(md), mailcluster.MailExpunged, -size, -1)
	return nil
}

// Recount counts an account's mail on disk under its lock and publishes
// the result as the account's usage (primary only).
// Errors: ENOTFOUND, EREADONLY, EFORBIDDEN (the mailbox path is outside the
// mailbox roots), EUNAVAILABLE.
func (s *Store) Recount(ctx context.Context, a *mailcluster.Account) (mailcluster.Usage, error) {
	md, err := s.MailboxDir(a)
	if err != nil {
		return mailcluster.Usage{}, err
	}
	l, err := s.locker().Lock(ctx, a.Address())
	if err != nil {
		return mailcluster.Usage{}, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The mailbox is busy; try again.", Err: err}
	}
	defer l.Unlock()
	at := time.Now().UTC()
	b, m, err := md.Count()
	if err != nil {
		return mailcluster.Usage{}, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The mailbox cannot be read.", Err: err}
	}
	u := mailcluster.Usage{Bytes: b, Messages: m, RecountedAt: at}
	if err := s.dir.SetUsage(ctx, a.Domain, a.Mailbox, u); err != nil {
		return mailcluster.Usage{}, err
	}
	return u, nil
}

// tempFail wraps a local failure (logged by the caller, never shown).
func tempFail(err error) error {
	return &LocalError{Err: err}
}

// NotifyFrozen delivers the thaw-token message to a frozen account's own
// mailbox (quota does not apply: the message must arrive). It implements
// mailcluster.Notifier. The token appears only in that message.
func (s *Store) NotifyFrozen(ctx context.Context, a *mailcluster.Account, token string, expires time.Time) error {
	host, _ := os.Hostname()
	msg := fmt.Sprintf("From: Mail system <postmaster@%s>\r\nTo: <%s>\r\nSubject: Your account was frozen\r\n"+
		"Date: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"Your account %s was frozen after too many failed logins, or by an administrator.\r\n"+
		"It still receives mail, but nobody can log in to it.\r\n\r\n"+
		"To thaw it yourself, send this single-use token before %s:\r\n\r\n    %s\r\n\r\n"+
		"with: POST /api/v1/screening/thaw {\"address\":\"%s\",\"token\":\"<token>\"}\r\n"+
		"on the management API, or ask an administrator. If you did not try to log in, change your password afterwards.\r\n",
		a.Domain, a.Address(), time.Now().Format(time.RFC1123Z), uniqueName(0), host,
		a.Address(), expires.UTC().Format(time.RFC1123), token, a.Address())
	header := fmt.Appendf(nil, "Return-Path: <>\r\n")
	return s.deliver(ctx, []*mailcluster.Account{a}, header, strings.NewReader(msg), 1<<20, false)
}
