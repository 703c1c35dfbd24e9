package service

// DeletionWaiters returns how many callers wait for the deletion of
// domain running in s (0 when none runs).
func DeletionWaiters(s *Service, domain string) int {
	v, ok := s.deletions.Load(domain)
	if !ok {
		return 0
	}
	return int(v.(*deletionRun).waiters.Load())
}
