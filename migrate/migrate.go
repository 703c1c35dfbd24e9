// Package migrate moves every account's Maildir from the current
// [Directories] MailboxRoot to a new root on the shared path, one mailbox
// at a time under the mailbox's lock file (mailstore.Locker), and changes
// the accounts and the setting through the primary's REST API (Primary,
// which *client.Client satisfies) so that the change replicates. It is
// the engine of the migrate-mailboxes command: the plan, the journal, the
// resumption of an interrupted run, the move itself and the checks of
// the roots. Progress is reported through the Progress interface.
//
// The order of the steps is what makes the move safe to interrupt and to
// run again: a message file is first placed under its new path (hard link,
// or a copy written under tmp/, synced and renamed), the directories are
// synced, the account's mailboxPath is changed, and only then is the old
// file removed. A journal under the new root records each account's old
// path before its mailboxPath changes, so a later run still finds
// leftovers of an account already moved.
//
// Only mailboxes are touched. An account is moved only when its mailbox
// path (symbolic links resolved) lies below the current root; one whose
// path leads anywhere else is skipped, reported, and nothing of it is
// read, moved or removed. Inside a mailbox only Maildir entries move:
// message files with Maildir names in new/ and cur/, Maildir++ folders and
// the Maildir metadata files. Everything else (other names, symbolic
// links, devices) stays where it is and is reported, and an old directory
// is removed only when it is empty. While a run is in progress,
// [Directories] MailboxRootNext names the new root, so that the nodes
// accept mailbox paths under either root.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailcluster"
	"mailcluster/mailstore"
)

// DefaultSettle is how long a run waits, when Options.Settle is zero,
// after the last change before the final sweep, so that every node has
// applied the new paths.
const DefaultSettle = 2 * time.Second

// ErrInterrupted is matched (errors.Is) by the error of a run whose
// context ended: what was done stays done, nothing is lost, and running
// again finishes the move.
var ErrInterrupted = errors.New("migrate: interrupted")

// errInterrupted ends a run internally (and is the reason in the line of
// the account that stopped); Run reports it as an interruptedError.
var errInterrupted = errors.New("interrupted")

// interruptedError is the error of an interrupted run: it names the
// messages moved so far and matches ErrInterrupted.
type interruptedError struct{ messages int64 }

func (e *interruptedError) Error() string {
	return fmt.Sprintf("migrate: interrupted after %s; nothing is lost: run the same command again to finish the move",
		plural(e.messages, "message"))
}

func (e *interruptedError) Is(target error) bool { return target == ErrInterrupted }

// Options are the optional settings of a Migrator. The zero value runs
// with no output and waits DefaultSettle before the final sweep.
type Options struct {
	// Stdout receives the summary ("moved N accounts, ..."); nil: discarded.
	Stdout io.Writer
	// Stderr receives the plan, one line per skipped account, notes on
	// what was left in place and the failures of single accounts; nil:
	// discarded.
	Stderr io.Writer
	// Progress returns the display of the main pass, told the number of
	// messages counted up front; nil: a LineProgress on Stderr. The final
	// sweep always reports on Stderr one line per account that moved.
	Progress func(total int64) Progress
	// Settle is the wait after the root is switched and before the final
	// sweep; zero: DefaultSettle.
	Settle time.Duration
}

// Migrator is one run of the mailbox move to one new root. Make a new
// Migrator for every run.
type Migrator struct {
	api         Primary
	to          string // the new root, absolute and clean
	stdout      io.Writer
	stderr      io.Writer
	newProgress func(total int64) Progress
	settle      time.Duration // wait before the final sweep
	noLink      bool          // always copy, never hard-link (tests)

	oldRoot  string // [Directories] MailboxRoot when the run started
	template string // [NewAccounts] MailboxPath
	locker   *mailstore.Locker
	journal  *journal
	boxes    mailboxSet      // every account's mailbox directory, resolved
	noted    map[string]bool // old maildirs whose leftovers were reported
	stats    migrateStats
}

// New returns a run that moves the mailboxes to newRoot, an absolute path
// (cleaned here), talking to the primary through api.
func New(api Primary, newRoot string, opts Options) *Migrator {
	m := &Migrator{api: api, to: filepath.Clean(newRoot), stdout: opts.Stdout, stderr: opts.Stderr,
		newProgress: opts.Progress, settle: opts.Settle}
	if m.stdout == nil {
		m.stdout = io.Discard
	}
	if m.stderr == nil {
		m.stderr = io.Discard
	}
	if m.newProgress == nil {
		m.newProgress = func(int64) Progress { return NewLineProgress(m.stderr) }
	}
	if m.settle == 0 {
		m.settle = DefaultSettle
	}
	return m
}

