package mailqueue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailcluster/outbound"

	"mailcluster"
)

// Deliverer sends one message to the recipients of one destination
// domain ("" for all recipients, through a smarthost). It is satisfied
// by *outbound.Client.
type Deliverer interface {
	Deliver(ctx context.Context, domain string, m outbound.Message) []outbound.Result
	// ViaSmarthost reports whether every domain goes to one relay (then
	// the runner makes one delivery per message, for all recipients).
	ViaSmarthost() bool
}

// LocalDelivery delivers a notification to a mailbox of the cluster.
// handled is false when to is not in a local domain (the notification
// is then queued like any other message).
type LocalDelivery func(ctx context.Context, to string, msg []byte) (handled bool, err error)

// Config configures a Runner.
type Config struct {
	Spool    Spool
	Node     string // the node whose queue this runner delivers
	Hostname string // names the node in DSNs
	Deliver  func() Deliverer
	Setting  Setting
	// Live is false while the node must not deliver (not a member of its
	// cluster, or its membership lapsed, so its queue may be taken over).
	Live  func() bool
	Local LocalDelivery
	Log   *slog.Logger
	// Metrics, when not nil, counts deliveries.
	Metrics *Metrics
	// Scan is how often the queue directory is listed again (messages
	// handed over by a takeover, or queued by another process); 0 is 2 s.
	Scan time.Duration
}

// Runner delivers the messages of one node's queue: at once after they
// are queued, then on the retry schedule until they are delivered,
// bounced or expired.
type Runner struct {
	cfg Config

	mu      sync.Mutex
	items   map[string]*item
	kick    chan struct{}
	perDest map[string]int // deliveries in progress by destination
	running int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the attempts in progress
	done   chan struct{}
}

type item struct {
	next     time.Time
	created  time.Time
	running  bool
	held     bool // queued together with local copies not yet made
	reserved bool // being written by this process (reserve): not yet queued
	tried    bool // had a failed attempt
}

// NewRunner returns a Runner; Start begins delivering.
func NewRunner(cfg Config) *Runner {
	if cfg.Scan <= 0 {
		cfg.Scan = 2 * time.Second
	}
	return &Runner{cfg: cfg, items: map[string]*item{}, kick: make(chan struct{}, 1), perDest: map[string]int{}, done: make(chan struct{})}
}

// Start creates the node's queue directories and starts the loop.
func (r *Runner) Start() error {
	if err := r.cfg.Spool.Init(r.cfg.Node); err != nil {
		return err
	}
	r.cfg.Spool.cleanTmp(r.cfg.Node, time.Hour)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.loop()
	return nil
}

// Close stops starting attempts, waits up to wait for those in progress
// (so that a message the destination accepted is also dequeued, and a
// graceful stop never makes a duplicate), then cancels the rest.
func (r *Runner) Close(wait time.Duration) {
	if r.cancel == nil {
		return
	}
	r.mu.Lock()
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	r.mu.Unlock()
	finished := make(chan struct{})
	go func() { r.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(wait):
		r.cfg.Log.Warn("queue: deliveries still in progress at stop were cut short")
	}
	r.cancel()
	<-finished
}

// reserve tells the runner of a message about to be written to its
// queue: until queued (or forget) it is held, and a scan that lists it
// meanwhile neither adds it again nor drops it.
func (r *Runner) reserve(id string) {
	r.mu.Lock()
	r.items[id] = &item{held: true, reserved: true}
	r.mu.Unlock()
}

// queued tells the runner that a message reserved before is written; a
// held one waits for release.
func (r *Runner) queued(env *Envelope, hold bool) {
	r.mu.Lock()
	it, ok := r.items[env.ID]
	if !ok {
		it = &item{}
		r.items[env.ID] = it
	}
	it.next, it.created, it.held, it.reserved = env.NextAttempt, env.Created, hold, false
	r.mu.Unlock()
	if !hold {
		r.wake()
	}
}

func (r *Runner) release(id string) {
	r.mu.Lock()
	if it, ok := r.items[id]; ok {
		it.held = false
	}
	r.mu.Unlock()
	r.wake()
}

func (r *Runner) forget(id string) {
	r.mu.Lock()
	if it, ok := r.items[id]; ok && !it.running {
		delete(r.items, id)
	}
	r.mu.Unlock()
}

// enqueue writes a message of the runner's own (a notification) the way
// Queue.Enqueue does.
func (r *Runner) enqueue(env *Envelope, msg []byte) error {
	env.ID = newID(time.Now())
	r.reserve(env.ID)
	if err := r.cfg.Spool.Write(r.cfg.Node, env, nil, bytes.NewReader(msg), int64(len(msg)), nil); err != nil {
		r.forget(env.ID)
		return err
	}
	r.queued(env, false)
	return nil
}

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Runner) loop() {
	scan := time.NewTicker(r.cfg.Scan)
	defer scan.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	r.scan()
	for {
		r.dispatch()
		select {
		case <-r.done:
			return
		case <-scan.C:
			r.scan()
		case <-tick.C:
			if ids := r.cfg.Spool.takeRetries(r.cfg.Node); len(ids) > 0 {
				r.retryNow(ids)
			}
		case <-r.kick:
		}
	}
}

