package screening

import (
	"context"
	"sync"
	"time"

	"mailcluster"
)

// Gate bounds login attempts on this node before any password is
// checked. Every attempt takes a slot of its client address and, when the
// address names an account, of that account; a failed attempt keeps its
// slot for the screening window, a successful one gives it back. When the
// slots of an address (IPFailures within IPWindow) or of an account
// (AccountFailures distinct failures within AccountWindow) are taken, the
// attempt is refused without running bcrypt. So parallel guesses cannot
// all be checked before the first failures are counted, and repeating the
// same wrong password still spends the address's slots. The primary's
// decisions (blocks, freezes) stay the cluster-wide truth; the gate only
// closes the gap until they arrive.
type Gate struct {
	mu      sync.Mutex
	ips     map[string]*slots
	acc     map[string]*slots
	changed chan struct{} // closed and replaced when an attempt finishes
}

// slots are the attempts in flight and the recent failures of one key.
type slots struct {
	inflight int
	fails    []entry
}

// maxGateKeys bounds the gate's memory under a flood of distinct
// addresses; past it the oldest windows are forgotten wholesale (the
// primary's counting still applies).
const maxGateKeys = 100000

// NewGate returns an empty Gate.
func NewGate() *Gate {
	return &Gate{ips: map[string]*slots{}, acc: map[string]*slots{}, changed: make(chan struct{})}
}

// gateWindow is how long the gate remembers a failure: long enough to
// bridge the time until the primary's decision (a block or a freeze)
// reaches this node, short enough that an address an administrator
// unblocks, or an account that is thawed, is usable again on every node
// within it.
const gateWindow = time.Minute

// taken returns the slots of key, with failures older than window
// dropped.
func (g *Gate) taken(m map[string]*slots, key string, now time.Time, window time.Duration) *slots {
	sl := m[key]
	if sl == nil {
		if len(m) >= maxGateKeys {
			clear(m)
		}
		sl = &slots{}
		m[key] = sl
	}
	window = min(window, gateWindow)
	kept := sl.fails[:0]
	for _, f := range sl.fails {
		if now.Sub(f.at) < window {
			kept = append(kept, f)
		}
	}
	sl.fails = kept
	return sl
}

// Attempt is one reserved login attempt; finish it exactly once.
type Attempt struct {
	g        *Gate
	ip, addr string
}

// Refusal says why the gate refused an attempt.
type Refusal int

const (
	Open           Refusal = iota
	RefusedAddress         // the client address's failures reach the limit
	RefusedAccount         // the account's failures reach the limit
)

// gateWait bounds how long an attempt waits for attempts in flight to
// finish before it is refused.
const gateWait = 5 * time.Second

// Reserve takes a slot for a login from ip to address (address "" when
// no account is known). When failures alone fill the address's or the
// account's slots it takes nothing and says which; when attempts in flight
// fill them it waits until one finishes (so parallel guesses are checked
// one batch at a time, each batch counted before the next), up to gateWait
// or the end of ctx, then refuses as RefusedAddress or RefusedAccount.
// Addresses and accounts that screening exempts (AllowIPs, AllowAccounts)
// are not limited, nor is an account for which exempt reports true (asked
// only when its slots are taken, outside the gate's lock, and at most once
// per call: the last usable global administrator, whom screening never
// locks out; the question may be costly).
func (g *Gate) Reserve(ctx context.Context, cfg mailcluster.ScreeningConfig, now func() time.Time, ip, address string, exempt func() bool) (*Attempt, Refusal) {
	deadline := time.NewTimer(gateWait)
	defer deadline.Stop()
	var exempted *bool // not asked yet
	for {
		at, refused, wait, ask := g.tryReserve(cfg, now(), ip, address, exempted)
		if ask {
			v := exempt()
			exempted = &v
			continue
		}
		if wait == nil {
			return at, refused
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, refused
		case <-deadline.C:
			return nil, refused
		}
	}
}

// tryReserve takes the slots if it can. Otherwise it returns the reason
// and, when attempts in flight are what fills the slots, a channel closed
// when one of them finishes; or ask, when the account's slots are taken
// and whether it is exempt is not known yet (exempted nil).
func (g *Gate) tryReserve(cfg mailcluster.ScreeningConfig, now time.Time, ip, address string, exempted *bool) (at *Attempt, refused Refusal, wait <-chan struct{}, ask bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ipSl, accSl *slots
	if ip != "" && !cfg.AllowedIP(ip) {
		ipSl = g.taken(g.ips, ip, now, cfg.IPWindow)
		if len(ipSl.fails) >= cfg.IPFailures {
			return nil, RefusedAddress, nil, false
		}
		if ipSl.inflight+len(ipSl.fails) >= cfg.IPFailures {
			return nil, RefusedAddress, g.changed, false
		}
	}
	if address != "" && !cfg.AllowAccounts[address] {
		accSl = g.taken(g.acc, address, now, cfg.AccountWindow)
		if accSl.inflight+len(accSl.fails) >= cfg.AccountFailures {
			switch {
			case exempted == nil:
				return nil, Open, nil, true
			case *exempted:
				accSl = nil
			case len(accSl.fails) >= cfg.AccountFailures:
				return nil, RefusedAccount, nil, false
			default:
				return nil, RefusedAccount, g.changed, false
			}
		}
	}
	at = &Attempt{g: g}
	if ipSl != nil {
		ipSl.inflight++
		at.ip = ip
	}
	if accSl != nil {
		accSl.inflight++
		at.addr = address
	}
	return at, Open, nil, false
}

// Finish gives the slots back; a failure keeps them for the window (for
// the account only once per distinct password hash).
func (at *Attempt) Finish(now time.Time, failed bool, hash string) {
	g := at.g
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.changed)
	g.changed = make(chan struct{})
	if sl := g.ips[at.ip]; at.ip != "" && sl != nil {
		sl.inflight--
		if failed {
			sl.fails = append(sl.fails, entry{at: now, hash: hash})
		}
	}
	if sl := g.acc[at.addr]; at.addr != "" && sl != nil {
		sl.inflight--
		if failed && !containsHash(sl.fails, hash) {
			sl.fails = append(sl.fails, entry{at: now, hash: hash})
		}
	}
}

func containsHash(fs []entry, hash string) bool {
	for _, f := range fs {
		if f.hash == hash {
			return true
		}
	}
	return false
}

// ForgetAccount drops an account's failures (it was thawed).
func (g *Gate) ForgetAccount(address string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sl := g.acc[address]; sl != nil {
		sl.fails = nil
	}
}

// ForgetAddress drops an address's failures (it was unblocked).
func (g *Gate) ForgetAddress(ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sl := g.ips[ip]; sl != nil {
		sl.fails = nil
	}
}
