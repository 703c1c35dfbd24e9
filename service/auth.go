package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/screening"

	"mailcluster"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
)

// Authenticate checks an address and password and returns the account if
// it may use the management APIs (admin rights, not frozen or disabled).
// Every failure is the same EUNAUTHORIZED error so that it reveals nothing.
func (s *Service) Authenticate(ctx context.Context, address, password string) (*mailcluster.Account, error) {
	if err := requireCaller(ctx); err != nil {
		return nil, err
	}
	a, err := s.authenticate(ctx, address, password, "api")
	if err != nil {
		return nil, err
	}
	if a.AdminRights == mailcluster.AdminNone {
		return nil, mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication failed.")
	}
	return a, nil
}

// Mail protocols whose logins AuthenticateMailUser checks; the name is
// recorded with every failure it reports to dynamic screening.
var mailProtocols = map[string]bool{"smtp": true, "imap": true, "pop3": true}

// AuthenticateMailUser checks a mail user's address and password for a
// login over a mail protocol ("smtp", "imap" or "pop3", recorded with
// every failure reported to dynamic screening): any account that is
// neither disabled nor frozen. Every credential failure is the same
// EUNAUTHORIZED error. Errors: EUNAUTHORIZED, EFORBIDDEN (the client
// address is blocked, or no caller), EINVALID (another protocol name),
// EUNAVAILABLE.
func (s *Service) AuthenticateMailUser(ctx context.Context, protocol, address, password string) (*mailcluster.Account, error) {
	if err := requireCaller(ctx); err != nil {
		return nil, err
	}
	if !mailProtocols[protocol] {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Unknown mail protocol %q.", protocol)
	}
	return s.authenticate(ctx, address, password, protocol)
}

// authenticate checks credentials for any login. A blocked client
// address is refused (EFORBIDDEN) before anything else; then the attempt
// takes a slot of the client address and of the account (attemptGate), so
// that no more attempts are checked than screening allows, whether they
// come one by one or in parallel. Every wrong password is reported to
// dynamic screening (unknown addresses and frozen accounts count toward
// the client address only). Frozen, disabled and unknown accounts cost the
// same password check as a wrong password. Every credential failure is
// the same EUNAUTHORIZED.
func (s *Service) authenticate(ctx context.Context, address, password, proto string) (*mailcluster.Account, error) {
	if err := s.checkClientIP(ctx); err != nil {
		return nil, err
	}
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil || password == "" || len(password) > 1024 {
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, errAuthFailed()
	}
	address = mailbox + "@" + domain
	a, _, err := s.getAccount(domain, mailbox)
	if err != nil || s.domainDeleting(domain) || a.PasswordHash == "" {
		a = nil // unknown, going with its domain, or without a password yet: as a wrong password
	}
	if a != nil && !a.Frozen && !a.Disabled && s.recentSuccess(a, password) {
		return a.Public(), nil // checked within the last minute: no bcrypt, no slot
	}
	cfg := s.screeningSettings()
	hash := s.failureHash(address, password)
	var at *screening.Attempt
	if ip := normalizedClientIP(ctx); cfg.Enabled && ip != "" {
		gateAddr := "" // unknown and frozen accounts need no account limit: no guess can succeed
		if a != nil && !a.Frozen {
			gateAddr = address
		}
		var refused screening.Refusal
		at, refused = s.scr().gate.Reserve(ctx, cfg, s.now, ip, gateAddr, func() bool { return s.isLastUsableAdmin(a) })
		// A refused attempt is not counted: its password was not checked.
		switch refused {
		case screening.RefusedAddress:
			return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Too many failed logins from your address %s; try again later.", ip)
		case screening.RefusedAccount:
			// As slow as a checked password, so that the answer does not
			// tell that the account exists.
			withBcryptSlot(ctx, func() { _ = s.checkDummy(password) })
			return nil, errAuthFailed()
		}
	}
	failed := true
	defer func() {
		if at != nil {
			at.Finish(s.now(), failed, hash)
		}
	}()
	if a == nil {
		if !withBcryptSlot(ctx, func() { _ = s.checkDummy(password) }) {
			return nil, ctxFailure(ctx)
		}
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, errAuthFailed()
	}
	frozen := a.Frozen || s.locallyFrozen(a.Address())
	ok, err := s.checkPassword(ctx, a, password, frozen)
	if err != nil {
		return nil, err
	}
	switch {
	case !ok && frozen:
		// A frozen account's failures count toward the client address
		// only; its own count stopped with the freeze.
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, errAuthFailed()
	case !ok:
		s.recordFailure(ctx, a.Address(), password, proto)
		return nil, errAuthFailed()
	}
	failed = false
	if frozen || a.Disabled {
		return nil, errAuthFailed()
	}
	return a.Public(), nil
}