// scan lists the queue directory: it adds messages it did not know (a
// takeover, a restart) and forgets those gone (deleted by an operator,
// taken over).
func (r *Runner) scan() {
	ids, err := r.cfg.Spool.IDs(r.cfg.Node)
	if err != nil {
		r.cfg.Log.Error("queue: list", "err", err)
		return
	}
	present := make(map[string]bool, len(ids))
	var fresh []string
	r.mu.Lock()
	for _, id := range ids {
		present[id] = true
		if _, ok := r.items[id]; !ok {
			fresh = append(fresh, id)
		}
	}
	for id, it := range r.items {
		if !present[id] && !it.running && !it.reserved {
			delete(r.items, id)
		}
	}
	r.mu.Unlock()
	for _, id := range fresh {
		env, err := r.cfg.Spool.Envelope(r.cfg.Node, id)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				r.cfg.Log.Error("queue: read envelope", "id", id, "err", err)
			}
			continue
		}
		r.mu.Lock()
		if _, ok := r.items[id]; !ok {
			r.items[id] = &item{next: env.NextAttempt, created: env.Created, tried: env.Attempts > 0}
		}
		r.mu.Unlock()
	}
	r.updateGauges()
}

func (r *Runner) retryNow(ids []string) {
	r.mu.Lock()
	for _, id := range ids {
		if it, ok := r.items[id]; ok {
			it.next = time.Time{}
		}
	}
	r.mu.Unlock()
	r.wake()
}

// dispatch starts attempts for the messages that are due, oldest first,
// within [Queue] MaxDeliveries.
func (r *Runner) dispatch() {
	if r.cfg.Live != nil && !r.cfg.Live() {
		return
	}
	limit := r.cfg.Setting.count(KeyMaxDeliveries, DefaultMaxDeliveries)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return
	default:
	}
	var due []string
	for id, it := range r.items {
		if !it.running && !it.held && !it.next.After(now) {
			due = append(due, id)
		}
	}
	sort.Strings(due) // ids sort by age
	for _, id := range due {
		if r.running >= limit {
			return
		}
		r.items[id].running = true
		r.running++
		r.wg.Add(1)
		go r.attempt(id)
	}
}

