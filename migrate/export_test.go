package migrate

import "time"

// Unexported parts of the engine, for the tests.
var (
	RelUnder           = relUnder
	RewriteTemplate    = rewriteTemplate
	PlanMoves          = planMoves
	ListMaildir        = listMaildir
	PlaceMessage       = placeMessage
	RemoveMoved        = removeMoved
	MakeMaildir        = makeMaildir
	RemoveEmptyMaildir = removeEmptyMaildir
	OpenJournal        = openJournal
)

// JournalName is the journal's file name under the new root.
const JournalName = journalName

// JournalEntry is one line of the journal.
type JournalEntry = journalEntry

// Address returns the account a move plans for.
func (mv mailboxMove) Address() string { return mv.acct.Address }

// From returns the maildir a move empties.
func (mv mailboxMove) From() string { return mv.from }

// To returns the mailbox path the account ends up with.
func (mv mailboxMove) To() string { return mv.to }

// Skipped reports whether the account is left alone.
func (mv mailboxMove) Skipped() bool { return mv.skipped }

// Ignored returns an old path from the journal that is left alone.
func (mv mailboxMove) Ignored() string { return mv.ignored }

// Name returns a listed file's name.
func (f msgFile) Name() string { return f.name }

// Sub returns a listed file's directory relative to the maildir.
func (f msgFile) Sub() string { return f.sub }

// Size returns a listed file's size.
func (f msgFile) Size() int64 { return f.size }

// Entries returns the journal's entries by lower-case address.
func (j *journal) Entries() map[string]JournalEntry { return j.entries }

// Record exports record.
func (j *journal) Record(address, from, to, root string) error {
	return j.record(address, from, to, root)
}

// Remove exports remove.
func (j *journal) Remove() error { return j.remove() }

// SetSettle sets the wait before the final sweep (0: none).
func (m *Migrator) SetSettle(d time.Duration) { m.settle = d }

// SetNoLink makes the run copy every file instead of linking it.
func (m *Migrator) SetNoLink() { m.noLink = true }
