package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mailcluster"
	"mailcluster/mailsvc"
)

// migrate-mailboxes moves every account's Maildir from the current
// [Directories] MailboxRoot to a new root on the shared path, one mailbox at
// a time under the mailbox's lock file, and changes the accounts and the
// setting through the primary's REST API so that the change replicates.
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

// journalName is the file under the new root that records, for each
// account whose mailboxPath was changed, where its mail was before.
const journalName = ".mailcluster-migrate.jsonl"

// settleDelay is how long the command waits after the last change before
// the final sweep, so that every node has applied the new paths.
const settleDelay = 2 * time.Second

// errInterrupted ends a run stopped by SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

func newMigrateCommand(stdout, stderr io.Writer) *cobra.Command {
	var to, base, user string
	cmd := &cobra.Command{
		Use:   "migrate-mailboxes --to NEWROOT",
		Short: "Move every mailbox to a new root directory on the shared path (through the primary)",
		Long: "migrate-mailboxes moves every account's mailbox from the current [Directories] MailboxRoot to\n" +
			"NEWROOT and then sets MailboxRoot to NEWROOT. Run it on a machine that sees the shared mailbox\n" +
			"path and the lock-file directory under the same names as the nodes; it talks to the primary's\n" +
			"REST API (--url) as --user, with the password from MAILCLUSTER_ADMIN_PASSWORD.\n\n" +
			"Each mailbox is moved under its lock file: messages are placed in the new path (a complete,\n" +
			"synced file under its real name), the account's mailboxPath is changed through the API, and\n" +
			"only then are the old files removed. Ctrl-C stops after the current file; running the same\n" +
			"command again finishes the move without losing or duplicating a message.\n\n" +
			"Only mailboxes below the current root are moved, and of them only Maildir entries (messages in\n" +
			"new/ and cur/, Maildir++ folders, maildirsize, maildirfolder, subscriptions); other files and\n" +
			"symbolic links stay where they are and are listed. An account whose mailbox path leads outside\n" +
			"the root is skipped and listed, and the command then exits with status 1. While the move runs,\n" +
			"[Directories] MailboxRootNext is NEWROOT, so that the nodes accept paths under either root.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("migrate-mailboxes takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			newRoot, err := checkNewRoot(to)
			if err != nil {
				return err
			}
			c, err := newAPIClient(base, user)
			if err != nil {
				return fmt.Errorf("migrate-mailboxes: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				// After the first signal a second one ends the process at once.
				<-ctx.Done()
				stop()
			}()
			m := &migrator{api: c, to: newRoot, stdout: stdout, stderr: stderr, tty: isTerminal(stderr), settle: settleDelay}
			if err := m.run(ctx); err != nil {
				if errors.Is(err, errInterrupted) {
					return fmt.Errorf("migrate-mailboxes: interrupted after %s; nothing is lost: "+
						"run the same command again to finish the move", plural(m.stats.messages, "message"))
				}
				return fmt.Errorf("migrate-mailboxes: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "new mailbox root: an absolute path on the shared storage (required)")
	cmd.Flags().StringVar(&base, "url", "http://127.0.0.1:8080", "base URL of the primary's HTTP API")
	cmd.Flags().StringVar(&user, "user", "admin@localhost", "global administrator's full address")
	return cmd
}

// checkNewRoot validates --to and returns it cleaned.
func checkNewRoot(to string) (string, error) {
	if to == "" {
		return "", usagef("migrate-mailboxes: --to NEWROOT is required")
	}
	if !filepath.IsAbs(to) {
		return "", usagef("migrate-mailboxes: --to %q must be an absolute path", to)
	}
	clean := filepath.Clean(to)
	if clean == "/" {
		return "", usagef("migrate-mailboxes: --to %q: the file system root cannot be the mailbox root", to)
	}
	if err := mailcluster.ValidateSetting(mailcluster.MainSettingsFile, mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, clean); err != nil {
		return "", usagef("migrate-mailboxes: --to %q: %s", to, mailcluster.ErrorMessage(err))
	}
	return clean, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// migrator is one run of migrate-mailboxes.
type migrator struct {
	api    *apiClient
	to     string // the new root, absolute and clean
	stdout io.Writer
	stderr io.Writer
	tty    bool          // stderr is a terminal: show a progress bar
	settle time.Duration // wait before the final sweep
	noLink bool          // always copy, never hard-link (tests)

	oldRoot  string // [Directories] MailboxRoot when the run started
	template string // [NewAccounts] MailboxPath
	locker   *mailsvc.Locker
	journal  *journal
	boxes    mailboxSet      // every account's mailbox directory, resolved
	noted    map[string]bool // old maildirs whose leftovers were reported
	stats    migrateStats
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

// migrateAccount is what the command needs of an account.
type migrateAccount struct {
	Address     string `json:"address"`
	Domain      string `json:"domain"`
	Mailbox     string `json:"mailbox"`
	MailboxPath string `json:"mailboxPath"`
}

// mailboxMove is the plan for one account.
type mailboxMove struct {
	acct    migrateAccount
	from    string // the maildir to empty, symbolic links resolved ("" when there is none)
	root    string // the root from lies below, resolved
	to      string // the mailboxPath the account ends up with
	skipped bool   // the account's path is outside both roots: nothing of it is touched
	ignored string // an old path from the journal that is outside the old root: left alone
}

// skipReason is how a skipped account is reported.
const skipReason = "skipped: mailbox path outside the mailbox root"

func (m *migrator) run(ctx context.Context) error {
	start := time.Now()
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
	m.locker = &mailsvc.Locker{Dir: lockDir, Wait: 30 * time.Second}
	if err := checkRoots(m.oldRoot, m.to); err != nil {
		return err
	}
	if next != "" && filepath.Clean(next) != m.to && filepath.Clean(next) != m.oldRoot {
		return fmt.Errorf("a move to %s was started and has not finished ([Directories] %s = %s); run migrate-mailboxes --to %s first",
			next, mailcluster.KeyMailboxRootNext, next, next)
	}
	// One run at a time: the journal and the plan are this run's.
	held, err := (&mailsvc.Locker{Dir: lockDir, Wait: time.Second}).Lock(ctx, "migrate-mailboxes")
	if err != nil {
		if errors.Is(err, mailsvc.ErrLockBusy) {
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
func (m *migrator) reportSkipped(moves []mailboxMove) {
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
func (m *migrator) skippedError() error {
	if len(m.stats.skipped) == 0 {
		return nil
	}
	return fmt.Errorf("%s skipped (mailbox path outside the mailbox root, listed above) and nothing of them touched: "+
		"a global administrator must set their mailboxPath to a directory under %s (moving genuine mail there by hand)",
		plural(int64(len(m.stats.skipped)), "account"), m.to)
}

// moveAll moves every planned mailbox and reports the accounts that failed.
func (m *migrator) moveAll(ctx context.Context, moves []mailboxMove) error {
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
			prog.done()
			m.printNotes(notes)
			return errInterrupted
		}
		res, err := m.moveMailbox(ctx, mv, prog, counted[i])
		prog.accountDone(mv, res, err)
		notes = append(notes, m.leftNote(mv, res)...)
		if errors.Is(err, errInterrupted) || errors.As(err, new(fatalError)) {
			prog.done()
			m.printNotes(notes)
			return err
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", mv.acct.Address, err))
		}
	}
	prog.done()
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
func (m *migrator) leftNote(mv mailboxMove, res accountResult) []string {
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

func (m *migrator) printNotes(notes []string) {
	for _, n := range notes {
		fmt.Fprintf(m.stderr, "note: %s\n", n)
	}
}

// sweep lists the accounts again and moves anything found in an old path:
// mail delivered by a node whose snapshot did not have the new path yet,
// and accounts created meanwhile under the old root.
func (m *migrator) sweep(ctx context.Context) error {
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
	prog := &lineProgress{w: m.stderr, quiet: true}
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
		prog.accountDone(mv, res, err)
		notes = append(notes, m.leftNote(mv, res)...)
		if err != nil {
			return fmt.Errorf("final sweep of %s: %w", mv.acct.Address, err)
		}
	}
	return nil
}

func (m *migrator) printSummary(took time.Duration) {
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
func (m *migrator) moveMailbox(ctx context.Context, mv mailboxMove, prog progress, counted int) (res accountResult, err error) {
	if mv.skipped {
		return res, fmt.Errorf("%s", skipReason)
	}
	prog.account(mv.acct.Address)
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
		prog.grow(int64(len(files) - counted))
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
		prog.message()
	}
	if len(files) > 0 {
		for _, d := range dirs {
			if err := syncDir(d); err != nil {
				return res, fmt.Errorf("sync %s: %w", d, err)
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
			_ = syncDir(d)
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

func (m *migrator) count(address string, res accountResult) {
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

// --- REST API ---

func (m *migrator) checkPrimary(ctx context.Context) error {
	var n mailcluster.NodeInfo
	if err := m.api.do(ctx, "GET", "/api/v1/node", nil, &n); err != nil {
		return err
	}
	if n.Role == mailcluster.RolePrimary {
		return nil
	}
	if n.Primary != nil && n.Primary.APIURL != "" {
		return fmt.Errorf("node %s at %s is %s, not the primary: the primary is %s; run again with --url %s",
			n.Name, m.api.base, n.Role, n.Primary.Name, n.Primary.APIURL)
	}
	return fmt.Errorf("node %s at %s is %s and no primary is known; wait for one to be elected and run again with --url set to it",
		n.Name, m.api.base, n.Role)
}

func (m *migrator) readSettings(ctx context.Context) (mailcluster.Sections, error) {
	var f mailcluster.SettingsFile
	if err := m.api.do(ctx, "GET", "/api/v1/settings/"+mailcluster.MainSettingsFile, nil, &f); err != nil {
		return nil, fmt.Errorf("read the server settings: %w", err)
	}
	return f.Sections, nil
}

func settingOr(s mailcluster.Sections, section, key, def string) string {
	if v := s[section][key]; v != "" {
		return v
	}
	return def
}

func (m *migrator) putSetting(ctx context.Context, section, key, value string) error {
	path := "/api/v1/settings/" + mailcluster.MainSettingsFile + "/" + section + "/" + key
	if err := m.api.do(ctx, "PUT", path, map[string]string{"value": value}, nil); err != nil {
		return fmt.Errorf("set [%s] %s: %w", section, key, err)
	}
	return nil
}

// deleteSetting removes a key; one that is not set is no error.
func (m *migrator) deleteSetting(ctx context.Context, section, key string) error {
	path := "/api/v1/settings/" + mailcluster.MainSettingsFile + "/" + section + "/" + key
	err := m.api.do(ctx, "DELETE", path, nil, nil)
	if err == nil {
		return nil
	}
	if settings, rerr := m.readSettings(ctx); rerr == nil {
		if _, ok := settings[section][key]; !ok {
			return nil
		}
	}
	return fmt.Errorf("remove [%s] %s: %w", section, key, err)
}

func (m *migrator) patchPath(ctx context.Context, a migrateAccount, path string) error {
	p := "/api/v1/domains/" + url.PathEscape(a.Domain) + "/accounts/" + url.PathEscape(a.Mailbox)
	if err := m.api.do(ctx, "PATCH", p, map[string]string{"mailboxPath": path}, nil); err != nil {
		return fmt.Errorf("change the mailbox path of %s: %w", a.Address, err)
	}
	return nil
}

// listAccounts returns every account of every domain, by address.
func (m *migrator) listAccounts(ctx context.Context) ([]migrateAccount, error) {
	var ds struct{ Domains []struct{ Name string } }
	if err := m.api.do(ctx, "GET", "/api/v1/domains", nil, &ds); err != nil {
		return nil, err
	}
	var out []migrateAccount
	for _, d := range ds.Domains {
		cursor := ""
		for {
			var page struct {
				Accounts   []migrateAccount
				NextCursor string
			}
			path := "/api/v1/domains/" + url.PathEscape(d.Name) + "/accounts?limit=1000&cursor=" + url.QueryEscape(cursor)
			if err := m.api.do(ctx, "GET", path, nil, &page); err != nil {
				return nil, err
			}
			out = append(out, page.Accounts...)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// --- plans and paths ---

// relUnder returns the part of path below root ("/d/m/" for "/r/d/m/"
// under "/r", "" for root itself) and whether path is root or lies under it.
// A trailing slash of path is kept.
func relUnder(path, root string) (string, bool) {
	if !filepath.IsAbs(path) || !filepath.IsAbs(root) {
		return "", false
	}
	p, r := filepath.Clean(path), filepath.Clean(root)
	var rel string
	switch {
	case p == r:
	case r == "/":
		rel = p
	case strings.HasPrefix(p, r+"/"):
		rel = p[len(r):]
	default:
		return "", false
	}
	if strings.HasSuffix(path, "/") && p != "/" {
		rel += "/"
	}
	return rel, true
}

// rewriteTemplate replaces an old root hard-coded at the start of a
// new-account template; a template that uses $MAILBOXROOT$ is kept.
func rewriteTemplate(tmpl, oldRoot, newRoot string) (string, bool) {
	if oldRoot == newRoot {
		return tmpl, false
	}
	if rel, ok := relUnder(tmpl, oldRoot); ok {
		return newRoot + rel, true
	}
	return tmpl, false
}

// checkRoots refuses a new root that is the current root under another
// name, lies inside it, contains it, or is the file system root, with
// symbolic links resolved. Nothing has changed when it refuses.
func checkRoots(oldRoot, newRoot string) error {
	if oldRoot == newRoot {
		return nil
	}
	if _, ok := relUnder(newRoot, oldRoot); ok {
		return fmt.Errorf("the new root %s lies inside the current root %s; choose a directory outside it", newRoot, oldRoot)
	}
	if _, ok := relUnder(oldRoot, newRoot); ok {
		return fmt.Errorf("the current root %s lies inside the new root %s; choose a directory that does not contain it", oldRoot, newRoot)
	}
	ro, err := resolvePath(oldRoot)
	if err != nil {
		return fmt.Errorf("the current root %s cannot be resolved: %w", oldRoot, err)
	}
	rn, err := resolvePath(newRoot)
	if err != nil {
		return fmt.Errorf("the new root %s cannot be resolved: %w", newRoot, err)
	}
	switch {
	case rn == "/":
		return fmt.Errorf("the new root %s leads to the file system root; choose another directory", newRoot)
	case rn == ro:
		return fmt.Errorf("the new root %s is the current root %s under another name (%s); choose another directory", newRoot, oldRoot, rn)
	}
	if _, ok := relUnder(rn, ro); ok {
		return fmt.Errorf("the new root %s lies inside the current root %s (it leads to %s); choose a directory outside it", newRoot, oldRoot, rn)
	}
	if _, ok := relUnder(ro, rn); ok {
		return fmt.Errorf("the current root %s lies inside the new root %s (it leads to %s); choose a directory that does not contain it", oldRoot, newRoot, rn)
	}
	return nil
}

// resolvePath evaluates the symbolic links of the longest existing prefix
// of an absolute path and appends the rest, cleaned.
func resolvePath(p string) (string, error) {
	rest := ""
	cur := filepath.Clean(p)
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if _, lerr := os.Lstat(cur); lerr == nil || !errors.Is(lerr, os.ErrNotExist) {
			return "", err // it exists but cannot be resolved
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// confined returns p and root resolved when p lies strictly below root,
// else "" for both.
func confined(p, root string) (string, string) {
	if root == "" {
		return "", ""
	}
	rp, err := mailcluster.ConfineMailboxPath(p, root)
	if err != nil {
		return "", ""
	}
	rr, err := resolvePath(root)
	if err != nil {
		return "", ""
	}
	return rp, rr
}

// planMoves decides, for every account, where its mail is and where it
// goes. journaled maps a lower-case address to what an earlier run
// recorded before it changed the account's path. Two accounts that would
// share a new path are refused before anything is touched.
func planMoves(accounts []migrateAccount, oldRoot, newRoot string, journaled map[string]journalEntry) ([]mailboxMove, error) {
	moves := make([]mailboxMove, 0, len(accounts))
	owner := map[string]string{}
	for _, a := range accounts {
		mv := planMove(a, oldRoot, newRoot, journaled)
		moves = append(moves, mv)
		if mv.skipped {
			continue
		}
		key := filepath.Clean(mv.to)
		if other, ok := owner[key]; ok {
			return nil, fmt.Errorf("%s and %s would both get the mailbox path %s; give one of them another mailboxPath first", other, a.Address, mv.to)
		}
		owner[key] = a.Address
	}
	return moves, nil
}

// planMove plans one account. An account whose path (symbolic links
// resolved) lies below the new root is in place; its old maildir is the
// one the journal names, or the same path under the old root, and either
// is used only if it lies below the old root. An account below the old
// root moves to the same path under the new root. Any other account is
// skipped: nothing of it is read or changed.
func planMove(a migrateAccount, oldRoot, newRoot string, journaled map[string]journalEntry) mailboxMove {
	mv := mailboxMove{acct: a}
	cur := a.MailboxPath
	slash := ""
	if strings.HasSuffix(cur, "/") {
		slash = "/"
	}
	if p, root := confined(cur, newRoot); p != "" {
		mv.to = cur
		if e, ok := journaled[strings.ToLower(a.Address)]; ok {
			from := e.Root
			if from == "" && oldRoot != newRoot {
				from = oldRoot // a journal written before roots were recorded
			}
			if mv.from, mv.root = confined(e.From, from); mv.from == "" {
				mv.ignored = e.From
			}
		} else if oldRoot != newRoot {
			if rel, ok := relUnder(p, root); ok {
				mv.from, mv.root = confined(oldRoot+rel, oldRoot)
			}
		}
		if mv.from != "" && mv.from == p {
			mv.from = ""
		}
	} else if p, root := confined(cur, oldRoot); p != "" {
		rel, _ := relUnder(p, root)
		mv.from, mv.root, mv.to = p, root, newRoot+rel+slash
	} else {
		mv.skipped = true
	}
	return mv
}

// mailboxDirs returns the mailbox directories of a plan, resolved: a
// directory of one account inside another's is never taken for a Maildir++
// folder of the other.
func mailboxDirs(moves []mailboxMove) mailboxSet {
	set := mailboxSet{}
	for _, mv := range moves {
		if p, err := resolvePath(mv.acct.MailboxPath); err == nil && filepath.IsAbs(mv.acct.MailboxPath) {
			set[p] = true
		}
		if mv.from != "" {
			set[mv.from] = true
		}
	}
	return set
}

// --- files ---

// msgFile is one file that moves with a maildir: a message of new/ or cur/
// or a metadata file, at the top or in a Maildir++ folder.
type msgFile struct {
	sub, name string // its directory relative to the maildir ("new", ".Sent/cur", "" or ".Sent" for metadata); its name
	size      int64
	mode      os.FileMode
	mod       time.Time
}

// message reports whether f is a message (not a metadata file).
func (f msgFile) message() bool {
	base := filepath.Base(f.sub)
	return base == "new" || base == "cur"
}

// mailboxSet holds mailbox directories, resolved.
type mailboxSet map[string]bool

// maildirMetadata names the files besides messages that belong to a
// maildir or a Maildir++ folder and move with it (quota, folder marker,
// IMAP subscriptions). The mail code keeps no files of its own there.
var maildirMetadata = map[string]bool{"maildirsize": true, "maildirfolder": true, "subscriptions": true}

// reMaildirName matches a Maildir unique name ("time.unique.host" with
// optional ",S=size" style fields) with optional info (":2,FLAGS").
var reMaildirName = regexp.MustCompile(`^[0-9]+\.[A-Za-z0-9._,=\\-]+(:2,[A-Za-z]*)?$`)

// maildirName reports whether a file name has the shape of a Maildir
// message file: it cannot name a path, and it does not start with a dot.
func maildirName(name string) bool {
	return len(name) < 256 && reMaildirName.MatchString(name)
}

// maildirFolder reports whether name, an entry of a maildir, is a
// Maildir++ folder: ".Name", a directory (not a link) holding at least one
// of cur, new and tmp as directories.
func maildirFolder(dir, name string, info os.FileInfo) bool {
	if len(name) < 2 || name[0] != '.' || name == ".." || !info.IsDir() {
		return false
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if st, err := os.Lstat(filepath.Join(dir, name, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// describe names an entry that stays, with its kind when it is not a
// regular file.
func describe(rel string, info os.FileInfo) string {
	switch t := info.Mode().Type(); {
	case t == 0:
		return rel
	case t&os.ModeSymlink != 0:
		return rel + " (symbolic link)"
	case t&os.ModeDir != 0:
		return rel + "/"
	case t&(os.ModeDevice|os.ModeCharDevice) != 0:
		return rel + " (device)"
	case t&os.ModeSocket != 0:
		return rel + " (socket)"
	case t&os.ModeNamedPipe != 0:
		return rel + " (named pipe)"
	default:
		return rel + " (special file)"
	}
}

// listMaildir lists what moves with a maildir: regular files with Maildir
// names in new/ and cur/, the metadata files, and the same in each
// Maildir++ folder (except a folder that is the mailbox of another
// account, in others). Everything else is returned in left, relative to
// dir: files under tmp/, other names, symbolic links (never followed),
// devices, sockets, other directories. A missing maildir has nothing.
func listMaildir(dir string, others mailboxSet) (files []msgFile, left []string, err error) {
	err = listMaildirLevel(dir, "", others, &files, &left)
	return files, left, err
}

func listMaildirLevel(dir, sub string, others mailboxSet, files *[]msgFile, left *[]string) error {
	base := filepath.Join(dir, sub)
	des, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", base, err)
	}
	var meta []msgFile
	var msgDirs, folderNames []string
	for _, de := range des {
		name := de.Name()
		rel := filepath.Join(sub, name)
		info, err := os.Lstat(filepath.Join(base, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", filepath.Join(base, name), err)
		}
		switch {
		case (name == "new" || name == "cur" || name == "tmp") && info.IsDir():
			msgDirs = append(msgDirs, name)
		case maildirMetadata[name] && info.Mode().IsRegular():
			meta = append(meta, msgFile{sub: sub, name: name, size: info.Size(), mode: info.Mode().Perm(), mod: info.ModTime()})
		case sub == "" && maildirFolder(base, name, info) && !others[filepath.Join(base, name)]:
			folderNames = append(folderNames, name)
		default:
			*left = append(*left, describe(rel, info))
		}
	}
	for _, d := range []string{"new", "cur", "tmp"} {
		if !slices.Contains(msgDirs, d) {
			continue
		}
		rel := filepath.Join(sub, d)
		des, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, rel), err)
		}
		for _, de := range des {
			p := filepath.Join(dir, rel, de.Name())
			info, err := os.Lstat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			if d == "tmp" || !info.Mode().IsRegular() || !maildirName(de.Name()) {
				*left = append(*left, describe(filepath.Join(rel, de.Name()), info))
				continue
			}
			*files = append(*files, msgFile{sub: rel, name: de.Name(), size: info.Size(), mode: info.Mode().Perm(), mod: info.ModTime()})
		}
	}
	*files = append(*files, meta...)
	for _, f := range folderNames {
		if err := listMaildirLevel(dir, f, others, files, left); err != nil {
			return err
		}
	}
	return nil
}

// folders returns the Maildir++ folders the files belong to.
func folders(files []msgFile) []string {
	var out []string
	for _, f := range files {
		if first, _, _ := strings.Cut(f.sub, string(filepath.Separator)); strings.HasPrefix(first, ".") && !slices.Contains(out, first) {
			out = append(out, first)
		}
	}
	return out
}

// fileDirs returns the directories under dir that hold the files, and dir.
func fileDirs(dir string, files []msgFile) []string {
	out := []string{dir}
	for _, f := range files {
		if d := filepath.Join(dir, f.sub); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// makeFolders creates, in the new maildir dir, the Maildir++ folders (with
// cur, new and tmp) and directories the files go to, and returns every
// directory to sync once the files are placed.
func makeFolders(dir string, files []msgFile) ([]string, error) {
	for _, f := range folders(files) {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(dir, f, sub), 0o750); err != nil {
				return nil, fmt.Errorf("create %s: %w", filepath.Join(dir, f), err)
			}
		}
	}
	dirs := fileDirs(dir, files)
	for _, f := range folders(files) {
		if d := filepath.Join(dir, f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return dirs, nil
}

// placeMessage makes sure a file of the maildir src exists, complete,
// under the same sub-directory and name in the maildir dst. A file already
// there with the same size is kept (an earlier, interrupted run placed it);
// one with another size, or anything but a regular file, is a conflict and
// nothing is changed. A new file is a hard link when src and dst share a
// file system, else a copy written under dst/tmp, synced and renamed into
// place, so a real name never holds a partial file. It reports whether it
// created the file. The caller syncs dst's directories.
func placeMessage(src, dst string, f msgFile, link bool) (bool, error) {
	from := filepath.Join(src, f.sub, f.name)
	to := filepath.Join(dst, f.sub, f.name)
	if st, err := os.Lstat(to); err == nil {
		if st.Mode().IsRegular() && st.Size() == f.size {
			return false, nil
		}
		return false, fmt.Errorf("%s already exists with %d bytes, but %s has %d: both are left in place, check them by hand", to, st.Size(), from, f.size)
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if st, err := os.Lstat(from); err != nil || !st.Mode().IsRegular() {
		return false, fmt.Errorf("%s is no longer a regular file: left in place", from)
	}
	if link && os.Link(from, to) == nil {
		return true, nil
	}
	tmp := filepath.Join(dst, "tmp", "migrate."+f.name)
	if err := copyFile(from, tmp, f.mode); err != nil {
		os.Remove(tmp)
		return false, err
	}
	_ = os.Chtimes(tmp, f.mod, f.mod)
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("rename into %s: %w", to, err)
	}
	return true, nil
}

// copyFile writes src (never through a symbolic link) to dst (replacing a
// leftover dst) and syncs it.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if mode == 0 {
		mode = 0o640
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

// removeMoved removes a file of src after checking that dst holds it
// with the same size.
func removeMoved(src, dst string, f msgFile) error {
	to := filepath.Join(dst, f.sub, f.name)
	st, err := os.Lstat(to)
	if err != nil || !st.Mode().IsRegular() || st.Size() != f.size {
		return fmt.Errorf("%s is not in place (%v); the original is kept", to, err)
	}
	from := filepath.Join(src, f.sub, f.name)
	if st, err := os.Lstat(from); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s is no longer a regular file: left in place", from)
	}
	if err := os.Remove(from); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", from, err)
	}
	return nil
}

// makeMaildir creates tmp, new and cur of a maildir and syncs every
// directory from it up to the parent of root, so the new entries survive
// a crash.
func makeMaildir(dir, root string) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	stop := filepath.Dir(filepath.Clean(root))
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
		if d == stop || d == filepath.Dir(d) {
			return nil
		}
	}
}

// removeEmptyDir removes dir if it is an empty directory (never a
// symbolic link) and reports whether it is gone.
func removeEmptyDir(dir string) bool {
	st, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil || !st.IsDir() {
		return false
	}
	err = os.Remove(dir)
	return err == nil || errors.Is(err, os.ErrNotExist)
}

// removeEmptyMaildir removes a maildir's tmp, new and cur, the given
// Maildir++ folders (with theirs), and the maildir itself when they are
// empty directories, then its empty parents below stop. Nothing that
// holds a file and no symbolic link is removed. It reports whether the
// maildir is gone.
func removeEmptyMaildir(dir, stop string, folders ...string) bool {
	dir = filepath.Clean(dir)
	for _, f := range folders {
		for _, sub := range []string{"tmp", "new", "cur"} {
			removeEmptyDir(filepath.Join(dir, f, sub))
		}
		removeEmptyDir(filepath.Join(dir, f))
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		removeEmptyDir(filepath.Join(dir, sub))
	}
	if !removeEmptyDir(dir) {
		return false
	}
	stop = filepath.Clean(stop)
	for d := filepath.Dir(dir); d != stop && d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, ok := relUnder(d, stop); !ok {
			break
		}
		if st, err := os.Lstat(d); err != nil || !st.IsDir() || os.Remove(d) != nil {
			break
		}
	}
	_ = syncDir(filepath.Dir(dir))
	return true
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Lstat(path)
	return err == nil
}

// syncDir fsyncs a directory so that the entries made in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// --- journal ---

// journal records, under the new root, each account's old path before
// the account is switched to the new one (JSON lines, appended and synced).
type journal struct {
	path    string
	entries map[string]journalEntry // lower-case address -> its first entry
}

type journalEntry struct {
	Address string `json:"address"`
	From    string `json:"from"`
	To      string `json:"to"`
	Root    string `json:"root,omitempty"` // the root From was below, resolved
}

func openJournal(root string) (*journal, error) {
	j := &journal{path: filepath.Join(root, journalName), entries: map[string]journalEntry{}}
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e journalEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Address == "" || e.From == "" {
			continue // a line torn by a crash: its account was not switched yet
		}
		if _, ok := j.entries[strings.ToLower(e.Address)]; !ok {
			j.entries[strings.ToLower(e.Address)] = e
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the journal %s: %w", j.path, err)
	}
	return j, nil
}

// record appends an entry and syncs it. An address already recorded keeps
// its first (oldest) path. root is the root from lies below.
func (j *journal) record(address, from, to, root string) error {
	key := strings.ToLower(address)
	if _, ok := j.entries[key]; ok {
		return nil
	}
	e := journalEntry{Address: address, From: from, To: to, Root: root}
	b, _ := json.Marshal(e)
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if len(j.entries) == 0 {
		if err := syncDir(filepath.Dir(j.path)); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	j.entries[key] = e
	return nil
}

func (j *journal) remove() error {
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the journal: %w", err)
	}
	j.entries = map[string]journalEntry{}
	return nil
}

// --- progress ---

// progress shows how the move goes on standard error.
type progress interface {
	account(address string)                                 // an account's mailbox starts
	message()                                               // one message is placed
	grow(n int64)                                           // more messages than counted up front
	accountDone(mv mailboxMove, r accountResult, err error) // an account's mailbox is done
	done()
}

func (m *migrator) newProgress(total int64) progress {
	if !m.tty || total == 0 {
		return &lineProgress{w: m.stderr}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(m.stderr),
		progressbar.OptionSetDescription("starting"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionShowIts(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(m.stderr) }),
	)
	return &barProgress{bar: bar}
}

type barProgress struct {
	bar   *progressbar.ProgressBar
	ended bool
}

func (p *barProgress) account(address string)                        { p.bar.Describe(address) }
func (p *barProgress) message()                                      { _ = p.bar.Add(1) }
func (p *barProgress) grow(n int64)                                  { p.bar.AddMax64(n) }
func (p *barProgress) accountDone(mailboxMove, accountResult, error) {}
func (p *barProgress) done() {
	// Exit ends an unfinished bar with a line break (OptionOnCompletion);
	// a finished one has printed it already.
	if !p.ended && !p.bar.IsFinished() {
		_ = p.bar.Exit()
	}
	p.ended = true
}

// lineProgress prints one line per account (for logs and CI, where
// standard error is not a terminal). quiet leaves out accounts where
// nothing happened.
type lineProgress struct {
	w     io.Writer
	quiet bool
}

func (p *lineProgress) account(string) {}
func (p *lineProgress) message()       {}
func (p *lineProgress) grow(int64)     {}
func (p *lineProgress) done()          {}
func (p *lineProgress) accountDone(mv mailboxMove, r accountResult, err error) {
	switch {
	case err != nil:
		fmt.Fprintf(p.w, "%s: stopped after %s: %v\n", mv.acct.Address, plural(r.moved, "message"), err)
	case p.quiet && r.moved == 0 && !r.patched:
	case r.patched:
		fmt.Fprintf(p.w, "%s: %s (%s) moved to %s\n", mv.acct.Address, plural(r.moved, "message"), formatBytes(r.bytes), mv.to)
	default:
		fmt.Fprintf(p.w, "%s: %s (%s) moved, already at %s\n", mv.acct.Address, plural(r.moved, "message"), formatBytes(r.bytes), mv.to)
	}
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
