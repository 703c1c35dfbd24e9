package xmlapi

import "github.com/beevik/etree"

// WriteOperations is the handler's classification of its operations
// (true: a write), for the read-only tests.
var WriteOperations = writeOperations

// CachedRequest returns the <Request> the handler keeps for body (ok
// false when it keeps none), and the one decoding body gives now with its
// operation ("" when body does not decode), both serialized.
func (h *Handler) CachedRequest(body string) (cached, fresh, op string, ok bool) {
	serialize := func(e *etree.Element) string {
		doc := etree.NewDocument()
		doc.AddChild(e.Copy())
		s, _ := doc.WriteToString()
		return s
	}
	if req, err := decodeRequest([]byte(body)); err == nil {
		fresh, op = serialize(req.el), req.op
	}
	if req := h.requests.get([]byte(body)); req != nil {
		return serialize(req.el), fresh, op, true
	}
	return "", fresh, op, false
}

// CachedRequests returns the number of requests the handler keeps.
func (h *Handler) CachedRequests() int {
	h.requests.mu.RLock()
	defer h.requests.mu.RUnlock()
	return len(h.requests.m)
}
