// Package screening is dynamic screening's detector. It counts failed
// logins in sliding windows per client address and per account and says
// when an address must be blocked or an account frozen (Detector); it
// bounds login attempts before a password is checked (Gate); and it keys
// failures so that a password never leaves the node (Hasher). It keeps no
// replicated state and reads no store: the service applies its decisions.
// Clocks are passed in, so every rule can be tested without waiting.
package screening

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"mailcluster"
)

// entry is one failure in a window.
type entry struct {
	at   time.Time
	hash string
}

// maxPerKey bounds the failures kept for one address or account.
const maxPerKey = 1000

// maxAddresses bounds the address windows kept; under a flood of distinct
// addresses they are dropped wholesale (memory stays bounded).
const maxAddresses = 100000

// Detector counts failures (on the primary, or on a node deciding alone
// while no primary is reachable). Every failure counts toward its client
// address; toward an account, one wrong password repeated counts once. It
// is safe for concurrent use.
type Detector struct {
	mu       sync.Mutex
	ipFails  map[string][]entry
	accFails map[string][]entry
}

// NewDetector returns an empty Detector.
func NewDetector() *Detector {
	return &Detector{ipFails: map[string][]entry{}, accFails: map[string][]entry{}}
}

// Observe adds failures to the windows at now and returns the addresses
// and accounts whose thresholds are reached; their windows start afresh.
// Addresses and accounts that cfg exempts are not counted.
func (d *Detector) Observe(cfg mailcluster.ScreeningConfig, now time.Time, fs []mailcluster.LoginFailure) (ips, accounts []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	add := func(m map[string][]entry, key string, f mailcluster.LoginFailure, window time.Duration, dedup bool) int {
		es := m[key]
		kept := es[:0]
		for _, e := range es {
			if now.Sub(e.at) < window {
				kept = append(kept, e)
			}
		}
		if (!dedup || !containsHash(kept, f.Hash)) && now.Sub(f.Time) < window {
			kept = append(kept, entry{at: f.Time, hash: f.Hash})
		}
		if len(kept) > maxPerKey {
			kept = kept[len(kept)-maxPerKey:]
		}
		m[key] = kept
		return len(kept)
	}
	seenIP, seenAcc := map[string]bool{}, map[string]bool{}
	for _, f := range fs {
		ip, err := mailcluster.NormalizeIP(f.IP)
		if err != nil || cfg.AllowedIP(ip) {
			continue
		}
		if n := add(d.ipFails, ip, f, cfg.IPWindow, false); n >= cfg.IPFailures && !seenIP[ip] {
			seenIP[ip] = true
			ips = append(ips, ip)
			delete(d.ipFails, ip)
		}
		addr := strings.ToLower(f.Address)
		if addr == "" || cfg.AllowAccounts[addr] {
			continue
		}
		if n := add(d.accFails, addr, f, cfg.AccountWindow, true); n >= cfg.AccountFailures && !seenAcc[addr] {
			seenAcc[addr] = true
			accounts = append(accounts, addr)
			delete(d.accFails, addr)
		}
	}
	if len(d.ipFails) > maxAddresses {
		clear(d.ipFails)
	}
	return ips, accounts
}

// ForgetAccount drops an account's window (it was thawed).
func (d *Detector) ForgetAccount(address string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.accFails, address)
}

// Reset drops every window (a primary's state replaces this node's own).
func (d *Detector) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.ipFails)
	clear(d.accFails)
}

// BlockDuration is how long an address with offences earlier offences is
// blocked: BlockDuration doubled per offence, capped at MaxBlockDuration.
func BlockDuration(cfg mailcluster.ScreeningConfig, offences int) time.Duration {
	d := cfg.BlockDuration
	for range min(offences, 30) {
		d *= 2
		if d >= cfg.MaxBlockDuration {
			return cfg.MaxBlockDuration
		}
	}
	return min(d, cfg.MaxBlockDuration)
}

// Hasher keys an address and password into a failure hash, so that
// repeats can be recognised cluster-wide while the password itself is never
// kept or sent.
type Hasher struct{ key []byte }

// NewHasher returns a Hasher with key (derive it from the cluster secret
// so that every node hashes alike); a nil key means a random one, good for
// this process only.
func NewHasher(key []byte) *Hasher {
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return &Hasher{key: key}
}

// Hash returns the failure hash of address and password.
func (h *Hasher) Hash(address, password string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(strings.ToLower(address) + "\x00" + password))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
