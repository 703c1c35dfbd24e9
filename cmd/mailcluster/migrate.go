package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mailcluster"
	"mailcluster/migrate"
)

// migrate-mailboxes moves every account's Maildir to a new root through
// the primary's REST API; the engine (plan, journal, resumption, the move
// itself) is package migrate. This file parses the command line and shows
// the progress bar.

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
			c, err := newAdminClient(base, user)
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
			m := migrate.New(c, newRoot, migrate.Options{Stdout: stdout, Stderr: stderr, Progress: progressFor(stderr)})
			return m.Run(ctx)
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

// progressFor returns the progress display of a run: a bar when stderr is
// a terminal and there are messages to move, else one line per account.
func progressFor(stderr io.Writer) func(total int64) migrate.Progress {
	tty := isTerminal(stderr)
	return func(total int64) migrate.Progress {
		if !tty || total == 0 {
			return migrate.NewLineProgress(stderr)
		}
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("starting"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionShowIts(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
		)
		return &barProgress{bar: bar}
	}
}

// barProgress shows a run's progress as a bar of messages placed.
type barProgress struct {
	bar   *progressbar.ProgressBar
	ended bool
}

var _ migrate.Progress = (*barProgress)(nil)

func (p *barProgress) Account(address string)            { p.bar.Describe(address) }
func (p *barProgress) Message()                          { _ = p.bar.Add(1) }
func (p *barProgress) Grow(n int64)                      { p.bar.AddMax64(n) }
func (p *barProgress) AccountDone(migrate.AccountReport) {}
func (p *barProgress) Done() {
	// Exit ends an unfinished bar with a line break (OptionOnCompletion);
	// a finished one has printed it already.
	if !p.ended && !p.bar.IsFinished() {
		_ = p.bar.Exit()
	}
	p.ended = true
}
