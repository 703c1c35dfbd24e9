package xmlapi

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"

	"mailcluster"
)

// dispatch runs one operation, filling res on success. Operation names
// are case-sensitive.
func (h *Handler) dispatch(ctx context.Context, req *request, res *result) error {
	p := params{req.params}
	// The User answer is written as it is read (see writeUser); every
	// other operation builds its <Result> as an etree element.
	switch req.op {
	case "GetUserInfo":
		return h.handleUserInfo(ctx, p, res)
	case "CreateUser":
		return h.handleUserCreate(ctx, p, res)
	case "UpdateUser":
		return h.handleUserUpdate(ctx, p, res)
	}
	result := res.tree()
	switch req.op {
	case "GetVersionInfo":
		return h.handleVersionInfo(ctx, p, result)
	case "GetDomainList":
		return h.handleDomainList(ctx, p, result)
	case "GetDomainInfo":
		return h.handleDomainInfo(ctx, p, result)
	case "CreateDomain":
		return h.handleDomainCreate(ctx, p, result)
	case "UpdateDomain":
		return h.handleDomainUpdate(ctx, p, result)
	case "DeleteDomain":
		return h.handleDomainDelete(ctx, p, result)
	case "DeleteUser":
		return h.handleUserDelete(ctx, p, result)
	case "GetIniSettings":
		return h.handleIniSettingsGet(ctx, p, result)
	case "UpdateIniSettings":
		return h.handleIniSettingsUpdate(ctx, p, result)
	case "GetDynamicScreening":
		return h.handleScreeningGet(ctx, p, result)
	case "BlockIP":
		return h.handleBlockIP(ctx, p, result)
	case "UnblockIP":
		return h.handleUnblockIP(ctx, p, result)
	case "FreezeAccount":
		return h.handleFreezeAccount(ctx, p, result)
	case "ThawAccount":
		return h.handleThawAccount(ctx, p, result)
	case "ImportCertificate":
		return h.handleCertificateImport(ctx, p, result)
	case "GetCertificates":
		return h.handleCertificateList(ctx, p, result)
	case "DeleteCertificate":
		return h.handleCertificateDelete(ctx, p, result)
	case "GetClusterInfo":
		return h.handleClusterInfo(ctx, p, result)
	case "AddClusterNode":
		return h.handleClusterNodeAdd(ctx, p, result)
	case "RemoveClusterNode":
		return h.handleClusterNodeRemove(ctx, p, result)
	case "GetClusterLog":
		return h.handleClusterLog(ctx, p, result)
	case "CreateAlias":
		return h.handleAliasCreate(ctx, p, result)
	case "UpdateAlias":
		return h.handleAliasUpdate(ctx, p, result)
	case "DeleteAlias":
		return h.handleAliasDelete(ctx, p, result)
	case "GetAliasList":
		return h.handleAliasList(ctx, p, result)
	case "CreateList":
		return h.handleListCreate(ctx, p, result)
	case "UpdateList":
		return h.handleListUpdate(ctx, p, result)
	case "DeleteList":
		return h.handleListDelete(ctx, p, result)
	case "GetListInfo":
		return h.handleListInfo(ctx, p, result)
	case "GetListList":
		return h.handleListList(ctx, p, result)
	case "CreateGroup":
		return h.handleGroupCreate(ctx, p, result)
	case "UpdateGroup":
		return h.handleGroupUpdate(ctx, p, result)
	case "DeleteGroup":
		return h.handleGroupDelete(ctx, p, result)
	case "GetGroupInfo":
		return h.handleGroupInfo(ctx, p, result)
	case "GetGroupList":
		return h.handleGroupList(ctx, p, result)
	case "CreateDKIMKey":
		return h.handleDKIMKeyCreate(ctx, p, result)
	case "GetDKIMKey":
		return h.handleDKIMKeyGet(ctx, p, result)
	case "DeleteDKIMKey":
		return h.handleDKIMKeyDelete(ctx, p, result)
	case "GetQueueList":
		return h.handleQueueList(ctx, p, result)
	case "GetQueueMessage":
		return h.handleQueueMessage(ctx, p, result)
	case "GetQueueStats":
		return h.handleQueueStats(ctx, p, result)
	case "RetryQueueMessage":
		return h.handleQueueRetry(ctx, p, result)
	case "DeleteQueueMessage":
		return h.handleQueueDelete(ctx, p, result)
	}
	return errorf(StatusUnknownOperation, "The operation %s is not supported.", clip(req.op))
}

