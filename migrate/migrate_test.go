package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/client"
	"mailcluster/mailstore"
	"mailcluster/migrate"
)

func TestRelUnder(t *testing.T) {
	for _, tc := range []struct {
		path, root, rel string
		ok              bool
	}{
		{"/r/d/m/", "/r", "/d/m/", true},
		{"/r/d/m", "/r/", "/d/m", true},
		{"/r", "/r", "", true},
		{"/r/", "/r", "/", true},
		{"/rr/d/m/", "/r", "", false},
		{"/other/d/m/", "/r", "", false},
		{"/r/./d//m/", "/r", "/d/m/", true},
		{"relative/d", "/r", "", false},
		{"/a/b", "/", "/a/b", true},
	} {
		rel, ok := migrate.RelUnder(tc.path, tc.root)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("RelUnder(%q, %q) = %q, %v; want %q, %v", tc.path, tc.root, rel, ok, tc.rel, tc.ok)
		}
	}
}

func TestRewriteTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl, want string
		changed    bool
	}{
		{"$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/", "$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/", false},
		{"/old/$DOMAIN$/$MAILBOX$/", "/new/x/$DOMAIN$/$MAILBOX$/", true},
		{"/older/$DOMAIN$/$MAILBOX$/", "/older/$DOMAIN$/$MAILBOX$/", false},
	} {
		got, changed := migrate.RewriteTemplate(tc.tmpl, "/old", "/new/x")
		if got != tc.want || changed != tc.changed {
			t.Errorf("rewriteTemplate(%q) = %q, %v; want %q, %v", tc.tmpl, got, changed, tc.want, tc.changed)
		}
	}
}

