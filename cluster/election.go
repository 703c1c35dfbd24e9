package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/schema"

	"github.com/hashicorp/consul/api"

	"mailcluster"
)

// ElectionConfig configures an Election.
type ElectionConfig struct {
	Client  *api.Client
	Cluster string
	Self    mailcluster.PrimaryRef // this node's name and advertised API URL
	Log     *slog.Logger

	// NeverPrimary keeps the node out of the election.
	NeverPrimary bool
	// TTL of the node's own health check that the session is bound to;
	// 0 means one second. The check is updated four times per TTL.
	TTL time.Duration
	// LockDelay of the session; 0 means 10 ms (fencing makes Consul's usual
	// 15 s unnecessary).
	LockDelay time.Duration
	// OnChange is called (from the election goroutine) after every role
	// change, with the new role.
	OnChange func(mailcluster.Role)
	// Pending, when set and true, marks a node that is not registered: it
	// reports RolePending and stays out of the election.
	Pending func() bool
	// MayLead, when set and false, keeps a registered node out of the
	// election (e.g. it runs another version than it was registered with).
	MayLead func() bool
}

// primaryValue is the value of the primary key.
type primaryValue struct {
	Name   string    `json:"name"`
	APIURL string    `json:"apiUrl"`
	Since  time.Time `json:"since"`
}

// switchoverValue asks every node but Target to stay out of the election
// until Until.
type switchoverValue struct {
	Target string    `json:"target"`
	From   string    `json:"from"`
	Until  time.Time `json:"until"`
}

const keySwitchover = "switchover"

// Election takes part in electing the primary through a Consul lock: a
// session bound to the node's own TTL check and to serfHealth acquires
// mailcluster/<cluster>/primary. It implements mailcluster.Leadership.
// The node stops being primary the moment it cannot confirm its session
// (check not updated within the TTL, lock held by another session).
type Election struct {
	cfg     ElectionConfig
	prefix  string
	checkID string

	role    atomic.Value // mailcluster.Role
	session atomic.Value // string: set only while primary
	primary atomic.Pointer[mailcluster.PrimaryRef]

	mu        sync.Mutex
	sessionID string    // the node's current session (primary or not)
	lastBeat  time.Time // last successful TTL update
	holdUntil time.Time // stay out of the election until then (after a switchover)
	kick      chan struct{}
	elections atomic.Int64
	// watchErrors counts failed reads of the primary key.
	watchErrors atomic.Uint64

	// roleMu orders role changes with the time-as-primary accounting.
	roleMu       sync.Mutex
	primarySince time.Time     // when this node last became primary
	primaryTotal time.Duration // time as primary before primarySince
}

var _ mailcluster.Leadership = (*Election)(nil)

// NewElection returns an Election; Run starts it.
func NewElection(cfg ElectionConfig) *Election {
	if cfg.TTL <= 0 {
		cfg.TTL = time.Second
	}
	if cfg.LockDelay <= 0 {
		cfg.LockDelay = 10 * time.Millisecond
	}
	e := &Election{cfg: cfg, prefix: KeyPrefix(cfg.Cluster), checkID: "mailcluster-" + cfg.Self.Name + "-session",
		kick: make(chan struct{}, 1)}
	e.role.Store(mailcluster.RoleUnknown)
	e.session.Store("")
	return e
}

// Role implements mailcluster.Leadership.
func (e *Election) Role() mailcluster.Role { return e.role.Load().(mailcluster.Role) }

// Primary implements mailcluster.Leadership.
func (e *Election) Primary() (mailcluster.PrimaryRef, bool) {
	if p := e.primary.Load(); p != nil {
		return *p, true
	}
	return mailcluster.PrimaryRef{}, false
}

// Session returns the session holding the primary key while this node is
// primary, else "". ConsulStore fences its writes with it.
func (e *Election) Session() string { return e.session.Load().(string) }

// Member reports whether this node holds its election session and has
// updated the session's health check within the TTL: a live member of
// the cluster, primary or not. A node that is not may see its outbound
// queue taken over by the primary, so it must not deliver it.
func (e *Election) Member() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessionID != "" && time.Since(e.lastBeat) < e.cfg.TTL
}

