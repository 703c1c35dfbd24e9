// Package service holds every business rule of mailcluster, written once
// for both management APIs, the SMTP service and the internal node API:
// validation, authorization by the caller in the context, the read-only
// rule of secondaries (one place: checkWritable), the last-administrator
// guards, dynamic screening's decisions and the login path. It works over
// a mailcluster.Store (a standalone bbolt file or the Consul cluster) and
// asks a mailcluster.Leadership for the node's role; it starts no
// goroutines of its own. One file per use case: domains and accounts
// (service.go), settings, certificates (certificate.go), cluster members
// (member.go), mail usage (mail.go), screening (screening.go), logins and
// password checks (bcrypt.go), bootstrap (bootstrap.go).
package service
