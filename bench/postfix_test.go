package bench_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/harness"
)

// postfixServer is a private Postfix instance (Debian's postfix package,
// `make bench-deps`): its own configuration, queue and data directories
// under a temporary directory, one smtpd listener on a free port of
// 127.0.0.1, no DNS lookups, no chroot. Its log is the file maillog beside
// them. startPostfixRelay makes one that relays, startPostfixVirtual one
// that delivers into Maildirs.
type postfixServer struct {
	Addr    string
	Version string
	dir     string
	pid     int // the master's
}

// startPostfixRelay starts an instance under dir (created here) that
// relays everything it accepts from 127.0.0.0/8 to relayPort on 127.0.0.1;
// it is stopped on cleanup.
func startPostfixRelay(t testing.TB, dir string, relayPort int) (*postfixServer, error) {
	return startPostfix(t, dir, postfixMainCf(dir, relayPort), "")
}

// startPostfix starts an instance under dir (created here) with main.cf
// mainCf and the services of postfixMasterCf plus extraServices (master.cf
// lines); it is stopped on cleanup. It runs as root, like the system's
// Postfix: the master keeps root and its services run as the postfix user.
func startPostfix(t testing.TB, dir, mainCf, extraServices string) (*postfixServer, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("a private Postfix needs root (its master starts the services as the postfix user); running as uid %d", os.Geteuid())
	}
	postfix, err := exec.LookPath("postfix")
	if err != nil {
		postfix = "/usr/sbin/postfix"
	}
	postconf, err := exec.LookPath("postconf")
	if err != nil {
		postconf = "/usr/sbin/postconf"
	}
	out, err := exec.Command(postconf, "-dh", "mail_version").Output()
	if err != nil {
		return nil, fmt.Errorf("postconf (make bench-deps installs postfix): %w", err)
	}
	p := &postfixServer{Version: strings.TrimSpace(string(out)), dir: dir}
	// Postfix's services (as the postfix user) must reach the queue.
	for _, sub := range []string{"conf", "queue"} { // postfix creates data, owned by its user
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		return nil, err
	}
	p.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf := filepath.Join(dir, "conf")
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(postfixMasterCf(ports[0])+extraServices), 0o644); err != nil {
		return nil, err
	}
	ctl := func(verb string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, postfix, "-c", conf, verb).CombinedOutput()
		if err != nil {
			return fmt.Errorf("postfix -c %s %s: %v: %s %s", conf, verb, err, out, p.logTail())
		}
		return nil
	}
	if err := ctl("start"); err != nil {
		return nil, err
	}
	// The master's pid, written by the master itself: the only process
	// signalled here if "postfix stop" does not end it.
	pid := 0
	if b, err := os.ReadFile(filepath.Join(dir, "queue", "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	t.Cleanup(func() {
		if err := ctl("stop"); err != nil {
			t.Log(err)
		}
		if pid <= 0 {
			return
		}
		if !harness.WaitFor(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
			t.Logf("postfix master (pid %d) did not stop; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if pid <= 0 {
		return nil, fmt.Errorf("postfix started but wrote no master.pid: %s", p.logTail())
	}
	p.pid = pid
	if !harness.WaitFor(10*time.Second, func() bool { return greetedSMTP(p.Addr) }) {
		return nil, fmt.Errorf("postfix does not greet on %s: %s", p.Addr, p.logTail())
	}
	return p, nil
}

// greetedSMTP reports whether addr answers with an SMTP 220 greeting.
func greetedSMTP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	return err == nil && string(b[:3]) == "220"
}

// Queued counts the messages still in the instance's queue.
func (p *postfixServer) Queued() int {
	n := 0
	for _, sub := range []string{"incoming", "active", "deferred", "hold", "maildrop"} {
		_ = filepath.WalkDir(filepath.Join(p.dir, "queue", sub), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

func (p *postfixServer) logTail() string {
	b, err := os.ReadFile(filepath.Join(p.dir, "maillog"))
	if err != nil {
		return ""
	}
	return string(b[max(0, len(b)-3000):])
}

// postfixMainCf relays everything from 127.0.0.0/8 to [127.0.0.1]:relayPort
// with the settings of the peers' notes (../shared/peers/README.md) and the
// same bound per destination as mailcluster's [Queue] MaxPerDestination
// default (10); everything else is Postfix's default.
func postfixMainCf(dir string, relayPort int) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pfx-relay.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:%[2]d
smtp_dns_support_level = disabled
smtp_tls_security_level = none
default_destination_concurrency_limit = 10
message_size_limit = 52428800
default_process_limit = 100
smtpd_client_connection_count_limit = 0
alias_maps =
alias_database =
biff = no
`, dir, relayPort)
}

// postfixMasterCf is Debian's master.cf reduced to the services a relay
// uses, without chroot, and smtpd on port.
func postfixMasterCf(port int) string {
	return fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
`, port)
}