func TestPlanMoves(t *testing.T) {
	acct := func(addr, path string) client.Account {
		mb, dom, _ := strings.Cut(addr, "@")
		return client.Account{Address: addr, Domain: dom, Mailbox: mb, MailboxPath: path}
	}
	t.Run("OK", func(t *testing.T) {
		moves, err := migrate.PlanMoves([]client.Account{
			acct("a@ex.com", "/old/ex.com/a/"),                // under the old root
			acct("b@ex.com", "/new/ex.com/b/"),                // moved by an earlier run, no journal entry
			acct("c@ex.com", "/new/ex.com/c/"),                // moved by an earlier run, journaled
			acct("d@ex.com", "/elsewhere/d/"),                 // outside both roots: skipped
			acct("e@ex.com", "/old/ex.com/e"),                 // no trailing slash
			acct("f@ex.com", "/new/ex.com/f/"),                // journaled from outside: that place is left alone
			acct("g@ex.com", "/old/ex.com/g/../../ex.com/g/"), // not clean (refused by the API anyway)
			acct("h@ex.com", "/old"),                          // the root itself: skipped
			acct("i@ex.com", "/old/../etc/"),                  // leads out of the root: skipped
		}, "/old", "/new", map[string]migrate.JournalEntry{
			"c@ex.com": {From: "/old/ex.com/c", Root: "/old"},
			"f@ex.com": {From: "/somewhere/f", Root: "/old"},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][2]string{}
		for _, mv := range moves {
			got[mv.Address()] = [2]string{mv.From(), mv.To()}
			skip := strings.Contains("d h i", mv.Address()[:1])
			if mv.Skipped() != skip {
				t.Errorf("%s: skipped = %v", mv.Address(), mv.Skipped())
			}
			if (mv.Ignored() != "") != (mv.Address() == "f@ex.com") {
				t.Errorf("%s: ignored = %q", mv.Address(), mv.Ignored())
			}
		}
		want := map[string][2]string{
			"a@ex.com": {"/old/ex.com/a", "/new/ex.com/a/"},
			"b@ex.com": {"/old/ex.com/b", "/new/ex.com/b/"},
			"c@ex.com": {"/old/ex.com/c", "/new/ex.com/c/"},
			"d@ex.com": {"", ""},
			"e@ex.com": {"/old/ex.com/e", "/new/ex.com/e"},
			"f@ex.com": {"", "/new/ex.com/f/"},
			"g@ex.com": {"/old/ex.com/g", "/new/ex.com/g/"},
			"h@ex.com": {"", ""},
			"i@ex.com": {"", ""},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("plan:\n got %v\nwant %v", got, want)
		}
	})
	t.Run("SameRoot", func(t *testing.T) {
		// After the root was switched, only journaled accounts have an old
		// place, below the root the journal recorded.
		moves, err := migrate.PlanMoves([]client.Account{acct("a@ex.com", "/new/ex.com/a/"), acct("b@ex.com", "/new/ex.com/b/"), acct("c@ex.com", "/new/ex.com/c/")},
			"/new", "/new", map[string]migrate.JournalEntry{
				"a@ex.com": {From: "/old/ex.com/a", Root: "/old"},
				"c@ex.com": {From: "/old/ex.com/c"}, // no root recorded: not trusted
			})
		if err != nil {
			t.Fatal(err)
		}
		if moves[0].From() != "/old/ex.com/a" || moves[1].From() != "" || moves[2].From() != "" || moves[2].Ignored() == "" {
			t.Fatalf("plan: %+v", moves)
		}
	})
	t.Run("SymlinkOutOfRoot", func(t *testing.T) {
		// A path below the root textually that leads outside through a
		// symbolic link is skipped.
		base := t.TempDir()
		oldRoot, elsewhere := filepath.Join(base, "old"), filepath.Join(base, "elsewhere")
		for _, d := range []string{filepath.Join(oldRoot, "ex.com"), elsewhere} {
			if err := os.MkdirAll(d, 0o750); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(elsewhere, filepath.Join(oldRoot, "ex.com", "m")); err != nil {
			t.Fatal(err)
		}
		moves, err := migrate.PlanMoves([]client.Account{acct("m@ex.com", oldRoot+"/ex.com/m/")}, oldRoot, filepath.Join(base, "new"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !moves[0].Skipped() || moves[0].From() != "" {
			t.Fatalf("plan: %+v", moves[0])
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		_, err := migrate.PlanMoves([]client.Account{acct("a@ex.com", "/old/ex.com/a/"), acct("a@ex.com.x", "/new/ex.com/a")}, "/old", "/new", nil)
		if err == nil || !strings.Contains(err.Error(), "both get") {
			t.Fatalf("err = %v, want a conflict", err)
		}
	})
}

// writeMsg writes a message file into a maildir sub-directory.
func writeMsg(t *testing.T, dir, sub, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sub, name), []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"tmp", "new", "cur"} {
		des, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, de := range des {
			out = append(out, sub+"/"+de.Name())
		}
	}
	sort.Strings(out)
	return out
}

func TestListMaildir(t *testing.T) {
	dir := t.TempDir()
	writeMsg(t, dir, "new", "1.a,S=3", "abc")
	writeMsg(t, dir, "cur", "2.b,S=2:2,S", "de")
	writeMsg(t, dir, "cur", ".hidden", "x")
	writeMsg(t, dir, "tmp", "3.c", "in progress")
	files, left, err := migrate.ListMaildir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name() != "1.a,S=3" || files[0].Size() != 3 || files[1].Sub() != "cur" || files[1].Size() != 2 {
		t.Fatalf("files: %+v", files)
	}
	if want := []string{"cur/.hidden", "tmp/3.c"}; !reflect.DeepEqual(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if files, _, err := migrate.ListMaildir(filepath.Join(dir, "missing"), nil); err != nil || len(files) != 0 {
		t.Fatalf("missing maildir: %v %v", files, err)
	}
}

func TestPlaceMessage(t *testing.T) {
	for _, link := range []bool{false, true} {
		name := "Copy"
		if link {
			name = "Link"
		}
		t.Run(name, func(t *testing.T) {
			src, dst := t.TempDir(), filepath.Join(t.TempDir(), "box")
			writeMsg(t, src, "new", "1.a", "hello")
			writeMsg(t, src, "cur", "2.b:2,S", "world!")
			if err := migrate.MakeMaildir(dst, filepath.Dir(dst)); err != nil {
				t.Fatal(err)
			}
			files, _, _ := migrate.ListMaildir(src, nil)
			for _, f := range files {
				wrote, err := migrate.PlaceMessage(src, dst, f, link)
				if err != nil || !wrote {
					t.Fatalf("place %s: %v %v", f.Name(), wrote, err)
				}
			}
			if got, want := names(t, dst), []string{"cur/2.b:2,S", "new/1.a"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("new maildir holds %v, want %v (no temporary file left)", got, want)
			}
			b, _ := os.ReadFile(filepath.Join(dst, "cur", "2.b:2,S"))
			if string(b) != "world!" {
				t.Fatalf("content %q", b)
			}
			// A second pass (a re-run) places nothing twice.
			for _, f := range files {
				if wrote, err := migrate.PlaceMessage(src, dst, f, link); err != nil || wrote {
					t.Fatalf("second pass %s: wrote=%v err=%v", f.Name(), wrote, err)
				}
			}
			for _, f := range files {
				if err := migrate.RemoveMoved(src, dst, f); err != nil {
					t.Fatal(err)
				}
			}
			if got := names(t, src); len(got) != 0 {
				t.Fatalf("old maildir still holds %v", got)
			}
			if !migrate.RemoveEmptyMaildir(src, filepath.Dir(src)) {
				t.Fatal("empty old maildir not removed")
			}
			if _, err := os.Stat(src); !os.IsNotExist(err) {
				t.Fatalf("old maildir still there: %v", err)
			}
		})
	}
	t.Run("ErrConflict", func(t *testing.T) {
		src, dst := t.TempDir(), t.TempDir()
		writeMsg(t, src, "new", "1.a", "hello")
		writeMsg(t, dst, "new", "1.a", "hel") // a different file under the same name
		files, _, _ := migrate.ListMaildir(src, nil)
		if _, err := migrate.PlaceMessage(src, dst, files[0], false); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("err = %v, want a conflict", err)
		}
		if err := migrate.RemoveMoved(src, dst, files[0]); err == nil {
			t.Fatal("the original was removed although the new place holds another file")
		}
		if b, _ := os.ReadFile(filepath.Join(src, "new", "1.a")); string(b) != "hello" {
			t.Fatal("the original changed")
		}
	})
	t.Run("LeftoverTemporary", func(t *testing.T) {
		// An interrupted copy leaves a partial file only under tmp/; the
		// next copy replaces it.
		src, dst := t.TempDir(), t.TempDir()
		writeMsg(t, src, "new", "1.a", "hello")
		if err := migrate.MakeMaildir(dst, dst); err != nil {
			t.Fatal(err)
		}
		writeMsg(t, dst, "tmp", "migrate.1.a", "he")
		files, _, _ := migrate.ListMaildir(src, nil)
		if wrote, err := migrate.PlaceMessage(src, dst, files[0], false); err != nil || !wrote {
			t.Fatalf("place: %v %v", wrote, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "new", "1.a")); string(b) != "hello" {
			t.Fatalf("content %q", b)
		}
		if got, want := names(t, dst), []string{"new/1.a"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("new maildir holds %v, want %v", got, want)
		}
	})
}

func TestRemoveEmptyMaildir(t *testing.T) {
	root := t.TempDir()
	box := filepath.Join(root, "ex.com", "a")
	writeMsg(t, box, "tmp", "in-flight", "x")
	if err := os.MkdirAll(filepath.Join(box, "new"), 0o750); err != nil {
		t.Fatal(err)
	}
	if migrate.RemoveEmptyMaildir(box, root) {
		t.Fatal("a maildir with a file in tmp/ was removed")
	}
	os.Remove(filepath.Join(box, "tmp", "in-flight"))
	if !migrate.RemoveEmptyMaildir(box, root) {
		t.Fatal("empty maildir not removed")
	}
	if _, err := os.Stat(filepath.Join(root, "ex.com")); !os.IsNotExist(err) {
		t.Fatal("empty domain directory not removed")
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatal("the root itself was removed")
	}
}

func TestJournal(t *testing.T) {
	root := t.TempDir()
	j, err := migrate.OpenJournal(root)
	if err != nil || len(j.Entries()) != 0 {
		t.Fatalf("empty journal: %v %v", j, err)
	}
	if err := j.Record("A@ex.com", "/old/a/", "/new/a/", "/old"); err != nil {
		t.Fatal(err)
	}
	if err := j.Record("a@ex.com", "/other/", "/new/a/", "/"); err != nil { // first path wins
		t.Fatal(err)
	}
	if err := j.Record("b@ex.com", "/old/b/", "/new/b/", "/old"); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(root, migrate.JournalName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"address":"c@ex.com","fr`) // torn by a crash
	f.Close()
	j, err = migrate.OpenJournal(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]migrate.JournalEntry{
		"a@ex.com": {Address: "A@ex.com", From: "/old/a/", To: "/new/a/", Root: "/old"},
		"b@ex.com": {Address: "b@ex.com", From: "/old/b/", To: "/new/b/", Root: "/old"},
	}; !reflect.DeepEqual(j.Entries(), want) {
		t.Fatalf("entries %v, want %v", j.Entries(), want)
	}
	if err := j.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, migrate.JournalName)); !os.IsNotExist(err) {
		t.Fatal("journal not removed")
	}
}

// fakePrimary is a REST API with one domain and its accounts, recording
// the changes it is asked for. onPatch runs before a PATCH is applied.
type fakePrimary struct {
	mu       sync.Mutex
	role     mailcluster.Role
	settings mailcluster.Sections
	accounts []client.Account
	calls    []string
	onPatch  func(a client.Account, newPath string)
}

func (f *fakePrimary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/node":
		reply(mailcluster.NodeInfo{Name: "n1", Role: f.role, Primary: &mailcluster.PrimaryRef{Name: "n0", APIURL: "http://10.0.0.1:8080"}})
	case r.Method == "GET" && r.URL.Path == "/api/v1/settings/mailcluster":
		reply(mailcluster.SettingsFile{Name: "mailcluster", Sections: f.settings})
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/api/v1/settings/mailcluster/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/settings/mailcluster/"), "/")
		var v struct{ Value string }
		_ = json.NewDecoder(r.Body).Decode(&v)
		if f.settings[parts[0]] == nil {
			f.settings[parts[0]] = map[string]string{}
		}
		f.settings[parts[0]][parts[1]] = v.Value
		reply(map[string]string{"value": v.Value})
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/api/v1/settings/mailcluster/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/settings/mailcluster/"), "/")
		if _, ok := f.settings[parts[0]][parts[1]]; !ok {
			http.NotFound(w, r)
			return
		}
		delete(f.settings[parts[0]], parts[1])
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "GET" && r.URL.Path == "/api/v1/domains":
		reply(map[string]any{"domains": []map[string]string{{"name": "ex.com"}}})
	case r.Method == "GET" && r.URL.Path == "/api/v1/domains/ex.com/accounts":
		reply(map[string]any{"accounts": f.accounts, "nextCursor": ""})
	case r.Method == "PATCH":
		var v struct{ MailboxPath string }
		_ = json.NewDecoder(r.Body).Decode(&v)
		for i, a := range f.accounts {
			if r.URL.Path == "/api/v1/domains/ex.com/accounts/"+a.Mailbox {
				if f.onPatch != nil {
					f.onPatch(a, v.MailboxPath)
				}
				f.accounts[i].MailboxPath = v.MailboxPath
				reply(f.accounts[i])
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

func newFakeMigrator(t *testing.T, f *fakePrimary, to string) (*migrate.Migrator, *bytes.Buffer) {
	t.Helper()
	return newFakeMigratorStderr(t, f, to, io.Discard)
}

// newFakeMigratorStderr returns a run against the fake primary through a
// real client, with no wait before the final sweep, writing its summary
// to the buffer returned and the rest to stderr.
func newFakeMigratorStderr(t *testing.T, f *fakePrimary, to string, stderr io.Writer) (*migrate.Migrator, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "admin@localhost", "secret-pass", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m := migrate.New(c, to, migrate.Options{Stdout: &out, Stderr: stderr})
	m.SetSettle(0)
	return m, &out
}

// TestMigrateOrder checks, with a fake primary, that an account's path is
// changed only once every message is in the new place, while the old
// files still exist, and that the old files go afterwards.
func TestMigrateOrder(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "new", "1.x,S=5", "hello")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "cur", "2.x,S=3:2,S", "abc")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "b"), "new", "3.x,S=1", "z")
	f := &fakePrimary{
		role: mailcluster.RolePrimary,
		settings: mailcluster.Sections{
			"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks},
			"NewAccounts": {"MailboxPath": oldRoot + "/$DOMAIN$/$MAILBOX$/"},
		},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: oldRoot + "/ex.com/a/"},
			{Address: "b@ex.com", Domain: "ex.com", Mailbox: "b", MailboxPath: oldRoot + "/ex.com/b/"},
		},
	}
	f.onPatch = func(a client.Account, newPath string) {
		oldFiles, newFiles := names(t, a.MailboxPath), names(t, newPath)
		if len(oldFiles) == 0 || !reflect.DeepEqual(oldFiles, newFiles) {
			t.Errorf("PATCH %s: old place %v, new place %v; want both complete", a.Address, oldFiles, newFiles)
		}
		// While the run is in progress the nodes accept either root.
		if got := f.settings["Directories"]["MailboxRootNext"]; got != newRoot {
			t.Errorf("PATCH %s: MailboxRootNext = %q, want %q", a.Address, got, newRoot)
		}
		// The mailbox is locked while it moves.
		_, err := (&mailstore.Locker{Dir: locks, Wait: 1}).Lock(context.Background(), a.Address)
		if !errors.Is(err, mailstore.ErrLockBusy) {
			t.Errorf("PATCH %s: lock not held (%v)", a.Address, err)
		}
	}
	m, out := newFakeMigrator(t, f, newRoot)
	m.SetNoLink()
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, filepath.Join(newRoot, "ex.com", "a")); !reflect.DeepEqual(got, []string{"cur/2.x,S=3:2,S", "new/1.x,S=5"}) {
		t.Fatalf("new a: %v", got)
	}
	if _, err := os.Stat(filepath.Join(oldRoot, "ex.com")); !os.IsNotExist(err) {
		t.Fatalf("old domain dir left: %v", err)
	}
	if f.settings["Directories"]["MailboxRoot"] != newRoot || f.settings["NewAccounts"]["MailboxPath"] != newRoot+"/$DOMAIN$/$MAILBOX$/" {
		t.Fatalf("settings: %v", f.settings)
	}
	if next, ok := f.settings["Directories"]["MailboxRootNext"]; ok {
		t.Fatalf("MailboxRootNext = %q left after the run", next)
	}
	for _, a := range f.accounts {
		if !strings.HasPrefix(a.MailboxPath, newRoot+"/") {
			t.Fatalf("account %s at %s", a.Address, a.MailboxPath)
		}
	}
	if _, err := os.Stat(filepath.Join(newRoot, migrate.JournalName)); !os.IsNotExist(err) {
		t.Fatal("journal left behind")
	}
	if !strings.Contains(out.String(), "moved 2 accounts, 3 messages") {
		t.Fatalf("summary: %s", out.String())
	}
	// A second run has nothing to do.
	m, out = newFakeMigrator(t, f, newRoot)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("second run: %s", out.String())
	}
	// A run stopped after the switch but before MailboxRootNext was
	// cleared: the next run clears it.
	f.settings["Directories"]["MailboxRootNext"] = newRoot
	m, out = newFakeMigrator(t, f, newRoot)
	if err := m.Run(context.Background()); err != nil || !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("third run: %v %s", err, out.String())
	}
	if next, ok := f.settings["Directories"]["MailboxRootNext"]; ok {
		t.Fatalf("MailboxRootNext = %q left after the third run", next)
	}
}