// Run moves every mailbox below the current root to the new root and
// then switches [Directories] MailboxRoot (and a [NewAccounts]
// MailboxPath that names the old root) to it. It refuses, before
// changing anything, a node that is not the primary, a new root that is
// the current one under another name or lies inside it or around it,
// another move that has not finished, and a second run at the same time.
// Accounts whose mailbox path lies outside the root are skipped and make
// Run fail once everything else is done. When ctx ends, Run stops after
// the current file with an error matching ErrInterrupted. Errors start
// with "migrate: ".
func (m *Migrator) Run(ctx context.Context) error {
	err := m.run(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errInterrupted):
		return &interruptedError{messages: m.stats.messages}
	default:
		return fmt.Errorf("migrate: %w", err)
	}
}

type migrateStats struct {
	accounts map[string]bool   // accounts whose mail or path was moved
	skipped  map[string]string // accounts left alone (path outside the roots) -> their path
	messages int64             // message files now only in the new place
	bytes    int64             // their size
	present  int64             // of them, already in the new place from an earlier run
	late     int64             // of them, moved by the final sweep
	leftDirs map[string]bool   // old maildirs not removed (other files in them)
}

// skipReason is how a skipped account is reported.
const skipReason = "skipped: mailbox path outside the mailbox root"

func (m *Migrator) run(ctx context.Context) error {
	start := time.Now()
	if !filepath.IsAbs(m.to) || m.to == "/" {
		return fmt.Errorf("the new root %q must be an absolute path other than the file system root", m.to)
	}
	if err := m.checkPrimary(ctx); err != nil {
		return err
	}
	settings, err := m.readSettings(ctx)
	if err != nil {
		return err
	}
	m.oldRoot = filepath.Clean(settingOr(settings, mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, mailcluster.DefaultMailboxRoot))
	next := settings[mailcluster.SectionDirectories][mailcluster.KeyMailboxRootNext]
	m.template = settingOr(settings, mailcluster.SectionNewAccounts, mailcluster.KeyMailboxPath, mailcluster.DefaultMailboxPathTemplate)
	lockDir := settingOr(settings, mailcluster.SectionDirectories, mailcluster.KeyLockFiles, filepath.Join(os.TempDir(), "mailcluster-locks"))
	m.locker = &mailstore.Locker{Dir: lockDir, Wait: 30 * time.Second}
	if err := checkRoots(m.oldRoot, m.to); err != nil {
		return err
	}
	if next != "" && filepath.Clean(next) != m.to && filepath.Clean(next) != m.oldRoot {
		return fmt.Errorf("a move to %s was started and has not finished ([Directories] %s = %s); run migrate-mailboxes --to %s first",
			next, mailcluster.KeyMailboxRootNext, next, next)
	}
	// One run at a time: the journal and the plan are this run's.
	held, err := (&mailstore.Locker{Dir: lockDir, Wait: time.Second}).Lock(ctx, "migrate-mailboxes")
	if err != nil {
		if errors.Is(err, mailstore.ErrLockBusy) {
			return fmt.Errorf("another migrate-mailboxes is running (its lock file is in %s)", lockDir)
		}
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	defer held.Unlock()
	if m.journal, err = openJournal(m.to); err != nil {
		return err
	}
	accounts, err := m.listAccounts(ctx)
	if err != nil {
		return err
	}
	newTemplate, templateChanged := rewriteTemplate(m.template, m.oldRoot, m.to)
	moves, err := planMoves(accounts, m.oldRoot, m.to, m.journal.entries)
	if err != nil {
		return err
	}
	m.boxes = mailboxDirs(moves)
	wctx := context.WithoutCancel(ctx)
	if m.oldRoot == m.to && len(m.journal.entries) == 0 {
		m.reportSkipped(moves)
		if next != "" {
			// A run that switched the root was stopped before it cleared
			// the next root.
			if err := m.deleteSetting(wctx, mailcluster.SectionDirectories, mailcluster.KeyMailboxRootNext); err != nil {
				return err
			}
		}
		fmt.Fprintf(m.stdout, "nothing to do: the mailbox root is already %s and every account's mailbox below it\n", m.to)
		return m.skippedError()
	}
	if m.oldRoot != m.to && filepath.Clean(next) != m.to {
		// From now on the nodes accept mailbox paths under either root,
		// so that an account can be switched to its new path.
		if err := m.putSetting(wctx, mailcluster.SectionDirectories, mailcluster.KeyMailboxRootNext, m.to); err != nil {
			return err
		}
		next = m.to
	}
	if err := m.moveAll(ctx, moves); err != nil {
		return err
	}

	// Every account under the old root is moved: switch the root (and a
	// template that names the old root), then sweep up what nodes with an
	// older snapshot may still have delivered to an old path. Skipped
	// accounts do not hold the switch back: their paths lie outside both
	// roots, so the nodes refuse them either way, and nothing the switch
	// does changes their files. The run still ends with an error that
	// names them.
	if templateChanged {
		if err := m.putSetting(wctx, mailcluster.SectionNewAccounts, mailcluster.KeyMailboxPath, newTemplate); err != nil {
			return err
		}
	}
	if m.oldRoot != m.to {
		if err := m.putSetting(wctx, mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, m.to); err != nil {
			return err
		}
	}
	if next != "" {
		if err := m.deleteSetting(wctx, mailcluster.SectionDirectories, mailcluster.KeyMailboxRootNext); err != nil {
			return err
		}
	}
	fmt.Fprintf(m.stderr, "[Directories] MailboxRoot is now %s; waiting %s for every node to apply it, then sweeping the old paths\n", m.to, m.settle)
	select {
	case <-ctx.Done():
		return errInterrupted
	case <-time.After(m.settle):
	}
	if err := m.sweep(ctx); err != nil {
		return err
	}
	if err := m.journal.remove(); err != nil {
		return err
	}
	m.printSummary(time.Since(start))
	return m.skippedError()
}

// reportSkipped reports, once each, the accounts whose path is outside
// the roots.
func (m *Migrator) reportSkipped(moves []mailboxMove) {
	for _, mv := range moves {
		if !mv.skipped {
			continue
		}
		if _, ok := m.stats.skipped[mv.acct.Address]; ok {
			continue
		}
		if m.stats.skipped == nil {
			m.stats.skipped = map[string]string{}
		}
		m.stats.skipped[mv.acct.Address] = mv.acct.MailboxPath
		fmt.Fprintf(m.stderr, "%s: %s (%s): nothing of it was touched\n", mv.acct.Address, skipReason, mv.acct.MailboxPath)
	}
	for _, mv := range moves {
		if mv.ignored != "" {
			fmt.Fprintf(m.stderr, "%s: the journal names %s as its old path, which is outside the mailbox root: left alone\n", mv.acct.Address, mv.ignored)
		}
	}
}

// skippedError is the run's result when accounts were skipped.
func (m *Migrator) skippedError() error {
	if len(m.stats.skipped) == 0 {
		return nil
	}
	return fmt.Errorf("%s skipped (mailbox path outside the mailbox root, listed above) and nothing of them touched: "+
		"a global administrator must set their mailboxPath to a directory under %s (moving genuine mail there by hand)",
		plural(int64(len(m.stats.skipped)), "account"), m.to)
}

// moveAll moves every planned mailbox and reports the accounts that failed.
func (m *Migrator) moveAll(ctx context.Context, moves []mailboxMove) error {
	m.reportSkipped(moves)
	var total, accounts int64
	counted := make([]int, len(moves))
	for i, mv := range moves {
		if mv.skipped {
			continue
		}
		accounts++
		if mv.from == "" {
			continue
		}
		files, _, err := listMaildir(mv.from, m.boxes)
		if err != nil {
			return err
		}
		counted[i] = len(files)
		total += int64(len(files))
	}
	if err := os.MkdirAll(m.to, 0o750); err != nil {
		return fmt.Errorf("create the new root: %w", err)
	}
	fmt.Fprintf(m.stderr, "moving %s (%s) from %s to %s\n", plural(accounts, "account"), plural(total, "message"), m.oldRoot, m.to)
	prog := m.newProgress(total)
	var failed, notes []string
	for i, mv := range moves {
		if mv.skipped {
			continue
		}
		if ctx.Err() != nil {
			prog.Done()
			m.printNotes(notes)
			return errInterrupted
		}
		res, err := m.moveMailbox(ctx, mv, prog, counted[i])
		prog.AccountDone(newAccountReport(mv, res, err))
		notes = append(notes, m.leftNote(mv, res)...)
		if errors.Is(err, errInterrupted) || errors.As(err, new(fatalError)) {
			prog.Done()
			m.printNotes(notes)
			return err
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", mv.acct.Address, err))
		}
	}
	prog.Done()
	m.printNotes(notes)
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(m.stderr, "error: %s\n", f)
		}
		return fmt.Errorf("%d of %d accounts could not be moved (see above); MailboxRoot is still %s: fix the cause and run the same command again",
			len(failed), accounts, m.oldRoot)
	}
	return nil
}

