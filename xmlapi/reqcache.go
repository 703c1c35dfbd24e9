package xmlapi

import (
	"strings"
	"sync"

	"github.com/beevik/etree"
)

// Bounds of the decoded-request cache: at most maxCachedRequests bodies of
// at most maxCachedBody bytes each (about 1 MiB of bodies and their trees).
const (
	maxCachedRequests = 256
	maxCachedBody     = 4 << 10
)

// requestCache keeps decoded read requests by their exact bytes, so that a
// client that polls (the same GetUserInfo again and again) is not parsed
// again: decodeRequest is a function of the bytes alone, so a hit is
// exactly what parsing would give. Only operations that change nothing are
// kept, and none that carries a secret element (a password sent to a read
// by mistake is not held). The cached trees are shared by concurrent
// requests and never changed: the handlers only read their parameters,
// and an echoed request is copied before it is redacted. The zero value is
// ready; it is safe for concurrent use.
type requestCache struct {
	mu sync.RWMutex
	m  map[string]*request
}

// get returns the cached request decoded from body, or nil.
func (c *requestCache) get(body []byte) *request {
	if len(body) > maxCachedBody {
		return nil
	}
	c.mu.RLock()
	r := c.m[string(body)]
	c.mu.RUnlock()
	return r
}

// put keeps req, decoded from body, when it may be kept (see
// requestCache). A full cache is emptied first: a client sending ever new
// bodies costs only its own misses.
func (c *requestCache) put(body []byte, req *request) {
	if len(body) > maxCachedBody || !cacheable(req) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedRequests {
		c.m = make(map[string]*request, maxCachedRequests)
	}
	c.m[string(body)] = req
}

// cacheable tells whether req names a known operation that changes
// nothing and carries no secret element.
func cacheable(req *request) bool {
	write, known := writeOperations[req.op]
	return known && !write && !hasSecret(req.el)
}

// hasSecret tells whether e or an element below it is a secret element
// (see secretElements).
func hasSecret(e *etree.Element) bool {
	for _, name := range secretElements {
		if strings.EqualFold(e.Tag, name) {
			return true
		}
	}
	for _, c := range e.Child {
		if ce, ok := c.(*etree.Element); ok && hasSecret(ce) {
			return true
		}
	}
	return false
}
