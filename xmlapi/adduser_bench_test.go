package xmlapi

import (
	"bytes"
	"testing"
	"time"

	"github.com/beevik/etree"

	"mailcluster"
)

// benchUser is the account of a full GetUserInfo answer (every section,
// one alias, list and group).
func benchUser() user {
	a := &mailcluster.Account{Domain: "read.example", Mailbox: "alice", FullName: "Alice Example", FirstName: "Alice",
		LastName: "Example", MailboxPath: "/var/mail/read.example/alice/", CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(2, 0)}
	return user{Account: a,
		aliases: []*mailcluster.Alias{{Domain: "read.example", Name: "al"}},
		lists:   []*mailcluster.MailingList{{Domain: "read.example", Name: "list"}},
		groups:  []*mailcluster.Group{{Domain: "read.example", Name: "g"}}}
}

// BenchmarkAddUser measures building the User element of a full
// GetUserInfo answer as etree elements, the way answers were built before
// writeUser (addUser, the reference of writeuser_test.go).
func BenchmarkAddUser(b *testing.B) {
	u := benchUser()
	b.ReportAllocs()
	for b.Loop() {
		addUser(etree.NewElement("Result"), u, "alice", allSections)
	}
}

// BenchmarkWriteUser measures writing the <Result> of a full GetUserInfo
// answer into a buffer: built with etree and written (etree), and written
// by writeUser (stream).
func BenchmarkWriteUser(b *testing.B) {
	u := benchUser()
	var buf bytes.Buffer
	b.Run("etree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			r := etree.NewElement("Result")
			addUser(r, u, "alice", allSections)
			writeElement(&buf, r, 4)
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		res := result{user: u, userID: "alice", userSections: allSections}
		for b.Loop() {
			buf.Reset()
			w := xmlWriter{buf: &buf, level: 3}
			res.write(&w)
		}
	})
}