// leftNote reports, once per directory, what stayed in an old maildir
// because it is no part of a Maildir.
func (m *Migrator) leftNote(mv mailboxMove, res accountResult) []string {
	if len(res.left) == 0 || m.noted[mv.from] {
		return nil
	}
	if m.noted == nil {
		m.noted = map[string]bool{}
	}
	m.noted[mv.from] = true
	const show = 20
	list := res.left
	more := ""
	if len(list) > show {
		more = fmt.Sprintf(" and %d more", len(list)-show)
		list = list[:show]
	}
	return []string{fmt.Sprintf("%s: left in %s (not Maildir entries): %s%s", mv.acct.Address, mv.from, strings.Join(list, ", "), more)}
}

func (m *Migrator) printNotes(notes []string) {
	for _, n := range notes {
		fmt.Fprintf(m.stderr, "note: %s\n", n)
	}
}

// sweep lists the accounts again and moves anything found in an old path:
// mail delivered by a node whose snapshot did not have the new path yet,
// and accounts created meanwhile under the old root.
func (m *Migrator) sweep(ctx context.Context) error {
	accounts, err := m.listAccounts(ctx)
	if err != nil {
		return err
	}
	moves, err := planMoves(accounts, m.oldRoot, m.to, m.journal.entries)
	if err != nil {
		return err
	}
	m.boxes = mailboxDirs(moves)
	m.reportSkipped(moves)
	prog := &LineProgress{w: m.stderr, quiet: true}
	var notes []string
	defer func() { m.printNotes(notes) }()
	for _, mv := range moves {
		if mv.skipped {
			continue
		}
		if mv.acct.MailboxPath == mv.to {
			// Already switched: only files that arrived in the old place
			// since are left to move.
			if !exists(mv.from) {
				continue
			}
			if files, _, err := listMaildir(mv.from, m.boxes); err == nil && len(files) == 0 {
				continue
			}
		}
		if ctx.Err() != nil {
			return errInterrupted
		}
		before := m.stats.messages
		res, err := m.moveMailbox(ctx, mv, prog, 0)
		m.stats.late += m.stats.messages - before
		prog.AccountDone(newAccountReport(mv, res, err))
		notes = append(notes, m.leftNote(mv, res)...)
		if err != nil {
			return fmt.Errorf("final sweep of %s: %w", mv.acct.Address, err)
		}
	}
	return nil
}

