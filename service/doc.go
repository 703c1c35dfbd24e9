// Package service holds every business rule of mailcluster, written once
// for both management APIs, the SMTP service and the internal node API:
// validation, authorization by the caller in the context, the read-only
// rule of secondaries (one place: checkWritable), the last-administrator
// guards, dynamic screening's decisions and the login path. It works over
// a mailcluster.Store (a standalone bbolt file or the Consul cluster) and
// asks a mailcluster.Leadership for the node's role; it starts no
// goroutines of its own. One file per use case: the Service and its
// options (service.go), callers and authorization (caller.go), logins and
// password checks (auth.go), domains (domain.go), accounts (account.go),
// settings (setting.go), certificates (certificate.go), cluster members
// and the cluster log (member.go), mail usage (mail.go), dynamic
// screening's decisions (screening.go), bootstrap (bootstrap.go).
package service
