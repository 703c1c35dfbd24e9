package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailcluster/mailstore"
)

type migrateAccount struct {
	Address     string `json:"address"`
	MailboxPath string `json:"mailboxPath"`
}

func getAccount(t testing.TB, n *Node, addr string) migrateAccount {
	t.Helper()
	mb, dom, _ := strings.Cut(addr, "@")
	code, body := admin(t, n, "GET", "/api/v1/domains/"+dom+"/accounts/"+mb, "")
	var a migrateAccount
	if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
		t.Fatalf("account %s: %d %s", addr, code, body)
	}
	return a
}

func getSetting(t testing.TB, n *Node, section, key string) string {
	t.Helper()
	code, body := admin(t, n, "GET", "/api/v1/settings/mailcluster/"+section+"/"+key, "")
	var s struct{ Value string }
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("setting [%s] %s: %d %s", section, key, code, body)
	}
	return s.Value
}

// maildirFiles lists the message files of a maildir's new/ and cur/.
func maildirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, de := range des {
			out = append(out, sub+"/"+de.Name())
		}
	}
	sort.Strings(out)
	return out
}

// setupMigrate starts a standalone node with domain example.com and the
// given accounts, each receiving count[i] messages, and returns the node.
// An account given as "name=/path/" gets that explicit mailbox path, in
// which $ROOT$ stands for the node's mailbox root.
func setupMigrate(t *testing.T, accounts []string, count []int) *Node {
	t.Helper()
	n := StartNode(t, t.TempDir(), adminEnv)
	if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	root := getSetting(t, n, "Directories", "MailboxRoot")
	for i, a := range accounts {
		mb, path, _ := strings.Cut(a, "=")
		path = strings.ReplaceAll(path, "$ROOT$", root)
		req := fmt.Sprintf(`{"mailbox":%q,"password":"pass-%s-123"}`, mb, mb)
		if path != "" {
			req = fmt.Sprintf(`{"mailbox":%q,"password":"pass-%s-123","mailboxPath":%q}`, mb, mb, path)
		}
		if code, body := admin(t, n, "POST", "/api/v1/domains/example.com/accounts", req); code != 201 {
			t.Fatalf("create account %s: %d %s", mb, code, body)
		}
		for j := range count[i] {
			if err := sendGo(n.SMTP, mb+"@example.com", fmt.Sprintf("%s-%d", mb, j), strings.Repeat("body of a message ", 20+j)); err != nil {
				t.Fatalf("send to %s: %v", mb, err)
			}
		}
	}
	return n
}