func (m *Migrator) printSummary(took time.Duration) {
	from := m.oldRoot
	if from == m.to {
		from = "the old paths"
	}
	fmt.Fprintf(m.stdout, "moved %s, %s (%s) from %s to %s in %s\n", plural(int64(len(m.stats.accounts)), "account"),
		plural(m.stats.messages, "message"), formatBytes(m.stats.bytes), from, m.to, took.Round(10*time.Millisecond))
	if m.stats.present > 0 {
		fmt.Fprintf(m.stdout, "%d of them were already in the new place from an earlier run\n", m.stats.present)
	}
	if m.stats.late > 0 {
		verb := "were"
		if m.stats.late == 1 {
			verb = "was"
		}
		fmt.Fprintf(m.stdout, "%s delivered to an old path during the move %s moved by the final sweep\n", plural(m.stats.late, "message"), verb)
	}
	if n := len(m.stats.skipped); n > 0 {
		fmt.Fprintf(m.stdout, "%s %s\n", plural(int64(n), "account"), skipReason)
	}
	if n := len(m.stats.leftDirs); n > 0 {
		fmt.Fprintf(m.stdout, "%s left in place: still holding files that are not Maildir messages (listed above) or files under tmp/\n",
			plural(int64(n), "old maildir"))
	}
	fmt.Fprintf(m.stdout, "[Directories] MailboxRoot = %s\n", m.to)
}