// errAuthFailed is the one answer to every credential failure.
func errAuthFailed() error {
	return mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication failed.")
}

// ctxFailure answers a login whose request ended while it waited for a
// password-check slot.
func ctxFailure(ctx context.Context) error {
	return &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The server is busy; try again.", Err: ctx.Err()}
}

// normalizedClientIP returns the client address of ctx in canonical form
// ("" when unknown).
func normalizedClientIP(ctx context.Context) string {
	ip, err := mailcluster.NormalizeIP(mailcluster.ClientIPFromContext(ctx))
	if err != nil {
		return ""
	}
	return ip
}

// locallyFrozen reports a freeze this node decided without a primary.
func (s *Service) locallyFrozen(address string) bool {
	sc := s.scr()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	_, ok := sc.localAcc[address]
	return ok
}

// checkDummy spends the time of a real password check (at the cost of
// new hashes), so that an unknown address cannot be told from a wrong
// password by timing.
func (s *Service) checkDummy(password string) error {
	s.dummyOnce.Do(func() {
		cost := s.opts.BcryptCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte("mailcluster-dummy-password"), cost)
	})
	s.bcryptRuns.Add(1)
	return bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
}

// checkPassword compares with bcrypt in a password-check slot
// (withBcryptSlot), remembering successes for a minute in the login cache
// (keyed by an HMAC of address, password and hash, so a changed password
// or hash never matches an old entry and no password is kept). Parallel
// checks of the same credentials run bcrypt once and share its answer;
// checks of another password have another key and share nothing. With
// noCache the comparison always runs bcrypt on its own (a frozen account:
// its answer must cost what a wrong password costs). The error is
// EUNAVAILABLE when ctx ended while waiting for a slot.
func (s *Service) checkPassword(ctx context.Context, a *mailcluster.Account, password string, noCache bool) (bool, error) {
	if a.PasswordHash == "" {
		if !withBcryptSlot(ctx, func() { _ = s.checkDummy(password) }) {
			return false, ctxFailure(ctx)
		}
		return false, nil
	}
	compare := func(ctx context.Context) (ok bool, err error) {
		if !withBcryptSlot(ctx, func() {
			s.bcryptRuns.Add(1)
			ok = bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) == nil
		}) {
			return false, ctxFailure(ctx)
		}
		return ok, nil
	}
	if noCache {
		return compare(ctx)
	}
	k := s.successKey(a, password)
	// The check in flight belongs to the request that started it: when that
	// request ends while waiting for a slot, the others try again (a bounded
	// number of times) rather than fail with it.
	for range 3 {
		if s.logins.hit(k) {
			return true, nil
		}
		v, err, _ := s.logins.flight.Do(string(k[:]), func() (any, error) {
			if s.logins.hit(k) {
				return true, nil // a check that just finished
			}
			ok, err := compare(ctx)
			if ok {
				s.logins.add(k)
			}
			return ok, err
		})
		if err == nil {
			return v.(bool), nil
		}
		if ctx.Err() != nil {
			return false, ctxFailure(ctx)
		}
	}
	return false, ctxFailure(ctx)
}

