package xmlapi_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/service"
)

// Helpers of the alias, list and group tests.

// sys is the node's own context, for setting up and reading state.
func sys() context.Context { return service.SystemContext(context.Background(), "test") }

// mustCreateAlias creates name@domain -> target through the service.
func (e *Env) mustCreateAlias(tb testing.TB, domain, name, target string) {
	tb.Helper()
	if _, err := e.Svc.CreateAlias(sys(), domain, name, target); err != nil {
		tb.Fatal(err)
	}
}

// mustCreateList creates a list through the service.
func (e *Env) mustCreateList(tb testing.TB, in mailcluster.ListCreate) {
	tb.Helper()
	if _, err := e.Svc.CreateList(sys(), in); err != nil {
		tb.Fatal(err)
	}
}

// mustCreateGroup creates a group through the service.
func (e *Env) mustCreateGroup(tb testing.TB, in mailcluster.GroupCreate) {
	tb.Helper()
	if _, err := e.Svc.CreateGroup(sys(), in); err != nil {
		tb.Fatal(err)
	}
}

// mailState reads, as the node, the accounts, aliases, lists (with their
// members) and groups (with theirs) of domains: what a refused write must
// leave as it was.
func (e *Env) mailState(tb testing.TB, domains ...string) string {
	tb.Helper()
	state := map[string]any{}
	must := func(what string, v any, err error) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
		state[what] = v
	}
	for _, d := range domains {
		accounts, _, err := e.Svc.FindAccounts(sys(), mailcluster.AccountFilter{Domain: d, Limit: 1000})
		must("accounts of "+d, accounts, err)
		aliases, _, err := e.Svc.FindAliases(sys(), d, "", 1000)
		must("aliases of "+d, aliases, err)
		lists, _, err := e.Svc.FindLists(sys(), d, "", 1000)
		must("lists of "+d, lists, err)
		for _, l := range lists {
			ms, _, err := e.Svc.FindListMembers(sys(), d, l.Name, "", 1000)
			must("members of "+l.Address(), ms, err)
		}
		groups, _, err := e.Svc.FindGroups(sys(), d, "", 1000)
		must("groups of "+d, groups, err)
		for _, g := range groups {
			ms, _, err := e.Svc.FindGroupMembers(sys(), d, g.Name, "", 1000)
			must("members of group "+g.Name+"@"+d, ms, err)
		}
	}
	b, err := json.MarshalIndent(state, "", " ")
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// refusedUnchanged runs call, which must be refused with status id, and
// checks that the store and the mail state of domains did not change; it
// returns the status message.
func (e *Env) refusedUnchanged(t *testing.T, id int, call func() *Response, domains ...string) string {
	t.Helper()
	before, index := e.mailState(t, domains...), e.Store.Index()
	msg := call().MustStatus(t, id)
	if got := e.Store.Index(); got != index {
		t.Errorf("store index moved from %d to %d", index, got)
	}
	if after := e.mailState(t, domains...); after != before {
		t.Errorf("state changed:\n%s\nwas\n%s", after, before)
	}
	return msg
}

// refusedClassic sends op with params as a global administrator
// (refusedUnchanged).
func (e *Env) refusedClassic(t *testing.T, id int, op, params string, domains ...string) string {
	t.Helper()
	return e.refusedUnchanged(t, id, func() *Response { return e.classic(t, "0", op, params) }, domains...)
}

// counted returns the <child> elements of the element at path in the
// result of r, after checking that it holds nothing else and that its
// count attribute counts them.
func counted(t *testing.T, r *Response, path, child string) []*etree.Element {
	t.Helper()
	e := r.Result().FindElement(path)
	if e == nil {
		t.Fatalf("no %s:\n%s", path, r.Body)
	}
	els := e.SelectElements(child)
	if len(els) != len(e.ChildElements()) {
		t.Fatalf("%s holds other elements than <%s>:\n%s", path, child, r.Body)
	}
	if got := e.SelectAttrValue("count", ""); got != strconv.Itoa(len(els)) {
		t.Fatalf("%s count=%q, %d <%s>:\n%s", path, got, len(els), child, r.Body)
	}
	return els
}

// mustTexts checks the text at each path of the result of r.
func mustTexts(t *testing.T, r *Response, want map[string]string) {
	t.Helper()
	for path, w := range want {
		if got := r.Text(path); got != w {
			t.Errorf("%s = %q, want %q", path, got, w)
		}
	}
}

// texts returns the text of each element, joined with commas.
func texts(els []*etree.Element) string {
	var out []string
	for _, e := range els {
		out = append(out, e.Text())
	}
	return strings.Join(out, ",")
}

// attrValues returns attribute attr of each element, joined with commas.
func attrValues(els []*etree.Element, attr string) string {
	var out []string
	for _, e := range els {
		out = append(out, e.SelectAttrValue(attr, ""))
	}
	return strings.Join(out, ",")
}
