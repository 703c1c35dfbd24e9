package mailcluster_test

import (
	"reflect"
	"testing"

	"mailcluster"
)

// TestParseIni pins how ini text is read, classic files included: no
// continuation lines (Windows paths end in a backslash), surrounding
// quotes and space dropped, ';' and '#' inside a value kept, triple
// quotes (as RenderIni writes odd values) kept literally.
func TestParseIni(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       mailcluster.Sections
	}{
		{"WindowsPaths", "[Directories]\r\nMailboxRoot=C:\\MDaemon\\Users\\\r\nNext=after\r\n",
			mailcluster.Sections{"Directories": {"MailboxRoot": `C:\MDaemon\Users\`, "Next": "after"}}},
		{"Quotes", "[A]\nd=\"x y\"\ns='z'\nt=\"\"\" pad \"\"\"\nr=`raw`\n",
			mailcluster.Sections{"A": {"d": "x y", "s": "z", "t": " pad ", "r": "raw"}}},
		{"CommentCharactersInValue", "; comment\n[A]\nk=a ; b # c\n", mailcluster.Sections{"A": {"k": "a ; b # c"}}},
		{"Space", "[A]\n  k  =  v w  \n", mailcluster.Sections{"A": {"k": "v w"}}},
		{"EmptySectionDropped", "[A]\n[B]\nk=v\n", mailcluster.Sections{"B": {"k": "v"}}},
		{"BOM", "\xef\xbb\xbf[A]\nk=v\n", mailcluster.Sections{"A": {"k": "v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mailcluster.ParseIni("custom", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			again, err := mailcluster.ParseIni("custom", mailcluster.RenderIni(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("rendered %q parses to %q, %v", mailcluster.RenderIni(got), again, err)
			}
		})
	}
	for _, tc := range []struct{ name, text string }{
		{"ErrKeyOutsideSection", "k=v\n[A]\n"},
		{"ErrSectionName", "[a b]\nk=v\n"},
		{"ErrKeyName", "[A]\nk y=v\n"},
		{"ErrMinLength", "[Passwords]\nMinLength=0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := mailcluster.ParseIni(mailcluster.MainSettingsFile, []byte(tc.text)); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
				t.Fatalf("error %v, want EINVALID", err)
			}
		})
	}
}