// TestMigrateMailboxes moves three mailboxes (one with a path of its own
// below the root) to a new root and checks that every message is still
// there, under the new root only, that new mail goes there, and that a
// second run does nothing.
func TestMigrateMailboxes(t *testing.T) {
	n := setupMigrate(t, []string{"alice", "bob", "carol=$ROOT$/elsewhere/carol/"}, []int{4, 3, 2})
	oldRoot := getSetting(t, n, "Directories", "MailboxRoot")
	outside := filepath.Join(oldRoot, "elsewhere", "carol") + "/"
	addrs := []string{"alice@example.com", "bob@example.com", "carol@example.com"}
	before := map[string]map[string]string{}
	for _, a := range addrs {
		before[a] = allMessages(t, n, a)
	}
	if len(before["alice@example.com"]) != 4 || len(before["carol@example.com"]) != 2 {
		t.Fatalf("messages before: %v", before)
	}
	newRoot := filepath.Join(t.TempDir(), "new-root")

	stdout, stderr, code := runCLI(t, adminEnv, "migrate-mailboxes", "--to", newRoot, "--url", n.BaseURL)
	t.Logf("migrate-mailboxes:\n%s%s", stdout, stderr)
	if code != 0 {
		t.Fatalf("migrate-mailboxes: exit %d", code)
	}
	if !strings.Contains(stdout, "moved 4 accounts, 9 messages") {
		t.Fatalf("summary: %s", stdout)
	}
	// stderr is not a terminal: one plain line per account, no progress bar.
	if !strings.Contains(stderr, "alice@example.com: 4 messages") || strings.Contains(stderr, "\r") {
		t.Fatalf("progress lines: %q", stderr)
	}
	for _, a := range addrs {
		after := allMessages(t, n, a)
		if fmt.Sprint(after) != fmt.Sprint(before[a]) {
			t.Fatalf("%s: messages before %v, after %v", a, before[a], after)
		}
		acc := getAccount(t, n, a)
		mb, _, _ := strings.Cut(a, "@")
		want := newRoot + "/example.com/" + mb + "/"
		if mb == "carol" {
			want = newRoot + "/elsewhere/carol/"
		}
		if acc.MailboxPath != want {
			t.Fatalf("%s: mailboxPath %q, want %q", a, acc.MailboxPath, want)
		}
		if files := maildirFiles(t, acc.MailboxPath); len(files) != len(before[a]) {
			t.Fatalf("%s: %d files under the new root: %v", a, len(files), files)
		}
	}
	if got := getSetting(t, n, "Directories", "MailboxRoot"); got != newRoot {
		t.Fatalf("MailboxRoot = %q, want %q", got, newRoot)
	}
	if code, body := admin(t, n, "GET", "/api/v1/settings/mailcluster/Directories/MailboxRootNext", ""); code != 404 {
		t.Fatalf("MailboxRootNext after the run: %d %s", code, body)
	}
	if got := getSetting(t, n, "NewAccounts", "MailboxPath"); !strings.HasPrefix(got, "$MAILBOXROOT$") {
		t.Fatalf("template = %q, want it to keep $MAILBOXROOT$", got)
	}
	for _, dir := range []string{filepath.Join(oldRoot, "example.com"), outside} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("old mailbox directory %s still exists (%v)", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(newRoot, ".mailcluster-migrate.jsonl")); !os.IsNotExist(err) {
		t.Fatal("the journal was left behind")
	}

	// New mail goes to the new root; a new account is created under it.
	if err := sendGo(n.SMTP, "alice@example.com", "after-move", "hello again"); err != nil {
		t.Fatal(err)
	}
	if _, ok := allMessages(t, n, "alice@example.com")["after-move"]; !ok {
		t.Fatal("a message delivered after the move is not listed")
	}
	if files := maildirFiles(t, filepath.Join(newRoot, "example.com", "alice")); len(files) != 5 {
		t.Fatalf("new delivery not under the new root: %v", files)
	}
	if code, body := admin(t, n, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"dave","password":"pass-dave-123"}`); code != 201 ||
		!strings.Contains(body, newRoot+"/example.com/dave/") {
		t.Fatalf("new account: %d %s", code, body)
	}

	stdout, stderr, code = runCLI(t, adminEnv, "migrate-mailboxes", "--to", newRoot, "--url", n.BaseURL)
	if code != 0 || !strings.Contains(stdout, "nothing to do") || strings.Contains(stdout, "moved") {
		t.Fatalf("second run: exit %d\n%s%s", code, stdout, stderr)
	}
}

// treeOf lists every entry under dir (relative paths, symbolic links
// marked with "@" and not followed).
func treeOf(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == ".":
			return nil
		case d.Type()&os.ModeSymlink != 0:
			rel += "@"
		case d.IsDir():
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

// TestMigrateMailboxesOutsideRoot reproduces a migration over an account
// whose mailbox leads to a directory of the host holding new/app.conf and
// cur/id_rsa (its path below the root was replaced by a symbolic link),
// next to a mailbox below the root that also holds a foreign notes.txt and
// a symbolic link named like a message. The run moves only alice's
// messages, leaves every other file where it was, reports mallory as
// skipped and exits with status 1; MailboxRootNext is set while it runs
// and cleared afterwards.
func TestMigrateMailboxesOutsideRoot(t *testing.T) {
	n := setupMigrate(t, []string{"alice", "bob", "mallory"}, []int{3, 1, 0})
	lockDir := getSetting(t, n, "Directories", "LockFiles")
	newRoot := filepath.Join(t.TempDir(), "new-root")

	victim := filepath.Join(t.TempDir(), "etc", "app")
	for name, content := range map[string]string{"new/app.conf": "secret=1\n", "cur/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(victim, name)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(victim, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mallory := strings.TrimSuffix(getAccount(t, n, "mallory@example.com").MailboxPath, "/")
	if err := os.RemoveAll(mallory); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(mallory), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, mallory); err != nil {
		t.Fatal(err)
	}
	victimBefore := treeOf(t, victim)

	oldAlice := strings.TrimSuffix(getAccount(t, n, "alice@example.com").MailboxPath, "/")
	if err := os.WriteFile(filepath.Join(oldAlice, "notes.txt"), []byte("private"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(oldAlice, "cur", "1234.link:2,S")); err != nil {
		t.Fatal(err)
	}
	alice := allMessages(t, n, "alice@example.com")
	if len(alice) != 3 {
		t.Fatalf("alice before: %v", alice)
	}

	// Hold bob's lock so that the run pauses after alice, and look at the
	// settings meanwhile.
	held, err := (&mailstore.Locker{Dir: lockDir}).Lock(context.Background(), "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	_, wait := startCLI(t, adminEnv, "migrate-mailboxes", "--to", newRoot, "--url", n.BaseURL)
	eventually(t, 15*time.Second, "alice moved", func() bool {
		return strings.HasPrefix(getAccount(t, n, "alice@example.com").MailboxPath, newRoot+"/")
	})
	if got := getSetting(t, n, "Directories", "MailboxRootNext"); got != newRoot {
		t.Fatalf("MailboxRootNext during the run = %q, want %q", got, newRoot)
	}
	_ = held.Unlock()
	stdout, stderr, code := wait()
	t.Logf("migrate-mailboxes:\n%s%s", stdout, stderr)
	if code != 1 || !strings.Contains(stderr, "mallory@example.com: skipped: mailbox path outside the mailbox root") ||
		!strings.Contains(stderr, "a global administrator must set their mailboxPath") {
		t.Fatalf("exit %d; want 1, mallory reported as skipped and a hint", code)
	}

	// Nothing of mallory's directory moved or went away.
	if got := treeOf(t, victim); fmt.Sprint(got) != fmt.Sprint(victimBefore) {
		t.Fatalf("the directory mallory pointed at changed: %v, was %v", got, victimBefore)
	}
	for name, want := range map[string]string{"new/app.conf": "secret=1\n", "cur/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n"} {
		if b, err := os.ReadFile(filepath.Join(victim, name)); err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", name, b, err)
		}
	}
	if target, err := os.Readlink(mallory); err != nil || target != victim {
		t.Fatalf("mallory's link: %q %v", target, err)
	}
	for _, p := range treeOf(t, newRoot) {
		if strings.Contains(p, "app.conf") || strings.Contains(p, "id_rsa") || strings.Contains(p, "mallory") {
			t.Fatalf("%s appeared under the new root", p)
		}
	}
	if got := getAccount(t, n, "mallory@example.com").MailboxPath; got != mallory+"/" {
		t.Fatalf("mallory's path changed to %s", got)
	}

	// Alice's messages moved; her foreign file and the link stayed, and so
	// did her old directory.
	if got := allMessages(t, n, "alice@example.com"); fmt.Sprint(got) != fmt.Sprint(alice) {
		t.Fatalf("alice after: %v, before %v", got, alice)
	}
	newAlice := filepath.Join(newRoot, "example.com", "alice")
	if got := maildirFiles(t, newAlice); len(got) != 3 {
		t.Fatalf("alice's new maildir: %v", got)
	}
	if got := treeOf(t, oldAlice); fmt.Sprint(got) != fmt.Sprint([]string{"cur/", "cur/1234.link:2,S@", "notes.txt"}) {
		t.Fatalf("alice's old directory: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(newAlice, "notes.txt")); !os.IsNotExist(err) {
		t.Fatal("notes.txt was moved")
	}
	if _, err := os.Lstat(filepath.Join(newAlice, "cur", "1234.link:2,S")); !os.IsNotExist(err) {
		t.Fatal("the symbolic link was moved")
	}
	if !strings.Contains(stderr, "notes.txt") || !strings.Contains(stderr, "cur/1234.link:2,S (symbolic link)") {
		t.Fatal("the files left in place are not reported")
	}

	// The root switched (the skipped account does not hold it back) and
	// the next root is cleared.
	if got := getSetting(t, n, "Directories", "MailboxRoot"); got != newRoot {
		t.Fatalf("MailboxRoot = %q, want %q", got, newRoot)
	}
	if code, body := admin(t, n, "GET", "/api/v1/settings/mailcluster/Directories/MailboxRootNext", ""); code != 404 {
		t.Fatalf("MailboxRootNext after the run: %d %s", code, body)
	}
	if !strings.HasPrefix(getAccount(t, n, "bob@example.com").MailboxPath, newRoot+"/") {
		t.Fatal("bob was not moved")
	}
}

// startCLI starts the binary in the background; wait returns its exit
// status and output (bounded to 30s).
func startCLI(t *testing.T, env []string, args ...string) (cmd *exec.Cmd, wait func() (string, string, int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd = exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: new(sync.Mutex), w: &o}, &lockedWriter{mu: new(sync.Mutex), w: &e}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := false
	t.Cleanup(func() {
		if !done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		cancel()
	})
	return cmd, func() (string, string, int) {
		_ = cmd.Wait()
		done = true
		if ctx.Err() != nil {
			t.Fatalf("%v did not finish within 30s", args)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}
}

// TestMigrateMailboxesInterrupted interrupts a move with SIGINT and runs it
// again: a half-done copy, a stray temporary file and a message delivered
// to the old path after the switch end up once each in the new place.
func TestMigrateMailboxesInterrupted(t *testing.T) {
	n := setupMigrate(t, []string{"alice", "bob"}, []int{5, 3})
	oldRoot := getSetting(t, n, "Directories", "MailboxRoot")
	lockDir := getSetting(t, n, "Directories", "LockFiles")
	newRoot := filepath.Join(t.TempDir(), "new-root")
	oldAlice, newAlice := filepath.Join(oldRoot, "example.com", "alice"), filepath.Join(newRoot, "example.com", "alice")
	oldBob, newBob := filepath.Join(oldRoot, "example.com", "bob"), filepath.Join(newRoot, "example.com", "bob")

	// An earlier run copied two of bob's messages and was killed while
	// writing a third one (its partial file is only under tmp/).
	files := maildirFiles(t, oldBob)
	for _, dir := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(newBob, dir), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		b, err := os.ReadFile(filepath.Join(oldBob, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(newBob, f)
		if i == 2 {
			dst, b = filepath.Join(newBob, "tmp", "migrate."+filepath.Base(f)), b[:len(b)/2]
		}
		if err := os.WriteFile(dst, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}

	// Hold bob's lock (as a long delivery would): the run moves alice, then
	// waits for bob, and is interrupted there.
	held, err := (&mailstore.Locker{Dir: lockDir}).Lock(context.Background(), "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	cmd, wait := startCLI(t, adminEnv, "migrate-mailboxes", "--to", newRoot, "--url", n.BaseURL)
	eventually(t, 15*time.Second, "alice moved", func() bool {
		return getAccount(t, n, "alice@example.com").MailboxPath == newAlice+"/"
	})
	time.Sleep(200 * time.Millisecond) // the run now waits for bob's lock
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := wait()
	t.Logf("interrupted run:\n%s%s", stdout, stderr)
	if code != 1 || !strings.Contains(stderr, "run the same command again") {
		t.Fatalf("interrupted run: exit %d, want 1 and a hint to run again", code)
	}
	_ = held.Unlock()
	if got := getSetting(t, n, "Directories", "MailboxRoot"); got != oldRoot {
		t.Fatalf("an interrupted run switched MailboxRoot to %q", got)
	}
	if got := getAccount(t, n, "bob@example.com").MailboxPath; got != oldBob+"/" {
		t.Fatalf("bob moved although his lock was held: %s", got)
	}
	if got := len(allMessages(t, n, "alice@example.com")); got != 5 {
		t.Fatalf("alice lists %d messages after the interruption, want 5", got)
	}
	if got := len(allMessages(t, n, "bob@example.com")); got != 3 {
		t.Fatalf("bob lists %d messages after the interruption, want 3", got)
	}

	// A node whose snapshot still had alice's old path delivers there.
	msg := "From: x@remote.test\r\nSubject: late-delivery\r\n\r\ndelivered to the old path\r\n"
	late := fmt.Sprintf("%d.M1P1Q1Rlate.other-node,S=%d", time.Now().Unix(), len(msg))
	if err := os.MkdirAll(filepath.Join(oldAlice, "new"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(oldAlice, "new", late), []byte(msg), 0o640); err != nil {
		t.Fatal(err)
	}

	// The second run finishes the move. While it waits before its final
	// sweep (MailboxRoot already switched), a node with an older snapshot
	// delivers to bob's old path: the sweep moves that message too.
	_, wait = startCLI(t, adminEnv, "migrate-mailboxes", "--to", newRoot, "--url", n.BaseURL)
	eventually(t, 15*time.Second, "MailboxRoot switched", func() bool {
		return getSetting(t, n, "Directories", "MailboxRoot") == newRoot
	})
	msg2 := "From: x@remote.test\r\nSubject: during-sweep\r\n\r\ndelivered to the old path during the wait\r\n"
	late2 := fmt.Sprintf("%d.M2P1Q2Rlate.other-node,S=%d", time.Now().Unix(), len(msg2))
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(oldBob, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(oldBob, "new", late2), []byte(msg2), 0o640); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = wait()
	t.Logf("second run:\n%s%s", stdout, stderr)
	if code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
	if !strings.Contains(stdout, "1 message delivered to an old path during the move was moved by the final sweep") {
		t.Fatalf("the sweep did not report the late message: %s", stdout)
	}
	alice, bob := allMessages(t, n, "alice@example.com"), allMessages(t, n, "bob@example.com")
	if len(alice) != 6 || alice["late-delivery"] == "" || len(bob) != 4 || bob["during-sweep"] == "" {
		t.Fatalf("after the re-run: alice %v, bob %v", alice, bob)
	}
	if got := maildirFiles(t, newAlice); len(got) != 6 {
		t.Fatalf("alice's new maildir: %v", got)
	}
	if got := maildirFiles(t, newBob); len(got) != 4 {
		t.Fatalf("bob's new maildir (a duplicate?): %v", got)
	}
	for _, dir := range []string{oldAlice, oldBob} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("old maildir %s still exists: %v", dir, maildirFiles(t, dir))
		}
	}
	if got := getSetting(t, n, "Directories", "MailboxRoot"); got != newRoot {
		t.Fatalf("MailboxRoot = %q", got)
	}
}

func TestMigrateMailboxesUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"NoTo", adminEnv, nil, "--to NEWROOT is required"},
		{"RelativeTo", adminEnv, []string{"--to", "mail/new"}, "absolute path"},
		{"NoPassword", nil, []string{"--to", "/srv/mail-new"}, "MAILCLUSTER_ADMIN_PASSWORD"},
		{"UnknownFlag", adminEnv, []string{"--to", "/srv/mail-new", "--force"}, "unknown flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, tc.env, append([]string{"migrate-mailboxes"}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}
