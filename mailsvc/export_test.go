package mailsvc

// SplitAny exports splitAny, the split of SMTP envelope addresses, to the
// tests.
var SplitAny = splitAny

// ConnLimiter exports the counter of open SMTP connections to the tests.
type ConnLimiter = connLimiter

// Acquire exports connLimiter.acquire to the tests.
func (l *ConnLimiter) Acquire(ip string, maxTotal, maxPerIP int64) (release func(), ok bool) {
	return l.acquire(ip, maxTotal, maxPerIP)
}

// LockPath exports the path of an address's lock file to the tests.
func (l *Locker) LockPath(address string) string { return l.path(address) }
