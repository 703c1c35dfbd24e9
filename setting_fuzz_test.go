package mailcluster_test

import (
	"bytes"
	"reflect"
	"testing"

	"mailcluster"
)

// iniSeeds are ini texts for FuzzParseIni besides testdata/fuzz/FuzzParseIni:
// the defaults, the well-known keys, and the corners of the ini syntax
// (comments, quotes, continuation, shadowed keys, odd section names).
var iniSeeds = []string{
	"",
	"[Passwords]\nMinLength=8\n",
	"[Directories]\nMailboxRoot=/srv/mail\nLockFiles=/srv/locks\nPEM=/srv/pem\nPublicFolders=/srv/public\n\n" +
		"[NewAccounts]\nMailboxPath=$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/\n\n[AttachmentLinking]\nEnabled=No\n",
	"; comment\n# comment\n[A]\nk = v ; not a comment\n",
	"[A]\nk=\"quoted\"\n",
	"[A]\nk=\"\"\"triple\"\"\"\n",
	"[A]\nk=a\\\n  b\n",
	"[A]\nk=1\nk=2\n",
	"[A]\n[A]\nk=1\n",
	"[A]\r\nk=v\r\n",
	"k=v\n[A]\n",
	"[DEFAULT]\nk=v\n",
	"[a.b-c_d]\nx.y=z\n",
	"[A]\nk=`raw`\n",
	"[A]\nk:v\n",
	"[A]\n  k  =  v  \n",
	"[A]\nk=\n",
	"[A]\n=v\n",
	"[]\nk=v\n",
	"[A\nk=v\n",
	"\xef\xbb\xbf[A]\nk=v\n",
	"[A]\nk=v\x00w\n",
	"[Passwords]\nMinLength=0\n",
	"[NewAccounts]\nMailboxPath=relative/$MAILBOX$\n",
}

// FuzzParseIni feeds arbitrary text to ParseIni for the main settings
// file. Whatever parses must hold only values ValidateSetting accepts,
// and RenderIni must give text that parses to the same Sections and
// renders to the same bytes again.
func FuzzParseIni(f *testing.F) {
	for _, s := range iniSeeds {
		f.Add(mailcluster.MainSettingsFile, []byte(s))
		f.Add("other", []byte(s))
	}
	f.Fuzz(func(t *testing.T, file string, text []byte) {
		if mailcluster.ValidateSettingsFileName(file) != nil {
			file = mailcluster.MainSettingsFile
		}
		secs, err := mailcluster.ParseIni(file, text)
		if err != nil {
			if mailcluster.ErrorCode(err) != mailcluster.EINVALID && mailcluster.ErrorCode(err) != mailcluster.ETOOLARGE {
				t.Fatalf("ParseIni error %v has code %q", err, mailcluster.ErrorCode(err))
			}
			if secs != nil {
				t.Fatalf("ParseIni returned sections with an error")
			}
			return
		}
		for section, keys := range secs {
			if len(keys) == 0 {
				t.Fatalf("empty section [%s] in the result", section)
			}
			for key, value := range keys {
				if err := mailcluster.ValidateSetting(file, section, key, value); err != nil {
					t.Fatalf("parsed [%s] %s=%q is not valid: %v", section, key, value, err)
				}
			}
		}
		text2 := mailcluster.RenderIni(secs)
		secs2, err := mailcluster.ParseIni(file, text2)
		if err != nil {
			t.Fatalf("rendered text does not parse: %v\ninput:\n%q\nrendered:\n%q", err, text, text2)
		}
		if !reflect.DeepEqual(normalize(secs), normalize(secs2)) {
			t.Fatalf("round trip changed the sections:\n%#v\n%#v\ninput:\n%q\nrendered:\n%q", secs, secs2, text, text2)
		}
		if text3 := mailcluster.RenderIni(secs2); !bytes.Equal(text2, text3) {
			t.Fatalf("rendering is not stable:\n%q\n%q", text2, text3)
		}
	})
}

// FuzzSettingRoundTrip checks the path of a value set through an API
// (ValidateSetting) and written to a node's disk (RenderIni, the
// materialised .ini file, read back with ParseIni by a PUT of the file
// or by an administrator's tools): every accepted value must come back
// unchanged.
func FuzzSettingRoundTrip(f *testing.F) {
	for _, v := range []string{
		"", "8", "Yes", "/srv/mail", "$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/", " leading", "trailing ", `"quoted"`,
		"`raw`", `"""triple"""`, "a\\", "a;b", "a#b", "a=b", "[x]", "ünïcödé", "\t", `"`, "'single'",
	} {
		f.Add("Custom", "Key", v)
	}
	f.Add("Passwords", "MinLength", "8")
	f.Add("a.b", "c-d_e", "value")
	f.Fuzz(func(t *testing.T, section, key, value string) {
		for _, file := range []string{mailcluster.MainSettingsFile, "other"} {
			if mailcluster.ValidateSetting(file, section, key, value) != nil {
				continue
			}
			in := mailcluster.Sections{section: {key: value}}
			text := mailcluster.RenderIni(in)
			out, err := mailcluster.ParseIni(file, text)
			if err != nil {
				t.Fatalf("accepted [%s] %s=%q renders to text that does not parse: %v\n%q", section, key, value, err, text)
			}
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("accepted [%s] %s=%q comes back as %#v\n%q", section, key, value, out, text)
			}
		}
	})
}

// normalize returns nil for an empty Sections, so that DeepEqual does
// not tell an empty map from a nil one.
func normalize(s mailcluster.Sections) mailcluster.Sections {
	if len(s) == 0 {
		return nil
	}
	return s
}
