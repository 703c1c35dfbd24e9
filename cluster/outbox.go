package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/schema"

	bolt "go.etcd.io/bbolt"

	"mailcluster"
)

var (
	bucketOutbox = []byte("usage")
	bucketEpoch  = []byte("epoch")
)

// SendFunc delivers a report to the primary and returns the store index at
// which it is applied.
type SendFunc func(ctx context.Context, r mailcluster.UsageReport) (uint64, error)

// Outbox keeps a node's changes to mail (usage deltas, and the folder
// changes they name) in a bbolt file until the primary has applied them,
// and sends them in order. Each delta gets a sequence number, so that the
// primary applies it exactly once even when a send is repeated. A Report
// wakes the sender at once (no timer stands between a change and its
// send; a change made while a send is in flight goes with the next one).
// While no primary is reachable the deltas wait; they are sent as soon as
// one is.
type Outbox struct {
	db    *bolt.DB
	node  string
	epoch string
	send  SendFunc
	log   *slog.Logger
	// Store, when set, is the node's replicated state: a delta stops being
	// pending once the snapshot shows the primary applied it (reports/<node>),
	// which happens in the same transaction that publishes the usage, so
	// usage plus pending never counts a change twice or not at all. Without
	// a Store a delta stops being pending when the primary acknowledges it.
	Store mailcluster.Store

	// commitMu guards the reports waiting for the next commit.
	commitMu   sync.Mutex
	queued     []*reportReq
	committing bool
	commits    atomic.Int64 // write transactions of the file (tests)

	mu      sync.Mutex
	pending map[string][]pendingDelta
	kick    chan struct{}
	failing bool
}

