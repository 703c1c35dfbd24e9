package xmlapi_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// operations returns the operation names the handler dispatches, read
// from the switch in params.go, so that a new operation is covered here
// without being listed.
func operations(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "params.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "dispatch" {
			continue
		}
		ast.Inspect(fd, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
						s, _ := strconv.Unquote(bl.Value)
						ops = append(ops, s)
					}
				}
			}
			return true
		})
	}
	if len(ops) < 24 {
		t.Fatalf("found %d operations in dispatch: %v", len(ops), ops)
	}
	return ops
}

// failureCounter counts the failed logins reported to screening.
type failureCounter struct {
	mu sync.Mutex
	n  int
	fs []mailcluster.LoginFailure
}

func (c *failureCounter) Report(f mailcluster.LoginFailure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.fs = append(c.fs, f)
}

func (c *failureCounter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// TestAuthEveryOperation sends every operation of the XML-API without
// credentials and with wrong ones: each is refused with status 8 and HTTP
// 401 before it runs (nothing is written); every wrong password or
// unknown account is reported to dynamic screening, and no reported
// failure carries the password.
func TestAuthEveryOperation(t *testing.T) {
	sink := &failureCounter{}
	e := MustOpenEnv(t, WithFailures(sink))
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "user", Password: "secret-pass-user"})
	// This walk sends many wrong logins from 127.0.0.1: exempt it from the
	// attempt limits (failures are still reported, and counted below).
	if err := e.Svc.SetSetting(service.SystemContext(context.Background(), "test"), mailcluster.MainSettingsFile, "Screening", "AllowIPs", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	before := e.Store.Index()
	reported := 0
	params := "<Domain>example.com</Domain><Mailbox>user</Mailbox><Details><Password>secret-pass-new1</Password></Details>" +
		"<File>mailcluster</File><IP>203.0.113.9</IP><Node>node9</Node><Name>mail</Name>"
	for i, op := range operations(t) {
		t.Run(op, func(t *testing.T) {
			body := Envelope(op, params)
			for _, c := range []struct {
				name, user, pass string
				counted          bool
			}{
				{"NoCredentials", "", "", false},
				{"WrongPassword", adminAddr, "secret-pass-wrong" + strconv.Itoa(i), true},
				{"UnknownAccount", "nobody@example.com", adminPass, true},
				{"NotAnAddress", "admin", adminPass, true},
				{"EmptyPassword", adminAddr, "", true},
				{"NotAnAdmin", "user@example.com", "secret-pass-user", false},
			} {
				r := Post(t, e.URL, c.user, c.pass, strings.NewReader(body))
				if msg := r.MustStatus(t, xmlapi.StatusUnauthorized); msg != "Authentication failed." {
					t.Errorf("%s: message %q", c.name, msg)
				}
				if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="mailcluster"` {
					t.Errorf("%s: WWW-Authenticate %q", c.name, got)
				}
				if c.counted {
					reported++
				}
				if got := sink.count(); got != reported {
					t.Fatalf("%s: %d failures reported to screening, want %d", c.name, got, reported)
				}
			}
		})
	}
	t.Run("NothingWritten", func(t *testing.T) {
		if got := e.Store.Index(); got != before {
			t.Errorf("store index moved from %d to %d", before, got)
		}
	})
	t.Run("NoPasswordReported", func(t *testing.T) {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, f := range sink.fs {
			if f.Proto != "api" || f.IP != "127.0.0.1" || f.Hash == "" || strings.Contains(f.Hash, "secret-pass") {
				t.Errorf("failure %+v", f)
			}
		}
	})
}
