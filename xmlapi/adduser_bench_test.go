package xmlapi

import (
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// BenchmarkAddUser measures building the User element of a full
// GetUserInfo answer (every section, one alias, list and group).
func BenchmarkAddUser(b *testing.B) {
	a := &mailcluster.Account{Domain: "read.example", Mailbox: "alice", FullName: "Alice Example", FirstName: "Alice",
		LastName: "Example", MailboxPath: "/var/mail/read.example/alice/", CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(2, 0)}
	u := user{Account: a,
		aliases: []*mailcluster.Alias{{Domain: "read.example", Name: "al"}},
		lists:   []*mailcluster.MailingList{{Domain: "read.example", Name: "list"}},
		groups:  []*mailcluster.Group{{Domain: "read.example", Name: "g"}}}
	b.ReportAllocs()
	for b.Loop() {
		addUser(etree.NewElement("Result"), u, "alice", allSections)
	}
}