// successKey keys the login cache and the checks in flight: an HMAC of
// address, password and hash, so a changed password or hash never matches
// an old entry and no password is kept.
func (s *Service) successKey(a *mailcluster.Account, password string) [32]byte {
	m, _ := s.logins.macs.Get().(*loginMAC)
	if m == nil {
		m = &loginMAC{h: hmac.New(sha256.New, s.authKey)}
	}
	defer s.logins.macs.Put(m)
	m.h.Reset()
	b := append(m.buf[:0], a.Mailbox...)
	b = append(append(b, '@'), a.Domain...)
	b = append(append(b, 0), password...)
	b = append(append(b, 0), a.PasswordHash...)
	m.h.Write(b)
	clear(b) // the password
	m.buf = b[:0]
	var k [32]byte
	m.h.Sum(k[:0])
	return k
}

// loginMAC is a reusable HMAC of successKey with its input buffer.
type loginMAC struct {
	h   hash.Hash
	buf []byte
}

// recentSuccess reports whether these credentials were checked
// successfully within the last minute.
func (s *Service) recentSuccess(a *mailcluster.Account, password string) bool {
	return s.logins.hit(s.successKey(a, password))
}

// Limits of the login cache.
const (
	// loginCacheSize bounds the successful logins remembered; past it the
	// least recently used entry makes room (never all at once).
	loginCacheSize = 4096
	// loginCacheTTL is how long a successful check is remembered.
	loginCacheTTL = time.Minute
)

// loginCache remembers successful password checks by successKey, and
// holds the checks in flight so that parallel logins with the same
// credentials share one bcrypt run. The zero value is ready to use; it is
// safe for concurrent use.
type loginCache struct {
	once    sync.Once
	entries *lru.Cache[[32]byte, time.Time] // key -> time of the check
	flight  singleflight.Group
	macs    sync.Pool // *loginMAC keyed with the Service's authKey
}

func (c *loginCache) cache() *lru.Cache[[32]byte, time.Time] {
	c.once.Do(func() { c.entries, _ = lru.New[[32]byte, time.Time](loginCacheSize) })
	return c.entries
}

// hit reports whether k was checked successfully within loginCacheTTL; an
// expired entry is dropped.
func (c *loginCache) hit(k [32]byte) bool {
	t, ok := c.cache().Get(k)
	if !ok {
		return false
	}
	if time.Since(t) < loginCacheTTL {
		return true
	}
	c.cache().Remove(k)
	return false
}

// add remembers a successful check of k now.
func (c *loginCache) add(k [32]byte) { c.cache().Add(k, time.Now()) }

func (s *Service) hashPassword(password string) (string, error) {
	if min := s.intSetting(mailcluster.SectionPasswords, mailcluster.KeyMinLength, mailcluster.DefaultMinPasswordLength); len(password) < min {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Password must be at least %d characters long.", min)
	}
	if len(password) > 72 {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Password must be at most 72 bytes long.")
	}
	cost := s.opts.BcryptCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// ---- domains ----

// bcryptSlots bounds how many password checks run at once, so that a
// flood of logins queues instead of starving every other request of CPU.
var bcryptSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// bcryptBusy counts the password checks running now; bcryptPeak is the
// most that ever ran at once.
var bcryptBusy, bcryptPeak atomic.Int64

// withBcryptSlot runs f while holding a password-check slot; it gives up
// (false) when ctx ends first.
func withBcryptSlot(ctx context.Context, f func()) bool {
	select {
	case bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-bcryptSlots }()
	n := bcryptBusy.Add(1)
	defer bcryptBusy.Add(-1)
	for peak := bcryptPeak.Load(); n > peak && !bcryptPeak.CompareAndSwap(peak, n); peak = bcryptPeak.Load() {
	}
	f()
	return true
}
