package service

// BcryptRuns returns how many password comparisons s has run.
func BcryptRuns(s *Service) int64 { return s.bcryptRuns.Load() }

// BcryptPeak returns the most password checks that ever ran at once, and
// the bound.
func BcryptPeak() (peak int64, bound int) { return bcryptPeak.Load(), cap(bcryptSlots) }
