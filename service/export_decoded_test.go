package service

import (
	"fmt"

	"mailcluster"
)

// FillDecodedCache caches n decoded records of made-up keys, as reads of n
// other accounts would.
func FillDecodedCache(s *Service, n int) {
	for i := range n {
		s.storeDecoded(mailcluster.KV{Key: fmt.Sprintf("accounts/filler.example/u%d-%p", i, s), ModifyIndex: 1}, mailcluster.Account{})
	}
}

// DecodedCached reports whether the record at key is cached at index, and
// returns the cache's size and bound.
func DecodedCached(s *Service, key string, index uint64) (cached bool, n, bound int) {
	v, ok := s.decoded.cache().Peek(key)
	return ok && v.index == index, s.decoded.cache().Len(), maxDecoded
}