func TestMigrateRefusesSecondary(t *testing.T) {
	f := &fakePrimary{role: mailcluster.RoleSecondary}
	m, _ := newFakeMigrator(t, f, "/srv/new")
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not the primary") || !strings.Contains(err.Error(), "http://10.0.0.1:8080") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "GET ") {
			t.Fatalf("a secondary was asked to change something: %v", f.calls)
		}
	}
}

func TestMigrateRefusesNestedRoots(t *testing.T) {
	base := t.TempDir()
	oldRoot := filepath.Join(base, "mail")
	if err := os.MkdirAll(filepath.Join(oldRoot, "inner"), 0o750); err != nil {
		t.Fatal(err)
	}
	// Other names for the old root and for a directory inside it.
	for name, target := range map[string]string{"alias": oldRoot, "inner-alias": filepath.Join(oldRoot, "inner"), "top": "/"} {
		if err := os.Symlink(target, filepath.Join(base, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ to, want string }{
		{oldRoot + "/new", "inside"},
		{base, "inside"},
		{filepath.Join(base, "alias"), "under another name"},
		{filepath.Join(base, "inner-alias", "x"), "inside"},
		{filepath.Join(base, "top"), "file system root"},
	} {
		f := &fakePrimary{role: mailcluster.RolePrimary, settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": filepath.Join(base, "locks")}}}
		m, _ := newFakeMigrator(t, f, tc.to)
		if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("--to %s: err = %v, want %q", tc.to, err, tc.want)
		}
		for _, c := range f.calls {
			if !strings.HasPrefix(c, "GET ") {
				t.Fatalf("--to %s: something was changed: %v", tc.to, f.calls)
			}
		}
	}
	t.Run("ErrOtherMoveUnfinished", func(t *testing.T) {
		f := &fakePrimary{role: mailcluster.RolePrimary, settings: mailcluster.Sections{"Directories": {
			"MailboxRoot": oldRoot, "MailboxRootNext": filepath.Join(base, "first"), "LockFiles": filepath.Join(base, "locks")}}}
		m, _ := newFakeMigrator(t, f, filepath.Join(base, "second"))
		if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--to "+filepath.Join(base, "first")) {
			t.Fatalf("err = %v", err)
		}
		for _, c := range f.calls {
			if !strings.HasPrefix(c, "GET ") {
				t.Fatalf("something was changed: %v", f.calls)
			}
		}
	})
}

// TestMigrateInterrupted cancels a run while it waits for a mailbox's
// lock: what is done stays done, the rest stays where it was, and a second
// run finishes without loss or duplicates.
func TestMigrateInterrupted(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "new", "1.x,S=5", "hello")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "b"), "new", "3.x,S=1", "z")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "b"), "new", "4.x,S=1", "y")
	// b's first message was copied by an earlier run that was interrupted.
	writeMsg(t, filepath.Join(newRoot, "ex.com", "b"), "new", "3.x,S=1", "z")
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: oldRoot + "/ex.com/a/"},
			{Address: "b@ex.com", Domain: "ex.com", Mailbox: "b", MailboxPath: oldRoot + "/ex.com/b/"},
		},
	}
	held, err := (&mailstore.Locker{Dir: locks}).Lock(context.Background(), "b@ex.com")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.onPatch = func(a client.Account, _ string) {
		if a.Address == "a@ex.com" {
			cancel() // the next step (b's lock) sees the interruption
		}
	}
	m, _ := newFakeMigrator(t, f, newRoot)
	if err := m.Run(ctx); !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	held.Unlock()
	if f.accounts[0].MailboxPath != newRoot+"/ex.com/a/" || f.accounts[1].MailboxPath != oldRoot+"/ex.com/b/" {
		t.Fatalf("after the interruption: %+v", f.accounts)
	}
	if f.settings["Directories"]["MailboxRoot"] != oldRoot {
		t.Fatal("root switched by an interrupted run")
	}
	if got := f.settings["Directories"]["MailboxRootNext"]; got != newRoot {
		t.Fatalf("MailboxRootNext = %q after the interruption, want %q (a's path is under it)", got, newRoot)
	}
	f.onPatch = nil
	m, out := newFakeMigrator(t, f, newRoot)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, filepath.Join(newRoot, "ex.com", "b")); !reflect.DeepEqual(got, []string{"new/3.x,S=1", "new/4.x,S=1"}) {
		t.Fatalf("b after the re-run: %v", got)
	}
	// Already in place: b's first message (copied by hand) and a's (placed
	// before the interruption, whose old copy the re-run removed).
	if !strings.Contains(out.String(), "moved 2 accounts, 3 messages") || !strings.Contains(out.String(), "2 of them were already in the new place") {
		t.Fatalf("summary: %s", out.String())
	}
	if _, err := os.Stat(filepath.Join(oldRoot, "ex.com")); !os.IsNotExist(err) {
		t.Fatalf("old domain dir left: %v", err)
	}
	if next, ok := f.settings["Directories"]["MailboxRootNext"]; ok {
		t.Fatalf("MailboxRootNext = %q left after the resumed run", next)
	}
}