// Elections returns how often this node became primary.
func (e *Election) Elections() int64 { return e.elections.Load() }

// PrimaryDuration returns how long this node has been primary in all,
// the current term included. Safe for concurrent use.
func (e *Election) PrimaryDuration() time.Duration {
	e.roleMu.Lock()
	defer e.roleMu.Unlock()
	d := e.primaryTotal
	if e.Role() == mailcluster.RolePrimary {
		d += time.Since(e.primarySince)
	}
	return d
}

// WatchErrors returns how often reading the primary key from Consul
// failed (each failure is followed by a retry).
func (e *Election) WatchErrors() uint64 { return e.watchErrors.Load() }

func (e *Election) setRole(r mailcluster.Role, session string) {
	if r == mailcluster.RoleSecondary && e.cfg.Pending != nil && e.cfg.Pending() {
		r = mailcluster.RolePending
	}
	if r != mailcluster.RolePrimary {
		e.session.Store("") // first: stop accepting writes
	}
	e.roleMu.Lock()
	old := e.role.Swap(r)
	if old != r {
		now := time.Now()
		if old == mailcluster.RolePrimary {
			e.primaryTotal += now.Sub(e.primarySince)
		}
		if r == mailcluster.RolePrimary {
			e.primarySince = now
		}
	}
	e.roleMu.Unlock()
	if r == mailcluster.RolePrimary {
		e.session.Store(session)
		self := e.cfg.Self
		e.primary.Store(&self)
	}
	if old != r {
		if r == mailcluster.RolePrimary {
			e.elections.Add(1)
		}
		e.cfg.Log.Info("role changed", "from", old, "to", r)
		if e.cfg.OnChange != nil {
			e.cfg.OnChange(r)
		}
	}
}

// stepDown gives up the primary role at once (no Consul call needed).
func (e *Election) stepDown(reason string) {
	if e.Role() == mailcluster.RolePrimary {
		e.cfg.Log.Warn("stepping down", "reason", reason)
	}
	e.primary.Store(nil)
	e.setRole(mailcluster.RoleUnknown, "")
}

// Run takes part in the election until ctx ends, then releases the lock,
// destroys the session and deregisters the check (a graceful stop: a
// successor takes over at once).
func (e *Election) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if !e.cfg.NeverPrimary {
		wg.Add(1)
		go func() { defer wg.Done(); e.heartbeat(ctx) }()
	}
	e.loop(ctx)
	wg.Wait()
	e.shutdown()
}

