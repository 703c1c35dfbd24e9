package schema

// DKIMKey is the key of a domain's DKIM key record: mailcluster.DKIMKey
// (JSON, the private key sealed), one per domain.
func DKIMKey(domain string) string { return PrefixDKIM + domain }
