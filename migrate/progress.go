package migrate

import (
	"fmt"
	"io"
)

// Progress shows how a run goes. A run calls it from one goroutine: for
// each account Account, then Message per file placed (Grow when more
// files are found than were counted up front), then AccountDone; Done
// once at the end of the pass, also when the run stops early.
type Progress interface {
	// Account tells that an account's mailbox starts.
	Account(address string)
	// Message tells that one file is placed in the new maildir.
	Message()
	// Grow adds n files to the total counted up front.
	Grow(n int64)
	// AccountDone tells what moving an account's mailbox did.
	AccountDone(r AccountReport)
	// Done ends the pass.
	Done()
}

// AccountReport is what moving one account's mailbox did.
type AccountReport struct {
	Address string // the account
	To      string // the mailbox path the account ends up with
	Moved   int64  // message files now only in the new place
	Bytes   int64  // their size
	Patched bool   // the account's mailboxPath was changed
	// Err is why the account stopped; the files named by Moved are moved
	// either way.
	Err error
}

func newAccountReport(mv mailboxMove, r accountResult, err error) AccountReport {
	return AccountReport{Address: mv.acct.Address, To: mv.to, Moved: r.moved, Bytes: r.bytes, Patched: r.patched, Err: err}
}

// LineProgress prints one line per account (for logs and CI, where
// standard error is not a terminal).
type LineProgress struct {
	w     io.Writer
	quiet bool // leave out accounts where nothing happened
}

var _ Progress = (*LineProgress)(nil)

// NewLineProgress returns a Progress that writes one line per account
// to w.
func NewLineProgress(w io.Writer) *LineProgress { return &LineProgress{w: w} }

// Account does nothing: the line comes when the account is done.
func (p *LineProgress) Account(string) {}

// Message does nothing.
func (p *LineProgress) Message() {}

// Grow does nothing.
func (p *LineProgress) Grow(int64) {}

// Done does nothing.
func (p *LineProgress) Done() {}

// AccountDone prints what moving the account's mailbox did, or where it
// stopped.
func (p *LineProgress) AccountDone(r AccountReport) {
	switch {
	case r.Err != nil:
		fmt.Fprintf(p.w, "%s: stopped after %s: %v\n", r.Address, plural(r.Moved, "message"), r.Err)
	case p.quiet && r.Moved == 0 && !r.Patched:
	case r.Patched:
		fmt.Fprintf(p.w, "%s: %s (%s) moved to %s\n", r.Address, plural(r.Moved, "message"), formatBytes(r.Bytes), r.To)
	default:
		fmt.Fprintf(p.w, "%s: %s (%s) moved, already at %s\n", r.Address, plural(r.Moved, "message"), formatBytes(r.Bytes), r.To)
	}
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// formatBytes writes a size for people: "512 B", "1.5 KiB".
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
