// Package nodeauth signs and verifies the requests of the internal
// node-to-node API (/internal/v1/). Every request carries the sending
// node's name, a timestamp and a random nonce, and an HMAC-SHA256
// (RFC 2104) over the method, the path with its raw query, those three
// values and the SHA-256 of the body:
//
//	X-Mailcluster-Node: node2
//	X-Mailcluster-Timestamp: 1735787045
//	X-Mailcluster-Nonce: <18 random bytes, base64url without padding>
//	Authorization: MC-HMAC-SHA256 <lowercase hex of the HMAC>
//
// The HMAC key is derived from the cluster secret with HKDF-SHA256
// (RFC 5869) under a label of its own (Key); the secret itself never
// travels. A Verifier accepts a request only within a window around its
// clock (DefaultWindow, 30 s either side) and each nonce only once within
// that window, so a request seen on the wire cannot be replayed or
// altered. It is a leaf package: both the server (package api) and the
// client (package cluster) use it.
package nodeauth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names and the Authorization scheme of a signed request.
const (
	Scheme          = "MC-HMAC-SHA256"
	HeaderNode      = "X-Mailcluster-Node"
	HeaderTimestamp = "X-Mailcluster-Timestamp"
	HeaderNonce     = "X-Mailcluster-Nonce"
)

// DefaultWindow is how far a request's timestamp may lie from the
// verifier's clock, either side, when Verifier.Window is 0. Nodes whose
// clocks differ by more cannot call each other.
const DefaultWindow = 30 * time.Second

// DefaultMaxNonces is how many nonces a Verifier remembers at most when
// Verifier.MaxNonces is 0; with the default window that is more than
// 1,000 internal requests a second.
const DefaultMaxNonces = 1 << 16

// nonceSize is the number of random bytes of a nonce this package sends;
// a verifier accepts minNonce to maxNonce bytes.
const (
	nonceSize = 18
	minNonce  = 16
	maxNonce  = 64
	maxNode   = 256
)

// The reasons a request is refused. They are for the log only: a client
// is told just that authentication failed.
var (
	// ErrNoKey: the verifier has no key, every request is refused.
	ErrNoKey = errors.New("nodeauth: no signing key configured")
	// ErrUnsigned: a header is missing, repeated or malformed.
	ErrUnsigned = errors.New("nodeauth: request is not signed")
	// ErrStale: the timestamp lies outside the window.
	ErrStale = errors.New("nodeauth: timestamp outside the window")
	// ErrBadSignature: the signature does not match the request.
	ErrBadSignature = errors.New("nodeauth: bad signature")
	// ErrReplay: the nonce was accepted before within the window.
	ErrReplay = errors.New("nodeauth: nonce replayed")
	// ErrBusy: the nonce cache is full; the request is refused rather
	// than a remembered nonce forgotten.
	ErrBusy = errors.New("nodeauth: too many requests within the window")
)

// Key derives the signing key of the internal API from the cluster
// secret; nil for an empty secret.
func Key(secret string) []byte {
	if secret == "" {
		return nil
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "mailcluster internal request signing v1", 32)
	if err != nil {
		return nil
	}
	return k
}

