package mailcluster

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"
)

// MainSettingsFile is the ini file that holds the server-wide settings
// (<data>/app/mailcluster.ini on every node).
const MainSettingsFile = "mailcluster"

// Well-known sections and keys of MainSettingsFile.
const (
	SectionDirectories       = "Directories"
	KeyMailboxRoot           = "MailboxRoot"
	KeyLockFiles             = "LockFiles"
	KeyPEM                   = "PEM"
	KeyPublicFolders         = "PublicFolders"
	SectionNewAccounts       = "NewAccounts"
	KeyMailboxPath           = "MailboxPath"
	SectionPasswords         = "Passwords"
	KeyMinLength             = "MinLength"
	SectionAttachmentLinking = "AttachmentLinking"
	KeyEnabled               = "Enabled"

	// DefaultMailboxPathTemplate is the new-account template used when
	// [NewAccounts] MailboxPath is not set.
	DefaultMailboxPathTemplate = "$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/"
	// DefaultMinPasswordLength applies when [Passwords] MinLength is not set.
	DefaultMinPasswordLength = 8
)

// Sections is the content of one ini file: section -> key -> value.
type Sections map[string]map[string]string

// SettingsFile is one named ini file of server settings.
type SettingsFile struct {
	Name     string   `json:"name"`
	Sections Sections `json:"sections"`
}

var (
	reFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	reIniName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// MaxSettingValue is the longest value a setting may hold, in bytes.
const MaxSettingValue = 4096

// ValidSettingNames reports whether file, section and key are well-formed
// names (whatever the value rules say).
func ValidSettingNames(file, section, key string) bool {
	return reFileName.MatchString(file) && reIniName.MatchString(section) && reIniName.MatchString(key)
}

// ValidateSettingsFileName checks an ini file name (without .ini).
func ValidateSettingsFileName(name string) error {
	if !reFileName.MatchString(name) {
		return Errorf(EINVALID, "Settings file name %q must be 1-64 letters, digits, '_' or '-'.", name)
	}
	return nil
}

// ValidateSetting checks one section, key and value, including the rules
// of the well-known keys (numbers, Yes/No flags, templates).
func ValidateSetting(file, section, key, value string) error {
	if err := ValidateSettingsFileName(file); err != nil {
		return err
	}
	if !reIniName.MatchString(section) {
		return Errorf(EINVALID, "Section name %q must be 1-128 letters, digits, '_', '.' or '-'.", section)
	}
	if !reIniName.MatchString(key) {
		return Errorf(EINVALID, "Key name %q in [%s] must be 1-128 letters, digits, '_', '.' or '-'.", key, section)
	}
	if len(value) > MaxSettingValue {
		return Errorf(ETOOLARGE, "Value of [%s] %s is longer than %d bytes.", section, key, MaxSettingValue)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return Errorf(EINVALID, "Value of [%s] %s may not contain line breaks or NUL.", section, key)
	}
	if file != MainSettingsFile {
		return nil
	}
	if rule, ok := settingRules[section+"/"+key]; ok {
		if msg := rule(value); msg != "" {
			return Errorf(EINVALID, "[%s] %s: %s", section, key, msg)
		}
	}
	return nil
}

var settingRules = map[string]func(string) string{
	SectionDirectories + "/" + KeyMailboxRoot: rootPathRule,
	SectionDirectories + "/" + KeyMailboxRootNext: func(v string) string {
		if v == "" {
			return ""
		}
		return rootPathRule(v)
	},
	SectionDirectories + "/" + KeyLockFiles:     absPathRule,
	SectionDirectories + "/" + KeyPEM:           absPathRule,
	SectionDirectories + "/" + KeyPublicFolders: absPathRule,
	SectionNewAccounts + "/" + KeyMailboxPath: func(v string) string {
		if !strings.Contains(v, "$MAILBOX$") && !strings.Contains(v, "$MAILBOXFIRSTCHARS") {
			return "the template must contain $MAILBOX$ so that accounts get distinct paths"
		}
		if !strings.HasPrefix(v, "$MAILBOXROOT$") && !strings.HasPrefix(v, "/") {
			return "the template must start with $MAILBOXROOT$ or an absolute path"
		}
		if strings.Contains(v, "..") {
			return "the template may not contain '..'"
		}
		return ""
	},
	SectionPasswords + "/" + KeyMinLength: func(v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 72 {
			return "must be a number from 1 to 72"
		}
		return ""
	},
	SectionNetwork + "/" + KeyProxyProtocolFrom: prefixListRule,
	SectionAttachmentLinking + "/" + KeyEnabled: func(v string) string {
		if _, err := ParseFlag(v); err != nil {
			return "must be Yes or No"
		}
		return ""
	},
}

// rootPathRule is absPathRule for a mailbox root, which may not be the
// file system root (it would confine nothing).
func rootPathRule(v string) string {
	if msg := absPathRule(v); msg != "" {
		return msg
	}
	if strings.Trim(v, "/") == "" {
		return "may not be the file system root"
	}
	return ""
}

func absPathRule(v string) string {
	if !strings.HasPrefix(v, "/") || strings.Contains(v, "..") {
		return "must be an absolute path without '..'"
	}
	return ""
}

// ParseFlag accepts Yes/No, 1/0, true/false, on/off in any case.
func ParseFlag(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "1", "true", "on", "y":
		return true, nil
	case "no", "0", "false", "off", "n":
		return false, nil
	}
	return false, Errorf(EINVALID, "%q is not a flag: use Yes or No.", s)
}

