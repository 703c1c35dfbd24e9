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

// DeliveryFS and DeliveryFile export the file system seam of a delivery
// to the tests.
type (
	DeliveryFS   = deliveryFS
	DeliveryFile = deliveryFile
)

// OSFS is the file system a Store uses by default.
var OSFS DeliveryFS = osFS{}

// SetFS replaces the file system of a Store's deliveries; it must be
// called before the Store delivers.
func (s *Store) SetFS(fs DeliveryFS) { s.fs = fs }

// RemoveIfSame exports the removal of a lock file that a breaker judged
// stale with the content judged, to the tests.
func (l *Locker) RemoveIfSame(address, judged string) bool {
	return removeIfSame(l.path(address), judged)
}
