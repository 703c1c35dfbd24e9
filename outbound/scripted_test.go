package outbound_test

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/internal/dnstest"
)

// scripted is a minimal SMTP server written line by line, for the
// misbehaviours go-smtp's server cannot show: a 4xx greeting, no EHLO,
// text injected after the reply to STARTTLS.
type scripted struct {
	Addr string

	greeting string // the greeting line, "220 scripted" when ""
	noEHLO   bool   // answer EHLO with 502
	// startTLS, when set, is offered and sent as the whole answer to
	// STARTTLS.
	startTLS string

	mu       sync.Mutex
	commands []string
	messages int
}

func startScripted(t *testing.T, ip string, port int, s *scripted) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *scripted) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *scripted) Messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages
}

func (s *scripted) serve(c net.Conn) {
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	if s.greeting != "" {
		say(s.greeting)
		if !strings.HasPrefix(s.greeting, "220") {
			return
		}
	} else {
		say("220 scripted")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		s.mu.Lock()
		s.commands = append(s.commands, verb)
		s.mu.Unlock()
		switch verb {
		case "EHLO":
			if s.noEHLO {
				say("502 5.5.1 no EHLO here")
			} else if s.startTLS != "" {
				say("250-scripted\r\n250 STARTTLS")
			} else {
				say("250 scripted")
			}
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP":
			say("250 ok")
		case "STARTTLS":
			_, _ = c.Write([]byte(s.startTLS))
		case "DATA":
			say("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.messages++
			s.mu.Unlock()
			say("250 2.0.0 taken")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("500 unknown")
		}
	}
}

func TestGreeting4xxNextHost(t *testing.T) {
	dns := dnstest.Start(t)
	busy := startScripted(t, "127.0.0.2", 0, &scripted{greeting: "421 4.3.2 too busy"})
	_, p, _ := net.SplitHostPort(busy.Addr)
	port, _ := strconv.Atoi(p)
	good := startScripted(t, "127.0.0.3", port, &scripted{})
	dns.SetMX("dest.test", dnstest.MX{Host: "mx1.dest.test", Pref: 1}, dnstest.MX{Host: "mx2.dest.test", Pref: 2})
	dns.SetA("mx1.dest.test", "127.0.0.2")
	dns.SetA("mx2.dest.test", "127.0.0.3")
	r := one(t, client(dns, port, nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if !r.Delivered || r.Host != "mx2.dest.test" || good.Messages() != 1 || r.Enhanced != "2.0.0" || r.Text != "taken" {
		t.Fatalf("result %+v, mx2 messages %d", r, good.Messages())
	}
	// Only the 4xx greeting: temporary, with its code.
	dns.SetMX("dest.test", dnstest.MX{Host: "mx1.dest.test", Pref: 1})
	r = one(t, client(dns, port, nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || r.Code != 421 || r.Enhanced != "4.3.2" || !strings.Contains(r.Text, "greeting") {
		t.Fatalf("result %+v", r)
	}
}

func TestHELOFallback(t *testing.T) {
	dns := dnstest.Start(t)
	s := startScripted(t, "127.0.0.2", 0, &scripted{noEHLO: true})
	_, p, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(p)
	dns.SetA("dest.test", "127.0.0.2")
	r := one(t, client(dns, port, nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if !r.Delivered || s.Messages() != 1 {
		t.Fatalf("result %+v", r)
	}
	if cmds := strings.Join(s.Commands(), " "); !strings.HasPrefix(cmds, "EHLO HELO") {
		t.Fatalf("commands %s", cmds)
	}
}

func TestSTARTTLSInjection(t *testing.T) {
	dns := dnstest.Start(t)
	// The reply to STARTTLS comes with a command injected behind it.
	s := startScripted(t, "127.0.0.2", 0, &scripted{startTLS: "220 go ahead\r\n250 injected\r\n"})
	_, p, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(p)
	dns.SetA("dest.test", "127.0.0.2")
	r := one(t, client(dns, port, nil).Deliver(context.Background(), "dest.test", message("b@dest.test")))
	if r.Delivered || r.Permanent || s.Messages() != 0 {
		t.Fatalf("result %+v, messages %d", r, s.Messages())
	}
	for _, c := range s.Commands() {
		if c == "MAIL" {
			t.Fatalf("MAIL sent after an injected STARTTLS reply: %v", s.Commands())
		}
	}
}
