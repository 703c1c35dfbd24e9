package mailcluster

// BcryptRuns returns how many password comparisons s has run.
func BcryptRuns(s *Service) int64 { return s.bcryptRuns.Load() }