// OpenOutbox opens (or creates) the outbox file at path.
func OpenOutbox(path, node string, send SendFunc, log *slog.Logger) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cluster: open %s: %w", path, err)
	}
	o := &Outbox{db: db, node: node, send: send, log: log, pending: map[string][]pendingDelta{}, kick: make(chan struct{}, 1)}
	err = db.Update(func(tx *bolt.Tx) error {
		eb, err := tx.CreateBucketIfNotExists(bucketEpoch)
		if err != nil {
			return err
		}
		if v := eb.Get(bucketEpoch); v != nil {
			o.epoch = string(v)
		} else {
			o.epoch = rand.Text()
			if err := eb.Put(bucketEpoch, []byte(o.epoch)); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists(bucketOutbox)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			var d mailcluster.UsageDelta
			if json.Unmarshal(v, &d) == nil {
				o.addPending(d)
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cluster: load %s: %w", path, err)
	}
	return o, nil
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

type pendingDelta struct {
	seq             uint64
	bytes, messages int64
}

func (o *Outbox) addPending(d mailcluster.UsageDelta) {
	if d.Bytes == 0 && d.Messages == 0 {
		return // a folder change only: no usage pending
	}
	k := d.Domain + "/" + d.Mailbox
	o.pending[k] = append(o.pending[k], pendingDelta{seq: d.Seq, bytes: d.Bytes, messages: d.Messages})
}

// dropPending forgets deltas up to seq (inclusive) for the mailboxes of batch.
func (o *Outbox) dropPending(keys map[string]bool, seq uint64) {
	for k := range keys {
		ds := o.pending[k]
		kept := ds[:0]
		for _, d := range ds {
			if d.seq > seq {
				kept = append(kept, d)
			}
		}
		if len(kept) == 0 {
			delete(o.pending, k)
		} else {
			o.pending[k] = kept
		}
	}
}

// applied returns the last sequence of this outbox that the local
// snapshot shows as applied by the primary.
func (o *Outbox) applied() uint64 {
	if o.Store == nil {
		return 0
	}
	kv, ok := o.Store.Get(schema.Report(o.node))
	if !ok {
		return 0
	}
	var mark mailcluster.ReportMark
	if json.Unmarshal(kv.Value, &mark) != nil || mark.Epoch != o.epoch {
		return 0
	}
	return mark.Seq
}

// Report persists deltas (assigning their sequence numbers) and wakes the
// sender. It implements the mail service's Reporter.
func (o *Outbox) Report(deltas ...mailcluster.UsageDelta) error {
	req := &reportReq{deltas: deltas, done: make(chan error, 1)}
	o.commitMu.Lock()
	o.queued = append(o.queued, req)
	if !o.committing {
		o.committing = true
		go o.commitLoop()
	}
	o.commitMu.Unlock()
	return <-req.done
}

// reportReq is one Report waiting for its commit.
type reportReq struct {
	deltas []mailcluster.UsageDelta
	done   chan error
}

// commitLoop writes the reports queued since its last commit in one
// bbolt transaction (one fsync for all of them: group commit), until none
// waits. A report returns only after the commit that holds it.
func (o *Outbox) commitLoop() {
	for {
		o.commitMu.Lock()
		batch := o.queued
		o.queued = nil
		if len(batch) == 0 {
			o.committing = false
			o.commitMu.Unlock()
			return
		}
		o.commitMu.Unlock()
		err := o.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketOutbox)
			for _, r := range batch {
				for i := range r.deltas {
					seq, err := b.NextSequence()
					if err != nil {
						return err
					}
					r.deltas[i].Seq = seq
					v, _ := json.Marshal(r.deltas[i])
					var k [8]byte
					binary.BigEndian.PutUint64(k[:], seq)
					if err := b.Put(k[:], v); err != nil {
						return err
					}
				}
			}
			return nil
		})
		o.commits.Add(1)
		if err != nil {
			err = fmt.Errorf("cluster: outbox: %w", err)
		} else {
			o.mu.Lock()
			for _, r := range batch {
				for _, d := range r.deltas {
					o.addPending(d)
				}
			}
			o.mu.Unlock()
			select {
			case o.kick <- struct{}{}:
			default:
			}
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// Pending returns the reported change of a mailbox that the local
// snapshot does not show as published yet.
func (o *Outbox) Pending(domain, mailbox string) (bytes, messages int64) {
	applied := o.applied()
	o.mu.Lock()
	defer o.mu.Unlock()
	k := domain + "/" + mailbox
	if applied > 0 {
		o.dropPending(map[string]bool{k: true}, applied)
	}
	for _, d := range o.pending[k] {
		bytes += d.bytes
		messages += d.messages
	}
	return bytes, messages
}

// Queued returns how many deltas wait to be sent.
func (o *Outbox) Queued() int {
	n := 0
	_ = o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	return n
}

// Run sends queued deltas until ctx ends. Kick wakes it early.
func (o *Outbox) Run(ctx context.Context) {
	backoff := 20 * time.Millisecond
	for {
		sent, err := o.sendBatch(ctx)
		if err != nil {
			o.setFailing(true, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		o.setFailing(false, nil)
		backoff = 20 * time.Millisecond
		if sent > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		case <-time.After(5 * time.Second):
		}
	}
}

// Kick wakes the sender (e.g. when a primary was elected).
func (o *Outbox) Kick() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

func (o *Outbox) setFailing(failing bool, err error) {
	o.mu.Lock()
	changed := failing != o.failing
	o.failing = failing
	o.mu.Unlock()
	if !changed {
		return
	}
	if failing {
		o.log.Warn("cannot report changes to mail to the primary; keeping them queued", "queued", o.Queued(), "err", err)
	} else {
		o.log.Info("reporting changes to mail to the primary again")
	}
}

// coalesce leaves out of a batch every delta that changes no usage and
// repeats the folder and kind of a later delta in it (flags set again and
// again on one folder): the later one tells the same, with a higher
// sequence number. Deltas that change usage are all kept, each with its
// time (a recount skips those before it).
func coalesce(batch []mailcluster.UsageDelta) []mailcluster.UsageDelta {
	type key struct {
		domain, mailbox, folder string
		kind                    mailcluster.MailChangeKind
	}
	later := map[key]bool{}
	out := make([]mailcluster.UsageDelta, 0, len(batch))
	for i := len(batch) - 1; i >= 0; i-- {
		d := batch[i]
		k := key{d.Domain, d.Mailbox, d.Folder, d.Kind}
		if d.Bytes == 0 && d.Messages == 0 && d.Folder != "" && later[k] {
			continue
		}
		later[k] = true
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

// sendBatch sends the oldest deltas (up to MaxReportDeltas) and removes
// them once the primary applied them.
func (o *Outbox) sendBatch(ctx context.Context) (int, error) {
	var batch []mailcluster.UsageDelta
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(batch) < mailcluster.MaxReportDeltas; k, v = c.Next() {
			var d mailcluster.UsageDelta
			if json.Unmarshal(v, &d) == nil {
				batch = append(batch, d)
			}
		}
		return nil
	})
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = o.send(sctx, mailcluster.UsageReport{Node: o.node, Epoch: o.epoch, Deltas: coalesce(batch)})
	cancel()
	if err != nil {
		return 0, err
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, d := range batch {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], d.Seq)
			if err := b.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
	o.commits.Add(1)
	if err != nil {
		return 0, fmt.Errorf("cluster: outbox: %w", err)
	}
	if o.Store == nil {
		keys := map[string]bool{}
		for _, d := range batch {
			keys[d.Domain+"/"+d.Mailbox] = true
		}
		o.mu.Lock()
		o.dropPending(keys, batch[len(batch)-1].Seq)
		o.mu.Unlock()
	}
	return len(batch), nil
}