// Signer signs the requests one node sends.
type Signer struct {
	// Key is the signing key (see Key); without one Sign fails.
	Key []byte
	// Node is the sending node's name.
	Node string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sign sets the signature headers of req, whose whole body is body
// (nil for none). It replaces any Authorization header.
func (s *Signer) Sign(req *http.Request, body []byte) error {
	if len(s.Key) == 0 {
		return errors.New("nodeauth: no signing key (is the cluster secret set?)")
	}
	if !validNode(s.Node) {
		return fmt.Errorf("nodeauth: node name %q cannot be sent", s.Node)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var n [nonceSize]byte
	_, _ = rand.Read(n[:])
	ts := strconv.FormatInt(now().Unix(), 10)
	nonce := base64.RawURLEncoding.EncodeToString(n[:])
	mac := sign(s.Key, req.Method, req.URL, ts, nonce, s.Node, body)
	req.Header.Set(HeaderNode, s.Node)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set("Authorization", Scheme+" "+hex.EncodeToString(mac))
	return nil
}

// Verifier checks signed requests. Its zero value refuses everything;
// make one with NewVerifier. It is safe for concurrent use.
type Verifier struct {
	// Window is how far a timestamp may lie from Now, either side; 0
	// means DefaultWindow. A nonce is remembered as long as its request
	// could be accepted.
	Window time.Duration
	// MaxNonces bounds the nonces remembered at once; 0 means
	// DefaultMaxNonces. When it is reached, further requests are refused
	// (ErrBusy) until remembered nonces expire.
	MaxNonces int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	key       []byte
	mu        sync.Mutex
	nonces    map[string]time.Time // nonce -> the last instant its request is accepted
	nextSweep time.Time
}

// NewVerifier returns a verifier for key (see Key); an empty key refuses
// every request with ErrNoKey.
func NewVerifier(key []byte) *Verifier {
	return &Verifier{key: append([]byte(nil), key...), nonces: map[string]time.Time{}}
}

// Verify checks the signature headers of req; body returns its whole
// body and is called only once the headers passed (its error is returned
// as is). On success it returns the sending node's name. Each accepted
// nonce is remembered until its timestamp leaves the window, and refused
// again until then (ErrReplay). The errors are ErrNoKey, ErrUnsigned,
// ErrStale, ErrBadSignature, ErrReplay, ErrBusy, or the body's error.
func (v *Verifier) Verify(req *http.Request, body func() ([]byte, error)) (string, error) {
	if len(v.key) == 0 {
		return "", ErrNoKey
	}
	node, okN := single(req.Header, HeaderNode)
	ts, okT := single(req.Header, HeaderTimestamp)
	nonce, okC := single(req.Header, HeaderNonce)
	auth, okA := single(req.Header, "Authorization")
	if !okN || !okT || !okC || !okA || !validNode(node) {
		return "", ErrUnsigned
	}
	scheme, sigHex, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, Scheme) {
		return "", ErrUnsigned
	}
	sig, err := hex.DecodeString(strings.TrimSpace(sigHex))
	if err != nil || len(sig) != sha256.Size {
		return "", ErrUnsigned
	}
	if n, err := base64.RawURLEncoding.DecodeString(nonce); err != nil || len(n) < minNonce || len(n) > maxNonce {
		return "", ErrUnsigned
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrUnsigned
	}
	now, window := v.now(), v.window()
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-window)) || at.After(now.Add(window)) {
		return "", ErrStale
	}
	b, err := body()
	if err != nil {
		return "", err
	}
	if !hmac.Equal(sig, sign(v.key, req.Method, req.URL, ts, nonce, node, b)) {
		return "", ErrBadSignature
	}
	if err := v.remember(nonce, at.Add(window), now); err != nil {
		return "", err
	}
	return node, nil
}

// remember records nonce until expires, refusing one seen before and
// refusing when the cache is full of nonces that have not expired yet.
func (v *Verifier) remember(nonce string, expires, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces = map[string]time.Time{}
	}
	if until, ok := v.nonces[nonce]; ok && !now.After(until) {
		return ErrReplay
	}
	max := v.MaxNonces
	if max <= 0 {
		max = DefaultMaxNonces
	}
	if len(v.nonces) >= max || !now.Before(v.nextSweep) {
		for k, until := range v.nonces {
			if now.After(until) {
				delete(v.nonces, k)
			}
		}
		v.nextSweep = now.Add(v.window())
	}
	if len(v.nonces) >= max {
		return ErrBusy
	}
	v.nonces[nonce] = expires
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) window() time.Duration {
	if v.Window > 0 {
		return v.Window
	}
	return DefaultWindow
}

// sign computes the HMAC of the canonical form of a request: the scheme,
// method, path with raw query, timestamp, nonce, node and the hex SHA-256
// of the body, one per line.
func sign(key []byte, method string, u *url.URL, ts, nonce, node string, body []byte) []byte {
	target := u.EscapedPath()
	if target == "" {
		target = "/"
	}
	if u.RawQuery != "" {
		target += "?" + u.RawQuery
	}
	sum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, key)
	for _, s := range []string{Scheme, method, target, ts, nonce, node, hex.EncodeToString(sum[:])} {
		mac.Write([]byte(s))
		mac.Write([]byte{'\n'})
	}
	return mac.Sum(nil)
}

// single returns the one value of header name; false when it is missing
// or repeated.
func single(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

// validNode reports whether a node name can be sent in a header and
// signed unambiguously.
func validNode(s string) bool {
	if s == "" || len(s) > maxNode {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
