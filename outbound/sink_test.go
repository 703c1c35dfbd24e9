package outbound_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailcluster/internal/dnstest"
)

// smtpSink is Postfix's smtp-sink (make bench-deps installs it).
const smtpSink = "/usr/sbin/smtp-sink"

// startSink runs smtp-sink on ip:port, dumping each message into a file
// of the returned directory; the process is killed on cleanup.
func startSink(t *testing.T, ip string, port int) string {
	t.Helper()
	if _, err := os.Stat(smtpSink); err != nil {
		t.Skip("smtp-sink is not installed (make bench-deps installs postfix)")
	}
	// smtp-sink drops privileges when run as root: the dump directory must
	// be writable by nobody.
	dir, err := os.MkdirTemp("", "outbound-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	args := []string{"-d", filepath.Join(dir, "m."), addr, "10"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(smtpSink, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 50 {
			t.Fatalf("smtp-sink does not listen on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dir
}

func TestSMTPSink(t *testing.T) {
	dns := dnstest.Start(t)
	port := freePort(t)
	dir := startSink(t, "127.0.0.7", port)
	dns.SetMX("sink.test", dnstest.MX{Host: "mx.sink.test", Pref: 10})
	dns.SetA("mx.sink.test", "127.0.0.7")
	rs := client(dns, port, nil).Deliver(context.Background(), "sink.test", message("b@sink.test", "c@sink.test"))
	for _, r := range rs {
		if !r.Delivered || r.Code != 250 || r.Host != "mx.sink.test" {
			t.Fatalf("result %+v", r)
		}
	}
	var dump string
	for i := 0; i < 50 && dump == ""; i++ {
		files, _ := filepath.Glob(filepath.Join(dir, "m.*"))
		if len(files) == 1 {
			b, _ := os.ReadFile(files[0])
			dump = string(b)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, want := range []string{"X-Helo-Args: client.test", "X-Mail-Args: <a@sender.test>", "X-Rcpt-Args: <b@sink.test>",
		"X-Rcpt-Args: <c@sink.test>", "X-Prefix: yes", "Subject: hi", "Hello."} {
		if !strings.Contains(dump, want) {
			t.Fatalf("the dump lacks %q:\n%s", want, dump)
		}
	}
}