// fatalError is a failure that ends the run at once (the API refused a
// change); other failures of one account let the others go on.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// accountResult is what moving one mailbox did.
type accountResult struct {
	moved, present int64 // message files moved; of them already in place
	bytes          int64
	patched        bool     // the account's mailboxPath was changed
	leftDir        bool     // the old maildir still exists (other files in it)
	left           []string // entries of the old maildir that are not moved
}

// moveMailbox moves one account's mail under its lock: place every message
// in the new path, sync, change the account's path, remove the old files.
func (m *Migrator) moveMailbox(ctx context.Context, mv mailboxMove, prog Progress, counted int) (res accountResult, err error) {
	if mv.skipped {
		return res, fmt.Errorf("%s", skipReason)
	}
	prog.Account(mv.acct.Address)
	lk, err := m.locker.Lock(ctx, mv.acct.Address)
	if err != nil {
		if ctx.Err() != nil {
			return res, errInterrupted
		}
		return res, fmt.Errorf("lock the mailbox: %w", err)
	}
	defer func() {
		if uerr := lk.Unlock(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	var files []msgFile
	if mv.from != "" {
		// Check the old place again under the lock: a symbolic link put
		// there since the plan must not lead the move elsewhere.
		if p, _ := confined(mv.from, mv.root); p != mv.from {
			return res, fmt.Errorf("%s no longer lies below %s: left alone", mv.from, mv.root)
		}
		if files, res.left, err = listMaildir(mv.from, m.boxes); err != nil {
			return res, err
		}
	}
	if len(files) > counted {
		prog.Grow(int64(len(files) - counted))
	}
	var dirs []string
	if len(files) > 0 || mv.acct.MailboxPath != mv.to {
		if err := makeMaildir(mv.to, m.to); err != nil {
			return res, err
		}
		if dirs, err = makeFolders(mv.to, files); err != nil {
			return res, err
		}
	}
	for _, f := range files {
		if ctx.Err() != nil {
			return res, errInterrupted
		}
		wrote, err := placeMessage(mv.from, mv.to, f, !m.noLink)
		if err != nil {
			return res, err
		}
		if !wrote && f.message() {
			res.present++
		}
		prog.Message()
	}
	if len(files) > 0 {
		for _, d := range dirs {
			if err := mailstore.SyncDir(d); err != nil {
				return res, err
			}
		}
	}
	if mv.acct.MailboxPath != mv.to {
		if err := m.journal.record(mv.acct.Address, mv.from, mv.to, mv.root); err != nil {
			return res, fatalError{err}
		}
		if err := m.patchPath(context.WithoutCancel(ctx), mv.acct, mv.to); err != nil {
			return res, fatalError{err}
		}
		res.patched = true
	}
	// The account now reads its mail from the new path, where every file
	// is: the old copies can go.
	for _, f := range files {
		if ctx.Err() != nil {
			m.count(mv.acct.Address, res)
			return res, errInterrupted
		}
		if err := removeMoved(mv.from, mv.to, f); err != nil {
			m.count(mv.acct.Address, res)
			return res, err
		}
		if f.message() {
			res.moved++
			res.bytes += f.size
		}
	}
	m.count(mv.acct.Address, res)
	if mv.from != "" {
		for _, d := range fileDirs(mv.from, files) {
			_ = mailstore.SyncDir(d)
		}
		stop := filepath.Dir(mv.from)
		if _, ok := relUnder(mv.from, mv.root); ok && mv.root != "" {
			stop = mv.root
		}
		res.leftDir = !removeEmptyMaildir(mv.from, stop, folders(files)...)
		if res.leftDir {
			if m.stats.leftDirs == nil {
				m.stats.leftDirs = map[string]bool{}
			}
			m.stats.leftDirs[mv.from] = true
		}
	}
	return res, nil
}

func (m *Migrator) count(address string, res accountResult) {
	if res.moved > 0 || res.patched {
		if m.stats.accounts == nil {
			m.stats.accounts = map[string]bool{}
		}
		m.stats.accounts[address] = true
	}
	m.stats.messages += res.moved
	m.stats.bytes += res.bytes
	m.stats.present += min(res.present, res.moved)
}