// FormatFlag renders a flag the classic way: Yes or No.
func FormatFlag(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// ParseIni parses ini text into Sections. Keys outside a section, bad names
// or values, and unparsable text are EINVALID errors.
func ParseIni(file string, text []byte) (Sections, error) {
	f, err := ini.LoadSources(ini.LoadOptions{
		IgnoreInlineComment:     true,
		SkipUnrecognizableLines: false,
		AllowShadows:            false,
		// Classic ini files have no continuation lines, and their
		// Windows paths end in a backslash (MailboxRoot=C:\Mail\).
		IgnoreContinuation: true,
	}, text)
	if err != nil {
		return nil, &Error{Code: EINVALID, Message: "The ini text cannot be parsed: " + sanitizeIniError(err), Err: err}
	}
	out := Sections{}
	for _, sec := range f.Sections() {
		name := sec.Name()
		if name == ini.DefaultSection {
			if len(sec.Keys()) > 0 {
				return nil, Errorf(EINVALID, "Key %q is outside of any [section].", sec.Keys()[0].Name())
			}
			continue
		}
		keys := map[string]string{}
		for _, k := range sec.Keys() {
			if err := ValidateSetting(file, name, k.Name(), k.Value()); err != nil {
				return nil, err
			}
			keys[k.Name()] = k.Value()
		}
		if len(keys) == 0 {
			if !reIniName.MatchString(name) {
				return nil, Errorf(EINVALID, "Section name %q must be 1-128 letters, digits, '_', '.' or '-'.", name)
			}
			continue // an empty section holds nothing to replicate
		}
		out[name] = keys
	}
	return out, nil
}

func sanitizeIniError(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// RenderIni writes sections as ini text, sections and keys sorted.
func RenderIni(s Sections) []byte {
	var b bytes.Buffer
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[%s]\n", n)
		keys := make([]string, 0, len(s[n]))
		for k := range s[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, iniValue(s[n][k]))
		}
	}
	return b.Bytes()
}

// iniValue writes a value so that ParseIni reads it back unchanged. A
// value the ini syntax would alter (surrounding space or quotes dropped, a
// leading backquote or triple quote taken as a quoted value) is wrapped in
// triple quotes, which keep everything up to the last three quotes of the
// line as it is.
func iniValue(v string) string {
	if v == "" {
		return v
	}
	if v != strings.TrimSpace(v) || strings.ContainsRune("\"'`", rune(v[0])) {
		return `"""` + v + `"""`
	}
	return v
}

// ExpandMailboxPath fills a new-account template. Macros: $MAILBOXROOT$,
// $DOMAIN$, $MAILBOX$ and $MAILBOXFIRSTCHARSn$ (n = 1..9: the first n
// characters of the mailbox).
func ExpandMailboxPath(template, root, domain, mailbox string) string {
	out := strings.NewReplacer("$MAILBOXROOT$", root, "$DOMAIN$", domain, "$MAILBOX$", mailbox).Replace(template)
	for n := 1; n <= 9; n++ {
		macro := fmt.Sprintf("$MAILBOXFIRSTCHARS%d$", n)
		if strings.Contains(out, macro) {
			out = strings.ReplaceAll(out, macro, mailbox[:min(n, len(mailbox))])
		}
	}
	for strings.Contains(out, "//") {
		out = strings.ReplaceAll(out, "//", "/")
	}
	return out
}
