package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// encodeStd is what Echo's c.JSON writes for v.
func encodeStd(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAppendAccountJSON checks that the fast encoder writes exactly what
// encoding/json writes, or gives up (false) for values it does not write
// plainly.
func TestAppendAccountJSON(t *testing.T) {
	base := Account{Address: "alice@example.com", Domain: "example.com", Mailbox: "alice", FullName: "Alice Example",
		FirstName: "Alice", LastName: "Example", MailboxPath: "/var/mail/example.com/alice/", Frozen: true,
		QuotaBytes: 1 << 40, QuotaMessages: -1, AdminRights: "domain", SendAs: []string{"a@example.com", "b@example.com"},
		CreatedAt: time.Date(2026, 12, 2, 16, 23, 34, 358588224, time.UTC),
		UpdatedAt: time.Date(2026, 12, 2, 16, 23, 34, 0, time.FixedZone("x", -7*3600-30*60)),
		Usage:     AccountUsage{Bytes: 12345, Messages: 7}}
	plain := map[string]func(*Account){
		"OK":          func(*Account) {},
		"EmptySendAs": func(a *Account) { a.SendAs = []string{} },
		"NilSendAs":   func(a *Account) { a.SendAs = nil },
		"ZeroTimes":   func(a *Account) { a.CreatedAt, a.UpdatedAt = time.Time{}, time.Time{} },
		"Empty":       func(a *Account) { *a = Account{} },
		"LocalZone":   func(a *Account) { a.CreatedAt = a.CreatedAt.In(time.FixedZone("y", 5*3600+45*60)) },
	}
	fallback := map[string]func(*Account){
		"HTML":        func(a *Account) { a.FullName = "<b>A & B</b>" },
		"Quote":       func(a *Account) { a.LastName = `O"Neil\` },
		"Control":     func(a *Account) { a.FirstName = "a\tb\x00" },
		"Unicode":     func(a *Account) { a.FullName = "Zoë \u2028" },
		"BadUTF8":     func(a *Account) { a.FullName = "\xff\xfe" },
		"SendAsHTML":  func(a *Account) { a.SendAs = []string{"ok@example.com", "<x>@example.com"} },
		"Year10000":   func(a *Account) { a.UpdatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"SecondsZone": func(a *Account) { a.UpdatedAt = a.UpdatedAt.In(time.FixedZone("z", 3600+7)) },
	}
	for name, f := range plain {
		t.Run(name, func(t *testing.T) {
			a := base
			f(&a)
			got, ok := appendAccountJSON(nil, &a)
			if !ok {
				t.Fatal("fell back for a plain account")
			}
			if want := encodeStd(t, &a); !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
	for name, f := range fallback {
		t.Run(name, func(t *testing.T) {
			a := base
			f(&a)
			if got, ok := appendAccountJSON(nil, &a); ok {
				if want := encodeStd(t, &a); !bytes.Equal(got, want) {
					t.Fatalf("wrote a value it should leave to encoding/json:\ngot  %s\nwant %s", got, want)
				}
			}
		})
	}
	// Random strings of every byte: whenever the fast encoder writes one,
	// it writes what encoding/json writes.
	r := rand.New(rand.NewPCG(1, 2))
	plainSeen := 0
	for range 20000 {
		n := r.IntN(6)
		s := make([]byte, n)
		for i := range s {
			if r.IntN(4) == 0 {
				s[i] = byte(r.IntN(256))
			} else {
				s[i] = byte(0x20 + r.IntN(0x5f))
			}
		}
		a := base
		a.FullName = string(s)
		a.UpdatedAt = time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9)).UTC()
		got, ok := appendAccountJSON(nil, &a)
		if !ok {
			continue
		}
		plainSeen++
		if want := encodeStd(t, &a); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s\nwant %s", s, got, want)
		}
	}
	if plainSeen < 1000 {
		t.Fatalf("only %d random accounts were plain", plainSeen)
	}
}