// fileTree lists every entry under dir (relative paths; symbolic links
// marked, never followed).
func fileTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 {
			rel += "@"
		} else if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestMigrateSkipsOutsideRoot reproduces an account pointed at a
// directory outside the mailbox root that holds files of the host
// (new/app.conf, cur/id_rsa, and a file with a Maildir name): the run
// leaves all of it in place, moves nothing of it under the new root,
// reports the account and ends with an error, while the other accounts
// move and the root switches.
func TestMigrateSkipsOutsideRoot(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	victim := filepath.Join(base, "etc", "app")
	writeMsg(t, victim, "new", "app.conf", "secret=1")
	writeMsg(t, victim, "cur", "id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----")
	writeMsg(t, victim, "cur", "1700000000.M1.host,S=4:2,S", "data")
	before := fileTree(t, victim)
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "new", "1.x,S=5", "hello")
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: oldRoot + "/ex.com/a/"},
			{Address: "m@ex.com", Domain: "ex.com", Mailbox: "m", MailboxPath: victim + "/"},
		},
	}
	var errOut bytes.Buffer
	m, out := newFakeMigratorStderr(t, f, newRoot, &errOut)
	err := m.Run(context.Background())
	t.Logf("stdout:\n%sstderr:\n%s", out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 account skipped (mailbox path outside the mailbox root") {
		t.Fatalf("err = %v, want the skipped account named", err)
	}
	if !strings.Contains(errOut.String(), "m@ex.com: skipped: mailbox path outside the mailbox root") ||
		!strings.Contains(out.String(), "1 account skipped: mailbox path outside the mailbox root") {
		t.Fatal("the skipped account is not reported")
	}
	if got := fileTree(t, victim); !reflect.DeepEqual(got, before) {
		t.Fatalf("the outside directory changed: %v, was %v", got, before)
	}
	for name, want := range map[string]string{"new/app.conf": "secret=1", "cur/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----"} {
		if b, err := os.ReadFile(filepath.Join(victim, name)); err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", name, b, err)
		}
	}
	for _, p := range fileTree(t, newRoot) {
		if strings.Contains(p, "app.conf") || strings.Contains(p, "id_rsa") || strings.Contains(p, "1700000000") || strings.Contains(p, "/m/") {
			t.Fatalf("%s appeared under the new root: %v", p, fileTree(t, newRoot))
		}
	}
	for _, c := range f.calls {
		if strings.HasSuffix(c, "/accounts/m") {
			t.Fatalf("the skipped account was changed: %v", f.calls)
		}
	}
	if f.accounts[0].MailboxPath != newRoot+"/ex.com/a/" || f.accounts[1].MailboxPath != victim+"/" {
		t.Fatalf("accounts: %+v", f.accounts)
	}
	if got := names(t, filepath.Join(newRoot, "ex.com", "a")); !reflect.DeepEqual(got, []string{"new/1.x,S=5"}) {
		t.Fatalf("a under the new root: %v", got)
	}
	// Skipped accounts do not hold the switch back; the next root is cleared.
	if f.settings["Directories"]["MailboxRoot"] != newRoot {
		t.Fatalf("MailboxRoot = %q", f.settings["Directories"]["MailboxRoot"])
	}
	if next, ok := f.settings["Directories"]["MailboxRootNext"]; ok {
		t.Fatalf("MailboxRootNext = %q left", next)
	}
	// A second run still reports the account and still fails, touching nothing.
	m, _ = newFakeMigrator(t, f, newRoot)
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "outside the mailbox root") {
		t.Fatalf("second run: err = %v", err)
	}
	if got := fileTree(t, victim); !reflect.DeepEqual(got, before) {
		t.Fatalf("the outside directory changed on the second run: %v", got)
	}
}