// params reads the children of <Parameters>. A path is a list of element
// names separated by "/" ("Details/Frozen"); names are case-sensitive and
// the first matching element wins. Text is trimmed of surrounding space,
// except by raw.
type params struct{ el *etree.Element }

// find returns the element at path, or nil.
func (p params) find(path string) *etree.Element {
	e := p.el
	for name := range strings.SplitSeq(path, "/") {
		if e = e.SelectElement(name); e == nil {
			return nil
		}
	}
	return e
}

// section returns the path of a section of the account operations,
// which classic clients send either directly in <Parameters> (<Roles>,
// <Quotas>) or inside <Details>: the first of name and Details/name that
// is present, "" when neither is.
func (p params) section(name string) string {
	for _, path := range []string{name, "Details/" + name} {
		if p.has(path) {
			return path
		}
	}
	return ""
}

// has tells whether the element at path is present.
func (p params) has(path string) bool { return p.find(path) != nil }

// str returns the trimmed text at path, nil when the element is absent.
func (p params) str(path string) *string {
	s, ok := p.text(path)
	if !ok {
		return nil
	}
	return &s
}

// text returns the trimmed text at path, and whether the element is
// present.
func (p params) text(path string) (string, bool) {
	e := p.find(path)
	if e == nil {
		return "", false
	}
	return strings.TrimSpace(textOf(e)), true
}

// raw returns the text at path as sent (for passwords), nil when absent.
func (p params) raw(path string) *string {
	e := p.find(path)
	if e == nil {
		return nil
	}
	s := textOf(e)
	return &s
}

// strOr returns the trimmed text at path, or def when absent or empty.
func (p params) strOr(path, def string) string {
	if s := p.str(path); s != nil && *s != "" {
		return *s
	}
	return def
}

// required returns the trimmed text at path; an absent or empty element
// is StatusMissingParameter naming the path.
func (p params) required(path string) (string, error) {
	if s, _ := p.text(path); s != "" {
		return s, nil
	}
	return "", missing(path)
}