// heartbeat keeps the TTL check passing and steps down when it cannot.
func (e *Election) heartbeat(ctx context.Context) {
	tick := time.NewTicker(e.cfg.TTL / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := e.cfg.Client.Agent().UpdateTTLOpts(e.checkID, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		e.mu.Lock()
		if err == nil {
			e.lastBeat = time.Now()
		}
		late := time.Since(e.lastBeat) >= e.cfg.TTL
		e.mu.Unlock()
		if late && e.Role() == mailcluster.RolePrimary {
			e.stepDown("the session's health check could not be updated within its TTL")
		}
	}
}

// ensureSession registers the TTL check and creates a session bound to it.
func (e *Election) ensureSession(ctx context.Context) (string, error) {
	e.mu.Lock()
	id := e.sessionID
	e.mu.Unlock()
	if id != "" {
		return id, nil
	}
	// A session left by an earlier run of this node (killed, then started
	// again within the TTL) is bound to the same check: registering and
	// passing the check below would keep it, and the primary key it may
	// hold, alive for ever. Destroy such sessions first.
	name := "mailcluster-" + e.cfg.Cluster + "-" + e.cfg.Self.Name
	sessions, _, err := e.cfg.Client.Session().List((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("cluster: list sessions: %w", err)
	}
	for _, s := range sessions {
		if s.Name == name {
			if _, err := e.cfg.Client.Session().Destroy(s.ID, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				return "", fmt.Errorf("cluster: destroy the stale session %s: %w", s.ID, err)
			}
			e.cfg.Log.Info("destroyed a stale election session of this node", "session", s.ID)
		}
	}
	agent := e.cfg.Client.Agent()
	reg := &api.AgentCheckRegistration{ID: e.checkID, Name: "mailcluster " + e.cfg.Self.Name + " election TTL",
		Notes:             "Updated by the node every TTL/4; the election session is bound to it.",
		AgentServiceCheck: api.AgentServiceCheck{TTL: e.cfg.TTL.String(), Status: api.HealthPassing}}
	if err := agent.CheckRegister(reg); err != nil {
		return "", fmt.Errorf("cluster: register check: %w", err)
	}
	if err := agent.UpdateTTL(e.checkID, "", api.HealthPassing); err != nil {
		return "", fmt.Errorf("cluster: pass check: %w", err)
	}
	e.mu.Lock()
	e.lastBeat = time.Now()
	e.mu.Unlock()
	id, _, err = e.cfg.Client.Session().Create(&api.SessionEntry{
		Name:      name,
		Checks:    []string{"serfHealth", e.checkID},
		LockDelay: e.cfg.LockDelay,
		Behavior:  api.SessionBehaviorRelease,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("cluster: create session: %w", err)
	}
	e.mu.Lock()
	e.sessionID = id
	e.mu.Unlock()
	return id, nil
}

func (e *Election) dropSession() {
	e.mu.Lock()
	e.sessionID = ""
	e.mu.Unlock()
}

// loop follows the primary key and acquires it when it is free.
func (e *Election) loop(ctx context.Context) {
	kv := e.cfg.Client.KV()
	var waitIndex uint64
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wait := 10 * time.Second
		if hold := e.holdRemaining(); hold > 0 {
			wait = hold
		}
		if e.cfg.Pending != nil && e.cfg.Pending() || e.cfg.MayLead != nil && !e.cfg.MayLead() {
			wait = 300 * time.Millisecond // registration can change any moment
		}
		if !e.cfg.NeverPrimary {
			// Hold a session before it is needed, so that taking over after
			// a failure is a single acquire.
			if _, err := e.ensureSession(ctx); err != nil && ctx.Err() == nil {
				e.cfg.Log.Debug("creating the election session", "err", err)
				if wait > time.Second {
					wait = time.Second // try again soon
				}
			}
		}
		pair, meta, err := kv.Get(e.prefix+schema.KeyPrimary, (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.watchErrors.Add(1)
			e.stepDown("consul is unreachable")
			e.cfg.Log.Debug("election watch failed", "err", err)
			sleepCtx(ctx, backoff)
			backoff = min(backoff*2, time.Second)
			// Read the key at once when Consul is back: blocking on the old
			// index would keep the node stepped down until the key changes
			// or the wait ends (10 s), although its session may still hold it.
			waitIndex = 0
			continue
		}
		backoff = 50 * time.Millisecond
		waitIndex = meta.LastIndex
		if waitIndex == 0 {
			waitIndex = 1
		}
		e.mu.Lock()
		mine := e.sessionID
		e.mu.Unlock()
		switch {
		case pair != nil && pair.Session != "" && mine != "" && pair.Session == mine:
			e.setRole(mailcluster.RolePrimary, mine)
			continue
		case pair != nil && pair.Session != "":
			var v primaryValue
			_ = json.Unmarshal(pair.Value, &v)
			e.primary.Store(&mailcluster.PrimaryRef{Name: v.Name, APIURL: v.APIURL})
			if e.Role() == mailcluster.RolePrimary {
				e.stepDown("another node holds the primary key")
			}
			e.setRole(mailcluster.RoleSecondary, "")
			continue
		}
		// The key is free.
		e.primary.Store(nil)
		if e.Role() == mailcluster.RolePrimary {
			e.stepDown("the primary key was released")
		}
		e.setRole(mailcluster.RoleSecondary, "")
		if e.cfg.NeverPrimary || !e.eligible() || !e.mayAcquire() {
			if e.cfg.Pending != nil || e.cfg.MayLead != nil {
				waitIndex = 0 // look again soon: registration can change
				sleepCtx(ctx, 500*time.Millisecond)
			}
			continue
		}
		if err := e.acquire(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Log.Warn("taking part in the election", "err", err)
			sleepCtx(ctx, backoff)
		}
		waitIndex = 0 // read the key again at once
	}
}

// eligible applies Pending and MayLead.
func (e *Election) eligible() bool {
	if e.cfg.Pending != nil && e.cfg.Pending() {
		return false
	}
	return e.cfg.MayLead == nil || e.cfg.MayLead()
}

// acquire tries to take the primary key with the node's session.
func (e *Election) acquire(ctx context.Context) error {
	id, err := e.ensureSession(ctx)
	if err != nil {
		return err
	}
	val, _ := json.Marshal(primaryValue{Name: e.cfg.Self.Name, APIURL: e.cfg.Self.APIURL, Since: time.Now().UTC()})
	ok, _, err := e.cfg.Client.KV().Acquire(&api.KVPair{Key: e.prefix + schema.KeyPrimary, Value: val, Session: id},
		(&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		// Most often the session was invalidated (its check went critical):
		// make a new one next time.
		e.dropSession()
		return fmt.Errorf("cluster: acquire %q: %w", e.prefix+schema.KeyPrimary, err)
	}
	if ok {
		e.setRole(mailcluster.RolePrimary, id)
	}
	return nil
}

// mayAcquire honours a switchover in progress: only its target may take
// the key until it expires, and the node that handed over waits.
func (e *Election) mayAcquire() bool {
	if e.holdRemaining() > 0 {
		return false
	}
	pair, _, err := e.cfg.Client.KV().Get(e.prefix+keySwitchover, nil)
	if err != nil || pair == nil {
		return true
	}
	var v switchoverValue
	if json.Unmarshal(pair.Value, &v) != nil || time.Now().After(v.Until) {
		return true
	}
	if v.Target == e.cfg.Self.Name || v.Target == "" && v.From != e.cfg.Self.Name {
		return true
	}
	e.mu.Lock()
	e.holdUntil = v.Until // look again when the switchover expires
	e.mu.Unlock()
	return false
}

func (e *Election) holdRemaining() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Until(e.holdUntil)
}

// ErrNotPrimary is returned by Switchover on a node that is not primary.
var ErrNotPrimary = errors.New("cluster: not the primary")

// Switchover hands the primary role over: to target when not empty (which
// must be a node that takes part in the election), else to any other node.
// The old primary stays out of the election for hold (0: 3 s).
func (e *Election) Switchover(ctx context.Context, target string, hold time.Duration) error {
	if hold <= 0 {
		hold = 3 * time.Second
	}
	sid := e.Session()
	if sid == "" || e.Role() != mailcluster.RolePrimary {
		return ErrNotPrimary
	}
	if target == e.cfg.Self.Name {
		return nil
	}
	v, _ := json.Marshal(switchoverValue{Target: target, From: e.cfg.Self.Name, Until: time.Now().Add(hold)})
	e.mu.Lock()
	e.holdUntil = time.Now().Add(hold)
	e.mu.Unlock()
	e.stepDown("switchover")
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: e.prefix + schema.KeyPrimary, Session: sid}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: e.prefix + keySwitchover, Value: v}},
		{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: e.prefix + schema.KeyPrimary, Session: sid}},
	}
	ok, resp, _, err := e.cfg.Client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("cluster: switchover: %w", err)
	}
	if !ok {
		return fmt.Errorf("cluster: switchover refused: %v", resp.Errors)
	}
	e.cfg.Log.Info("switchover: released the primary key", "target", target)
	return nil
}

// shutdown releases the lock and cleans up (best effort, bounded).
func (e *Election) shutdown() {
	sid := e.Session()
	e.stepDown("stopping")
	e.mu.Lock()
	id := e.sessionID
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if sid != "" {
		if _, _, err := e.cfg.Client.KV().Release(&api.KVPair{Key: e.prefix + schema.KeyPrimary, Session: sid}, wo); err != nil {
			e.cfg.Log.Warn("releasing the primary key", "err", err)
		} else {
			e.cfg.Log.Info("released the primary key")
		}
	}
	if id != "" {
		_, _ = e.cfg.Client.Session().Destroy(id, wo)
	}
	e.dropSession() // no longer a member (Member)
	if !e.cfg.NeverPrimary {
		_ = e.cfg.Client.Agent().CheckDeregisterOpts(e.checkID, (&api.QueryOptions{}).WithContext(ctx))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