// TestMigrateLeavesForeignFiles moves a mailbox under the root that also
// holds entries that are no part of a Maildir: only the messages, a
// Maildir++ folder and the metadata move; a foreign file, a symbolic link
// named like a message, a file with another name in cur/ and a linked
// folder stay, and so does the old directory.
func TestMigrateLeavesForeignFiles(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	box := filepath.Join(oldRoot, "ex.com", "a")
	writeMsg(t, box, "new", "1.x,S=5", "hello")
	writeMsg(t, box, "cur", "2.x,S=3:2,S", "abc")
	writeMsg(t, box, ".Sent/cur", "3.x,S=1:2,S", "z")
	writeMsg(t, box, ".Sent", "maildirfolder", "")
	writeMsg(t, box, "", "maildirsize", "0S\n")
	writeMsg(t, box, "", mailstore.UIDFile, "7 2\n")
	writeMsg(t, box, "", mailstore.UIDLogFile, "7 1 1.x\n")
	writeMsg(t, box, ".Sent", mailstore.UIDLogFile, "8 1 3.x\n")
	writeMsg(t, box, "", "notes.txt", "private")
	writeMsg(t, box, "cur", "app.conf", "secret=1")
	if err := os.Symlink("/etc/hostname", filepath.Join(box, "cur", "1234.link:2,S")); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(base, "elsewhere")
	writeMsg(t, elsewhere, "cur", "4.x,S=1:2,S", "y")
	if err := os.Symlink(elsewhere, filepath.Join(box, ".Linked")); err != nil {
		t.Fatal(err)
	}
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: box + "/"}},
	}
	var errOut bytes.Buffer
	m, out := newFakeMigratorStderr(t, f, newRoot, &errOut)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("stdout:\n%sstderr:\n%s", out, &errOut)
	newBox := filepath.Join(newRoot, "ex.com", "a")
	if got, want := fileTree(t, newBox), []string{
		".Sent/", ".Sent/cur/", ".Sent/cur/3.x,S=1:2,S", ".Sent/mailcluster-uids.log", ".Sent/maildirfolder", ".Sent/new/", ".Sent/tmp/",
		"cur/", "cur/2.x,S=3:2,S", "mailcluster-uids", "mailcluster-uids.log", "maildirsize", "new/", "new/1.x,S=5", "tmp/",
	}; !reflect.DeepEqual(got, want) {
		t.Fatalf("new maildir:\n got %v\nwant %v", got, want)
	}
	if got, want := fileTree(t, box), []string{".Linked@", "cur/", "cur/1234.link:2,S@", "cur/app.conf", "notes.txt"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("old maildir:\n got %v\nwant %v", got, want)
	}
	if target, err := os.Readlink(filepath.Join(box, "cur", "1234.link:2,S")); err != nil || target != "/etc/hostname" {
		t.Fatalf("the link changed: %q %v", target, err)
	}
	if got := fileTree(t, elsewhere); !reflect.DeepEqual(got, []string{"cur/", "cur/4.x,S=1:2,S"}) {
		t.Fatalf("the linked folder's target changed: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(box, "notes.txt")); string(b) != "private" {
		t.Fatal("notes.txt changed")
	}
	for _, want := range []string{"notes.txt", "cur/1234.link:2,S (symbolic link)", "cur/app.conf", ".Linked (symbolic link)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Fatalf("%q is not reported as left in place", want)
		}
	}
	if !strings.Contains(out.String(), "moved 1 account, 3 messages") || !strings.Contains(out.String(), "1 old maildir left in place") {
		t.Fatalf("summary: %s", out)
	}
	if f.accounts[0].MailboxPath != newBox+"/" {
		t.Fatalf("account at %s", f.accounts[0].MailboxPath)
	}
}

