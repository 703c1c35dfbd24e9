package imapsvc

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// The IMAP flags kept in Maildir file names, and their letters; other
// keywords are not stored (they are not in PERMANENTFLAGS).
var flagLetters = []struct {
	flag   imap.Flag
	letter byte
}{
	{imap.FlagDraft, 'D'},
	{imap.FlagFlagged, 'F'},
	{imap.FlagForwarded, 'P'},
	{imap.FlagAnswered, 'R'},
	{imap.FlagSeen, 'S'},
	{imap.FlagDeleted, 'T'},
}

// supportedFlags are the mailbox's FLAGS and PERMANENTFLAGS.
func supportedFlags() []imap.Flag {
	out := make([]imap.Flag, 0, len(flagLetters))
	for _, f := range flagLetters {
		out = append(out, f.flag)
	}
	return out
}

// imapFlags returns the IMAP flags of Maildir flag letters.
func imapFlags(letters string) []imap.Flag {
	out := []imap.Flag{}
	for _, f := range flagLetters {
		if strings.IndexByte(letters, f.letter) >= 0 {
			out = append(out, f.flag)
		}
	}
	return out
}

// letterOf returns the Maildir letter of an IMAP flag (0: not stored).
func letterOf(flag imap.Flag) byte {
	for _, f := range flagLetters {
		if strings.EqualFold(string(f.flag), string(flag)) {
			return f.letter
		}
	}
	return 0
}

// maildirLetters returns the letters of the IMAP flags that are stored.
func maildirLetters(flags []imap.Flag) string {
	var b []byte
	for _, f := range flags {
		if l := letterOf(f); l != 0 {
			b = append(b, l)
		}
	}
	return string(b)
}
