package service

import "crypto/rand"

// FillLoginCache remembers n successful logins of made-up credentials, as
// n other accounts logging in would.
func FillLoginCache(s *Service, n int) {
	for range n {
		var k [32]byte
		_, _ = rand.Read(k[:])
		s.logins.add(k)
	}
}

// LoginCacheLen returns how many successful logins s remembers, and the
// bound.
func LoginCacheLen(s *Service) (n, bound int) { return s.logins.cache().Len(), loginCacheSize }