// TestMigrateNestedMailbox keeps a mailbox that lies inside another
// account's mailbox (named like a Maildir++ folder) for its own account.
func TestMigrateNestedMailbox(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	outer := filepath.Join(oldRoot, "ex.com", "a")
	writeMsg(t, outer, "new", "1.x,S=1", "a")
	writeMsg(t, filepath.Join(outer, ".b"), "new", "2.x,S=1", "b")
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: outer + "/"},
			{Address: "b@ex.com", Domain: "ex.com", Mailbox: "b", MailboxPath: outer + "/.b/"},
		},
	}
	m, _ := newFakeMigrator(t, f, newRoot)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, filepath.Join(newRoot, "ex.com", "a")); !reflect.DeepEqual(got, []string{"new/1.x,S=1"}) {
		t.Fatalf("a: %v", got)
	}
	if got := names(t, filepath.Join(newRoot, "ex.com", "a", ".b")); !reflect.DeepEqual(got, []string{"new/2.x,S=1"}) {
		t.Fatalf("b: %v", got)
	}
	if f.accounts[1].MailboxPath != newRoot+"/ex.com/a/.b/" {
		t.Fatalf("b at %s", f.accounts[1].MailboxPath)
	}
}

// TestMigrateLinkSwappedIn replaces a mailbox under the root with a
// symbolic link to another directory after the run planned it: the run
// checks again under the mailbox's lock and leaves the target alone.
func TestMigrateLinkSwappedIn(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	victim := filepath.Join(base, "victim")
	writeMsg(t, victim, "cur", "1700000000.M1.host,S=4:2,S", "data")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "new", "1.x,S=1", "a")
	bBox := filepath.Join(oldRoot, "ex.com", "b")
	writeMsg(t, bBox, "new", "2.x,S=1", "b")
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: oldRoot + "/ex.com/a/"},
			{Address: "b@ex.com", Domain: "ex.com", Mailbox: "b", MailboxPath: bBox + "/"},
		},
	}
	f.onPatch = func(a client.Account, _ string) {
		if a.Address != "a@ex.com" {
			return
		}
		if err := os.Rename(bBox, bBox+".away"); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(victim, bBox); err != nil {
			t.Error(err)
		}
	}
	m, _ := newFakeMigrator(t, f, newRoot)
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 2 accounts could not be moved") {
		t.Fatalf("err = %v", err)
	}
	if got := fileTree(t, victim); !reflect.DeepEqual(got, []string{"cur/", "cur/1700000000.M1.host,S=4:2,S"}) {
		t.Fatalf("the link's target changed: %v", got)
	}
	if f.accounts[1].MailboxPath != bBox+"/" || f.settings["Directories"]["MailboxRoot"] != oldRoot {
		t.Fatalf("b or the root changed: %+v %v", f.accounts[1], f.settings)
	}
	if f.settings["Directories"]["MailboxRootNext"] != newRoot {
		t.Fatal("MailboxRootNext cleared although a's path is under the new root")
	}
}

