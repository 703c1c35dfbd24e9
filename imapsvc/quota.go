package imapsvc

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// QUOTA (RFC 9208): every folder of an account is under one quota root,
// "", whose resources are the account's quota (its own or its groups'
// default, as LookupAccount gives it) and usage (that of a delivery's
// quota check, changes this node has not seen published included):
// STORAGE in KiB and MESSAGE. A resource without a limit is not listed.
// Quotas are set by administrators through the APIs: imapserver refuses
// SETQUOTA.

// quotaRoot is the one quota root of an account.
const quotaRoot = ""

var _ imapserver.SessionQuota = (*session)(nil)

// GetQuota answers GETQUOTA: the account's root only.
func (s *session) GetQuota(root string) (*imapserver.QuotaData, error) {
	if root != quotaRoot {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such quota root"}
	}
	return s.quota()
}

// GetQuotaRoot answers GETQUOTAROOT: every existing folder is under the
// account's root.
func (s *session) GetQuotaRoot(name string) ([]string, []*imapserver.QuotaData, error) {
	if _, err := s.folders.Folder(name); err != nil {
		return nil, nil, s.fail(err)
	}
	q, err := s.quota()
	if err != nil {
		return nil, nil, err
	}
	return []string{quotaRoot}, []*imapserver.QuotaData{q}, nil
}

// quota reads the account again (a change of quota applies at once) and
// its usage.
func (s *session) quota() (*imapserver.QuotaData, error) {
	a, err := s.srv.dir.LookupAccount(s.acct.Address())
	if err != nil {
		return nil, s.fail(err)
	}
	bytes, messages := s.srv.store.Usage(a)
	q := &imapserver.QuotaData{Root: quotaRoot, Resources: map[imap.QuotaResourceType]imapserver.QuotaResourceData{}}
	if a.QuotaBytes > 0 {
		q.Resources[imap.QuotaResourceStorage] = imapserver.QuotaResourceData{Usage: (max(bytes, 0) + 1023) / 1024, Limit: a.QuotaBytes / 1024}
	}
	if a.QuotaMessages > 0 {
		q.Resources[imap.QuotaResourceMessage] = imapserver.QuotaResourceData{Usage: max(messages, 0), Limit: a.QuotaMessages}
	}
	return q, nil
}