// destination acquires a delivery slot to dest, waiting while
// [Queue] MaxPerDestination are in progress; it returns the release.
func (r *Runner) destination(ctx context.Context, dest string) (func(), bool) {
	limit := r.cfg.Setting.count(KeyMaxPerDestination, DefaultMaxPerDestination)
	for {
		r.mu.Lock()
		if r.perDest[dest] < limit {
			r.perDest[dest]++
			r.mu.Unlock()
			return func() {
				r.mu.Lock()
				r.perDest[dest]--
				if r.perDest[dest] == 0 {
					delete(r.perDest, dest)
				}
				r.mu.Unlock()
			}, true
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// attempt makes one delivery attempt of a message: every pending
// recipient, grouped by destination domain.
func (r *Runner) attempt(id string) {
	defer r.wg.Done()
	next, keep := r.try(id)
	r.mu.Lock()
	r.running--
	if it, ok := r.items[id]; ok {
		it.running = false
		if keep {
			it.next, it.tried = next, true
		} else {
			delete(r.items, id)
		}
	}
	r.mu.Unlock()
	r.updateGauges()
	r.wake()
}

// try returns when the message is next due, and false when it left the
// queue.
func (r *Runner) try(id string) (time.Time, bool) {
	sp, node, log := r.cfg.Spool, r.cfg.Node, r.cfg.Log
	env, err := sp.Envelope(node, id)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			log.Error("queue: read envelope", "id", id, "err", err)
			return time.Now().Add(time.Minute), true
		}
		return time.Time{}, false // deleted or taken over
	}
	d := r.cfg.Deliver()
	groups := map[string][]string{}
	for _, a := range env.pending() {
		dom := ""
		if !d.ViaSmarthost() {
			dom = strings.ToLower(a[strings.LastIndexByte(a, '@')+1:])
		}
		groups[dom] = append(groups[dom], a)
	}
	var mu sync.Mutex
	results := map[string]outbound.Result{}
	var wg sync.WaitGroup
	for dom, rcpts := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, ok := r.destination(r.ctx, dom)
			if !ok {
				return
			}
			defer release()
			m := outbound.Message{From: env.From, Rcpts: rcpts, Prefix: env.Prefix, Size: env.Size,
				Open: func() (io.ReadCloser, error) { return sp.Open(node, id) }}
			res := d.Deliver(r.ctx, dom, m)
			mu.Lock()
			for _, x := range res {
				results[strings.ToLower(x.Rcpt)] = x
			}
			mu.Unlock()
		}()
	}
	wg.Wait()

	now := time.Now()
	env.Attempts++
	var failed []mailcluster.QueuedRecipient
	delivered := 0
	for i := range env.Rcpts {
		rc := &env.Rcpts[i]
		if rc.State != mailcluster.RcptPending {
			continue
		}
		x, ok := results[strings.ToLower(rc.Address)]
		if !ok {
			continue // not tried (stopping)
		}
		rc.Attempts++
		rc.Updated = now
		// What a remote server says is kept in the envelope (rewritten at
		// every attempt) and shown to operators: flattened and bounded.
		rc.Host = oneLine(x.Host)
		rc.Reply = oneLine(replyText(x))
		switch {
		case x.Delivered:
			rc.State = mailcluster.RcptDelivered
			delivered++
		case x.Permanent:
			rc.State = mailcluster.RcptFailed
			failed = append(failed, *rc)
		}
	}
	maxAge := r.cfg.Setting.duration(KeyMaxAge, DefaultMaxAge)
	if len(env.pending()) > 0 && now.Sub(env.Created) >= maxAge {
		for i := range env.Rcpts {
			rc := &env.Rcpts[i]
			if rc.State == mailcluster.RcptPending {
				rc.State = mailcluster.RcptFailed
				if rc.Reply == "" {
					rc.Reply = "delivery time expired"
				} else {
					rc.Reply = "delivery time expired; last reply: " + rc.Reply
				}
				failed = append(failed, *rc)
			}
		}
	}
	r.cfg.Metrics.attempt(delivered, len(failed), len(env.pending()) > 0)
	for _, f := range failed {
		log.Info("queue: recipient bounced", "id", id, "rcpt", f.Address, "reply", f.Reply)
	}
	if len(failed) > 0 && env.From != "" {
		if err := r.notify(env, dsnFailed, failed, maxAge); err != nil {
			// Keep the message (with these recipients marked failed) so
			// that the notice is not lost: it is sent at a later attempt.
			log.Error("queue: the delivery status notification could not be queued", "id", id, "err", err)
			for i := range env.Rcpts {
				if env.Rcpts[i].State == mailcluster.RcptFailed {
					env.Rcpts[i].State = mailcluster.RcptPending
				}
			}
			_ = sp.SaveEnvelope(node, env)
			return now.Add(time.Minute), true
		}
	}
	if len(env.pending()) == 0 {
		if err := sp.Remove(node, id); err != nil {
			log.Error("queue: remove a finished message", "id", id, "err", err)
		}
		log.Debug("queue: message finished", "id", id, "attempts", env.Attempts)
		return time.Time{}, false
	}
	warnAfter := r.cfg.Setting.duration(KeyDelayWarning, DefaultDelayWarning)
	if !env.Warned && warnAfter > 0 && now.Sub(env.Created) >= warnAfter && env.From != "" {
		var late []mailcluster.QueuedRecipient
		for _, rc := range env.Rcpts {
			if rc.State == mailcluster.RcptPending {
				late = append(late, rc)
			}
		}
		if err := r.notify(env, dsnDelayed, late, maxAge); err != nil {
			log.Error("queue: the delay warning could not be queued", "id", id, "err", err)
		} else {
			env.Warned = true
		}
	}
	env.NextAttempt = now.Add(backoff(r.cfg.Setting.schedule(), env.Attempts))
	if env.NextAttempt.After(env.Created.Add(maxAge)) {
		env.NextAttempt = env.Created.Add(maxAge)
	}
	if err := sp.SaveEnvelope(node, env); err != nil {
		if errors.Is(err, ErrNotFound) {
			return time.Time{}, false
		}
		log.Error("queue: save envelope", "id", id, "err", err)
	}
	return env.NextAttempt, true
}

func replyText(x outbound.Result) string {
	if x.Code == 0 {
		return x.Text
	}
	s := strconv.Itoa(x.Code)
	if x.Enhanced != "" {
		s += " " + x.Enhanced
	}
	return s + " " + x.Text
}

// notify sends a DSN about rcpts to env's sender: into the sender's
// mailbox when it is local, else through the queue with the null sender.
func (r *Runner) notify(env *Envelope, kind string, rcpts []mailcluster.QueuedRecipient, maxAge time.Duration) error {
	f, err := r.cfg.Spool.Open(r.cfg.Node, env.ID)
	var header []byte
	if err == nil {
		header = headerOf(f)
		f.Close()
	}
	msg := buildDSN(r.cfg.Hostname, kind, env, rcpts, header, time.Now(), env.Created.Add(maxAge))
	if r.cfg.Local != nil {
		handled, err := r.cfg.Local(r.ctx, env.From, msg)
		if handled || err != nil {
			return err
		}
	}
	dsn := &Envelope{From: "", Origin: r.cfg.Node, Rcpts: []mailcluster.QueuedRecipient{{Address: env.From, State: mailcluster.RcptPending}}}
	return r.enqueue(dsn, msg)
}

// Stats returns the counts of this node's queue as the runner knows them.
func (r *Runner) Stats() mailcluster.QueueStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st mailcluster.QueueStats
	for _, it := range r.items {
		st.Messages++
		if it.tried {
			st.Deferred++
		}
		if st.Oldest.IsZero() || it.created.Before(st.Oldest) {
			st.Oldest = it.created
		}
	}
	return st
}

func (r *Runner) updateGauges() {
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.set(r.Stats())
	}
}