// recordingProgress records what a run tells its progress display.
type recordingProgress struct {
	total    int64
	accounts []string
	messages int64
	done     []migrate.AccountReport
	ended    int
}

func (p *recordingProgress) Account(address string)              { p.accounts = append(p.accounts, address) }
func (p *recordingProgress) Message()                            { p.messages++ }
func (p *recordingProgress) Grow(n int64)                        { p.total += n }
func (p *recordingProgress) AccountDone(r migrate.AccountReport) { p.done = append(p.done, r) }
func (p *recordingProgress) Done()                               { p.ended++ }

// TestMigrateProgress checks what the main pass tells Options.Progress:
// the messages counted up front, each account as it starts and ends, one
// call per file placed, and the end of the pass.
func TestMigrateProgress(t *testing.T) {
	base := t.TempDir()
	oldRoot, newRoot, locks := filepath.Join(base, "old"), filepath.Join(base, "new"), filepath.Join(base, "locks")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "new", "1.x,S=5", "hello")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "a"), "cur", "2.x,S=3:2,S", "abc")
	writeMsg(t, filepath.Join(oldRoot, "ex.com", "b"), "new", "3.x,S=1", "z")
	f := &fakePrimary{
		role:     mailcluster.RolePrimary,
		settings: mailcluster.Sections{"Directories": {"MailboxRoot": oldRoot, "LockFiles": locks}},
		accounts: []client.Account{
			{Address: "a@ex.com", Domain: "ex.com", Mailbox: "a", MailboxPath: oldRoot + "/ex.com/a/"},
			{Address: "b@ex.com", Domain: "ex.com", Mailbox: "b", MailboxPath: oldRoot + "/ex.com/b/"},
		},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "admin@localhost", "secret-pass", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProgress{}
	calls := 0
	m := migrate.New(c, newRoot, migrate.Options{Progress: func(total int64) migrate.Progress {
		calls++
		p.total = total
		return p
	}})
	m.SetSettle(0)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || p.total != 3 || p.messages != 3 || p.ended != 1 || !reflect.DeepEqual(p.accounts, []string{"a@ex.com", "b@ex.com"}) {
		t.Fatalf("progress: %d displays, %+v", calls, p)
	}
	want := []migrate.AccountReport{
		{Address: "a@ex.com", To: newRoot + "/ex.com/a/", Moved: 2, Bytes: 8, Patched: true},
		{Address: "b@ex.com", To: newRoot + "/ex.com/b/", Moved: 1, Bytes: 1, Patched: true},
	}
	if !reflect.DeepEqual(p.done, want) {
		t.Fatalf("reports:\n got %+v\nwant %+v", p.done, want)
	}
}
