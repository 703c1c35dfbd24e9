package imapsvc

import (
	"github.com/emersion/go-imap/v2"

	"mailcluster/mailstore"
)

// HeaderCache exports the node's header cache to the tests.
type HeaderCache = headerCache

// NewHeaderCache exports newHeaderCache.
func NewHeaderCache(limit int64) *HeaderCache { return newHeaderCache(limit) }

// Envelope returns a message's envelope through the cache.
func (c *headerCache) Envelope(f *mailstore.Folder, m mailstore.Message) (*imap.Envelope, error) {
	e, err := c.load(f, m)
	if err != nil {
		return nil, err
	}
	return e.env, nil
}

// Stats returns the entries and estimated bytes of the cache.
func (c *headerCache) Stats() (entries int, bytes int64) { return c.stats() }

// Headers returns a Server's header cache.
func (s *Server) Headers() *HeaderCache { return s.headers }
