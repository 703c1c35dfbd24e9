package service

// DeletionWaiters returns how many callers wait for the deletion of
// domain running in s (0 when none runs).
func DeletionWaiters(s *Service, domain string) int {
	v, ok := deletionRuns.Load(deletionKey{s: s, domain: domain})
	if !ok {
		return 0
	}
	return int(v.(*deletionRun).waiters.Load())
}