// flag parses the flag at path (Yes/No, 1/0, true/false), nil when absent
// or empty: classic clients send an empty element (<Frozen></Frozen>,
// <Frozen/>) for a flag they leave unchanged.
func (p params) flag(path string) (*bool, error) {
	s := p.str(path)
	if s == nil || *s == "" {
		return nil, nil
	}
	b, err := parseFlag(path, *s)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// int parses the whole number at path, nil when absent or empty (an
// empty element leaves the number unchanged, as for flags).
func (p params) int(path string) (*int64, error) {
	s := p.str(path)
	if s == nil || *s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(*s, 10, 64)
	if err != nil {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Parameter %s: %q is not a whole number.", path, clip(*s))
	}
	return &n, nil
}

// firstOf returns the first of paths whose element has non-empty text,
// and that text; "", "" when none has.
func (p params) firstOf(paths ...string) (path, value string) {
	for _, path := range paths {
		if s := p.str(path); s != nil && *s != "" {
			return path, *s
		}
	}
	return "", ""
}

// domainObject returns the domain and name of an object that lives in a
// domain's address space (an alias, a list): the first non-empty of
// paths is its name or its full address name@domain, and <Domain> names
// the domain (required with a bare name; with an address it may be left
// out, and must agree when given). None of paths given is
// StatusMissingParameter naming them all.
func (p params) domainObject(paths ...string) (domain, name string, err error) {
	path, v := p.firstOf(paths...)
	if path == "" {
		what := paths[0]
		if len(paths) > 1 {
			what += " (or " + strings.Join(paths[1:], " or ") + ")"
		}
		return "", "", missing(what)
	}
	given := p.strOr("Domain", "")
	if !strings.Contains(v, "@") {
		if given == "" {
			return "", "", missing("Domain")
		}
		return given, v, nil
	}
	name, domain, err = mailcluster.SplitAddress(v)
	if err != nil {
		return "", "", mailcluster.Errorf(mailcluster.EINVALID, "Parameter %s: %s", path, mailcluster.ErrorMessage(err))
	}
	if given != "" && mailcluster.NormalizeDomain(given) != domain {
		return "", "", mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter %s names domain %s, but Domain is %s: give one domain.", path, domain, clip(given))
	}
	return domain, name, nil
}

// removes reads the action attribute of an entry of a membership section
// (path names the entry, for messages): absent, empty or "add" adds,
// "remove" or "delete" removes, in any case; any other value is refused.
func removes(path string, e *etree.Element) (bool, error) {
	switch v := strings.TrimSpace(e.SelectAttrValue("action", "")); strings.ToLower(v) {
	case "", "add":
		return false, nil
	case "remove", "delete":
		return true, nil
	default:
		return false, mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter %s: action %q is not one of add, remove, delete; nothing was changed.", path, clip(v))
	}
}

// entries decodes a membership section at path that holds one <entry>
// element per value, each with an optional action attribute (see
// removes): the values to add and to remove, in the order given; nil,
// nil when the section is absent or empty. An empty entry is refused, as
// walk refuses anything else it does not know.
func (p params) entries(path, entry string) (add, remove []string, err error) {
	err = p.walk(path, entry, func(c *etree.Element, v string, rm bool) error {
		if v == "" {
			return mailcluster.Errorf(mailcluster.EINVALID, "Parameter %s/%s: a value is required.", path, entry)
		}
		if rm {
			remove = append(remove, v)
		} else {
			add = append(add, v)
		}
		return nil
	})
	return add, remove, err
}

// walk calls fn with every <entry> child of the section at path, its
// trimmed text and whether its action removes it (see removes); nothing
// when the section is absent. Text directly inside the section and
// another child element are refused, so that nothing a client meant to
// change is dropped silently.
func (p params) walk(path, entry string, fn func(c *etree.Element, text string, remove bool) error) error {
	e := p.find(path)
	if e == nil {
		return nil
	}
	if strings.TrimSpace(textOf(e)) != "" {
		return mailcluster.Errorf(mailcluster.EINVALID,
			"Parameter %s: give each value in its own <%s> element.", path, entry)
	}
	for _, c := range e.ChildElements() {
		if c.Space != "" || c.Tag != entry {
			return mailcluster.Errorf(mailcluster.EINVALID,
				"Parameter %s: <%s> is not known here; give each value in its own <%s> element.", path, clip(c.FullTag()), entry)
		}
		rm, err := removes(path+"/"+entry, c)
		if err != nil {
			return err
		}
		if err := fn(c, strings.TrimSpace(textOf(c)), rm); err != nil {
			return err
		}
	}
	return nil
}

// missing is the StatusMissingParameter error for a parameter path.
func missing(path string) error {
	return errorf(StatusMissingParameter, "Missing required parameter: %s.", path)
}

// parseFlag parses a flag with mailcluster.ParseFlag and names the
// parameter in the error.
func parseFlag(name, v string) (bool, error) {
	b, err := mailcluster.ParseFlag(v)
	if err != nil {
		return false, mailcluster.Errorf(mailcluster.EINVALID, "Parameter %s: %q is not a flag: use Yes or No.", name, clip(v))
	}
	return b, nil
}

// clip shortens user input quoted in a message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	i := 64
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// textOf returns the concatenated character data directly inside e: the
// data itself, not a copy, when e holds one piece of it (the common case).
func textOf(e *etree.Element) string {
	var first string
	var b strings.Builder
	n := 0
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			if n++; n == 1 {
				first = cd.Data
				continue
			}
			if n == 2 {
				b.WriteString(first)
			}
			b.WriteString(cd.Data)
		}
	}
	if n > 1 {
		return b.String()
	}
	return first
}

// textElement is an element with its text and the one-token child list
// that holds it, allocated at once.
type textElement struct {
	el   etree.Element
	text etree.CharData
	kids [1]etree.Token
}

// addText appends <tag>text</tag> to parent (<tag/> for empty text): the
// tree CreateElement and SetText would build, in one allocation instead
// of three. tag has no namespace prefix.
func addText(parent *etree.Element, tag, text string) *etree.Element {
	n := &textElement{el: etree.Element{Tag: tag}, text: etree.CharData{Data: text}}
	n.el.Child = n.kids[:0:1]
	if text != "" {
		n.el.AddChild(&n.text)
	}
	parent.AddChild(&n.el)
	return &n.el
}
