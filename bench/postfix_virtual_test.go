package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Postfix delivering into Maildirs through virtual(8), the inbound SMTP
// peer: every recipient of postfixVirtualDomain listed when it starts has
// a Maildir under its mail directory, owned by postfixVirtualUID.
const (
	postfixVirtualDomain = "example.test"
	// postfixVirtualUID owns the Maildirs (virtual_uid_maps and
	// virtual_gid_maps, static), as in the peers' notes.
	postfixVirtualUID = 5000
)

// postfixVirtual is a private Postfix whose virtual(8) delivers the mail
// of its mailboxes into Maildirs (fsync before the rename into new/, after
// cleanup(8) fsynced the queue file: Postfix's defaults).
type postfixVirtual struct {
	*postfixServer
	mail string // virtual_mailbox_base
}

// startPostfixVirtual starts an instance under dir (created here) that
// accepts mail from 127.0.0.0/8 for mailbox@postfixVirtualDomain, for
// every name in mailboxes, and delivers it into the Maildir dir/mail/<domain>/<mailbox>/;
// it is stopped on cleanup.
func startPostfixVirtual(t testing.TB, dir string, mailboxes []string) (*postfixVirtual, error) {
	mail := filepath.Join(dir, "mail")
	var vmailbox strings.Builder
	for _, m := range mailboxes {
		fmt.Fprintf(&vmailbox, "%s@%s %s/%s/\n", m, postfixVirtualDomain, postfixVirtualDomain, m) // trailing /: a Maildir
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(mail, postfixVirtualDomain, m, sub), 0o700); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "vmailbox"), []byte(vmailbox.String()), 0o644); err != nil {
		return nil, err
	}
	err := filepath.WalkDir(mail, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, postfixVirtualUID, postfixVirtualUID)
	})
	if err != nil {
		return nil, err
	}
	// virtual(8) runs as root until it takes the recipient's uid.
	p, err := startPostfix(t, dir, postfixVirtualMainCf(dir), "virtual   unix  - n n - - virtual\n")
	if err != nil {
		return nil, err
	}
	return &postfixVirtual{postfixServer: p, mail: mail}, nil
}

// Maildir returns the Maildir of mailbox.
func (p *postfixVirtual) Maildir(mailbox string) string {
	return filepath.Join(p.mail, postfixVirtualDomain, mailbox)
}

// postfixVirtualMainCf delivers mail for postfixVirtualDomain through
// virtual(8) with the settings of the peers' notes
// (../shared/peers/README.md): the mailbox map is a text file read at
// start (texthash:, no postmap), no size limits, no connection limit per
// client; everything else, fsync included, is Postfix's default.
func postfixVirtualMainCf(dir string) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pfx-virtual.test
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = %[2]s
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = texthash:%[1]s/conf/vmailbox
virtual_uid_maps = static:%[3]d
virtual_gid_maps = static:%[3]d
virtual_mailbox_limit = 0
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
message_size_limit = 52428800
default_process_limit = 100
smtpd_client_connection_count_limit = 0
alias_maps =
alias_database =
biff = no
`, dir, postfixVirtualDomain, postfixVirtualUID)
}

// countFiles returns the number of entries in dir (0 when it cannot be
// read).
func countFiles(dir string) int {
	f, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return len(names)
}

// CPUSeconds returns the user+system CPU time used so far by the master
// and its services: its own, that of the services it has reaped, and that
// of those still running (its children).
func (p *postfixServer) CPUSeconds() float64 {
	total := procTimes(p.pid, true)
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == p.pid {
			continue
		}
		if procParent(pid) == p.pid {
			total += procTimes(pid, false)
		}
	}
	return total
}

// procStat returns the fields of /proc/pid/stat after the command name
// (the first is the state, field 3 of the whole line).
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

func procParent(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procTimes returns pid's user+system CPU seconds, with reaped children's
// when children is set (fields 14 to 17 of the whole line, in clock ticks
// of 100 per second).
func procTimes(pid int, children bool) float64 {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	last := 12
	if children {
		last = 14
	}
	total := 0.0
	for i := 11; i <= last; i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v
	}
	return total / 100
}
