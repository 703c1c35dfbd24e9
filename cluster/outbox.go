package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/schema"

	"mailcluster"
)

// SendFunc delivers a report to the primary and returns the store index at
// which it is applied.
type SendFunc func(ctx context.Context, r mailcluster.UsageReport) (uint64, error)

// Outbox keeps a node's changes to mail (usage deltas, and the folder
// changes they name) in a file (an append-only log, see outboxLog) until
// the primary has applied them, and sends them in order. Each delta gets
// a sequence number, so that the primary applies it exactly once even
// when a send is repeated. A Report returns once its deltas are synced to
// the file; concurrent reports share a commit (one write and one
// fdatasync); WriteReport only writes them (for a caller that syncs the
// file's whole file system next), and the sender syncs them before it
// sends them. A Report wakes an idle sender at once; while reports
// stream in, sends are paced so that each carries many (see Run). While
// no primary is reachable the deltas wait; they are sent as soon as one
// is.
type Outbox struct {
	path  string
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

	// logMu guards the file (written by the commit loop, WriteReport,
	// the sender's syncs and idle acknowledgement, and Close), lastSeq,
	// the last sequence number given, and synced, the last one known to
	// be on disk (WriteReport writes without a sync).
	logMu   sync.Mutex
	file    *outboxLog
	lastSeq uint64
	synced  uint64
	lock    *os.File // the lock file, held from open to close
	dev     uint64   // the device of the file's file system (0: unknown)

	// commitMu guards the reports waiting for the next commit.
	commitMu   sync.Mutex
	queued     []*reportReq
	committing bool
	want       int           // reports the commit loop waits for (0: not waiting)
	gathered   chan struct{} // wakes the waiting commit loop
	commitCost atomic.Int64  // running estimate of a commit's duration (ns)
	commits    atomic.Int64  // write transactions of the file (tests)
	// uncommitted counts the deltas of reports waiting for their commit
	// (Queued counts them too).
	uncommitted atomic.Int64

	// paced, when set (tests), is told each pause of the sender after a
	// send of n deltas, before the pause.
	paced func(n int, pause time.Duration)

	// markMu guards the last decoded mark of the primary (applied).
	markMu             sync.Mutex
	markIndex, markSeq uint64
	markLen            int

	mu sync.Mutex
	// queue is the committed deltas the primary has not acknowledged
	// (sequence above sent), in order: what the sender sends.
	queue   []mailcluster.UsageDelta
	pending map[string][]pendingDelta
	// held is the usage of the deltas of ReportAsync calls whose commit
	// has not ended: counted as pending from the call on.
	held    map[string]pendingDelta
	kick    chan struct{}
	failing bool
	// sent is the last sequence the primary acknowledged; removed the last
	// one the file records as acknowledged. The acknowledgement is written
	// with the next commit of reports, or by the sender once it has
	// nothing more to send (one sync less per send while reports stream
	// in). Until then a restart sends those deltas again, and the primary
	// skips them (it applies each sequence number once).
	sent, removed uint64
}

// OpenOutbox opens (or creates) the outbox file at path. The file is
// written anew with the deltas the primary has not acknowledged (a
// commit a crash cut short is left out: it was never acknowledged to its
// reporter); a bbolt outbox file of earlier versions is read and replaced
// the same way.
func OpenOutbox(path, node string, send SendFunc, log *slog.Logger) (o *Outbox, err error) {
	lock, err := lockExclusive(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("cluster: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	// A file being written anew when the node stopped is incomplete; the
	// file it was to replace is whole.
	if err := os.Remove(path + ".new"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster: open %s: %w", path, err)
	}
	st, found, ignored, err := readOutbox(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: open %s: %w", path, err)
	}
	if !found {
		st.Epoch = rand.Text()
	}
	if ignored > 0 {
		log.Warn("outbox: the end of the file was not whole (a commit cut short); its deltas were never acknowledged and are left out",
			"path", path, "bytes", ignored)
	}
	l, err := writeLog(path, st)
	if err != nil {
		return nil, fmt.Errorf("cluster: write %s: %w", path, err)
	}
	o = &Outbox{path: path, lock: lock, file: l, lastSeq: st.Seq, synced: st.Seq, dev: deviceOf(path), node: node, epoch: st.Epoch, send: send, log: log,
		queue: st.deltas, pending: map[string][]pendingDelta{}, held: map[string]pendingDelta{},
		sent: st.Ack, removed: st.Ack,
		kick: make(chan struct{}, 1), gathered: make(chan struct{}, 1)}
	for _, d := range st.deltas {
		o.addPending(d)
	}
	return o, nil
}

// Close records what the primary acknowledged in the file and closes it.
// Call it once Run and every Report have returned.
func (o *Outbox) Close() error {
	err := o.removeSent()
	o.logMu.Lock()
	defer o.logMu.Unlock()
	if cerr := o.file.close(); err == nil {
		err = cerr
	}
	o.lock.Close()
	return err
}

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
	// The mark is read at every quota check (twice per delivery) and
	// carries the latest folder changes: it is decoded once per version.
	o.markMu.Lock()
	defer o.markMu.Unlock()
	if kv.ModifyIndex != 0 && kv.ModifyIndex == o.markIndex && len(kv.Value) == o.markLen {
		return o.markSeq
	}
	var mark mailcluster.ReportMark
	seq := uint64(0)
	if json.Unmarshal(kv.Value, &mark) == nil && mark.Epoch == o.epoch {
		seq = mark.Seq
	}
	o.markIndex, o.markLen, o.markSeq = kv.ModifyIndex, len(kv.Value), seq
	return seq
}

// Report persists deltas (assigning their sequence numbers) and wakes the
// sender. It implements the mail service's Reporter. It returns once the
// deltas are on disk (the bbolt commit that holds them is synced).
func (o *Outbox) Report(deltas ...mailcluster.UsageDelta) error {
	req := &reportReq{deltas: deltas, done: make(chan error, 1)}
	o.enqueue(req)
	return <-req.done
}

// ReportAsync is Report without the wait: the deltas count as pending
// from the call on (Pending), and the channel receives the error of the
// commit once it ended (a failed commit stops counting them). A delivery
// reports this way before its last syncs, so that its commit overlaps
// them.
func (o *Outbox) ReportAsync(deltas ...mailcluster.UsageDelta) <-chan error {
	// The commit numbers its own copy: the caller may read its deltas
	// meanwhile.
	deltas = slices.Clone(deltas)
	req := &reportReq{deltas: deltas, held: true, done: make(chan error, 1)}
	o.mu.Lock()
	o.addHeld(deltas, 1)
	o.mu.Unlock()
	o.enqueue(req)
	return req.done
}

// FileSystem returns the device of the file system that holds the
// outbox's file; ok is false where it is not known.
func (o *Outbox) FileSystem() (id uint64, ok bool) { return o.dev, o.dev != 0 }

// WriteReport numbers deltas and writes them to the file without a sync,
// and returns once they are written: they count as pending from then on,
// and a sync of the file system (FileSystem) that begins after it
// returns makes them durable. The sender syncs the file itself before it
// sends them, so that no sequence number the primary applied is ever
// given again after a crash. A delivery onto the same file system, which
// syncs it whole after its links, reports this way instead of waiting
// for a commit of its own.
func (o *Outbox) WriteReport(deltas ...mailcluster.UsageDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	deltas = slices.Clone(deltas)
	o.logMu.Lock()
	defer o.logMu.Unlock()
	seq := o.lastSeq
	var recs []byte
	for i := range deltas {
		seq++
		deltas[i].Seq = seq
		recs = frameDelta(recs, deltas[i])
	}
	o.lastSeq = seq // given once, also when the write fails
	if err := o.compactFor(len(recs)); err != nil {
		return fmt.Errorf("cluster: outbox: %w", err)
	}
	o.commits.Add(1)
	if err := o.file.write(recs, len(deltas)); err != nil {
		return fmt.Errorf("cluster: outbox: %w", err)
	}
	o.queueCommitted(deltas, false)
	o.Kick()
	return nil
}

// queueCommitted makes deltas written to the file pending and queues
// them for the sender. Called with logMu held, so that the queue keeps
// the order of the sequence numbers. Held deltas (ReportAsync) stop
// being held in the same step: Pending never counts them twice nor
// misses them.
func (o *Outbox) queueCommitted(deltas []mailcluster.UsageDelta, held bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if held {
		o.addHeld(deltas, -1)
	}
	for _, d := range deltas {
		o.addPending(d)
		if d.Seq > o.sent {
			o.queue = append(o.queue, d)
		}
	}
}

// syncWritten syncs the file when deltas up to seq may not be on disk
// yet (written by WriteReport): the sender calls it before it sends them.
func (o *Outbox) syncWritten(seq uint64) error {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	if seq <= o.synced {
		return nil
	}
	var err error
	if o.file.broken {
		err = o.compactFor(0)
	} else {
		o.commits.Add(1)
		err = o.file.sync()
	}
	if err != nil {
		return fmt.Errorf("cluster: outbox: %w", err)
	}
	o.synced = o.lastSeq
	return nil
}

// addHeld adds (sign 1) or removes (sign -1) the usage of deltas to or
// from the held usage.
func (o *Outbox) addHeld(deltas []mailcluster.UsageDelta, sign int64) {
	for _, d := range deltas {
		if d.Bytes == 0 && d.Messages == 0 {
			continue
		}
		k := d.Domain + "/" + d.Mailbox
		h := o.held[k]
		h.bytes += sign * d.Bytes
		h.messages += sign * d.Messages
		if h.bytes == 0 && h.messages == 0 {
			delete(o.held, k)
		} else {
			o.held[k] = h
		}
	}
}

// enqueue queues a report for the next commit.
func (o *Outbox) enqueue(req *reportReq) {
	o.uncommitted.Add(int64(len(req.deltas)))
	o.commitMu.Lock()
	o.queued = append(o.queued, req)
	if !o.committing {
		o.committing = true
		go o.commitLoop()
	} else if o.want > 0 && len(o.queued) >= o.want {
		o.want = 0
		select {
		case o.gathered <- struct{}{}:
		default:
		}
	}
	o.commitMu.Unlock()
}

// reportReq is one Report waiting for its commit.
type reportReq struct {
	deltas []mailcluster.UsageDelta
	held   bool // ReportAsync: the deltas are held until the commit ends
	done   chan error
}

// maxGather bounds how long the commit loop waits for more reports
// before a commit, whatever a commit costs.
const maxGather = 5 * time.Millisecond

// commitLoop writes the reports queued since its last commit in one
// bbolt transaction (one fsync for all of them: group commit), until none
// waits. A report returns only after the commit that holds it.
//
// The first report after a quiet spell is committed at once. After a
// commit, the loop expects the reporters it just released and those
// already waiting to report again soon (deliveries streaming in): it
// gathers until that many wait, or for at most what a commit costs
// (maxGather at most), then commits what it has; it ends when nothing
// came in that time. So a report waits at most one commit's time longer
// than it would alone, and streaming reports share commits instead of
// alternating between a small commit and the next.
func (o *Outbox) commitLoop() {
	expect := 0
	for {
		o.commitMu.Lock()
		if len(o.queued) < expect {
			o.want = expect
			o.commitMu.Unlock()
			t := time.NewTimer(o.gatherWindow())
			select {
			case <-o.gathered:
			case <-t.C:
			}
			t.Stop()
			o.commitMu.Lock()
			o.want = 0
			select {
			case <-o.gathered:
			default:
			}
		}
		batch := o.queued
		o.queued = nil
		if len(batch) == 0 {
			o.committing = false
			o.commitMu.Unlock()
			return
		}
		o.commitMu.Unlock()
		start := time.Now()
		sent, err := o.commit(batch)
		o.noteCommit(time.Since(start))
		if err != nil {
			err = fmt.Errorf("cluster: outbox: %w", err)
			o.mu.Lock()
			for _, r := range batch {
				if r.held {
					o.addHeld(r.deltas, -1)
				}
			}
			o.mu.Unlock()
		} else {
			// commit queued the deltas (held ones became pending).
			o.mu.Lock()
			o.removed = max(o.removed, sent)
			o.mu.Unlock()
			select {
			case o.kick <- struct{}{}:
			default:
			}
		}
		o.commitMu.Lock()
		expect = len(batch) + len(o.queued)
		o.commitMu.Unlock()
		for _, r := range batch {
			o.uncommitted.Add(-int64(len(r.deltas)))
			r.done <- err
		}
	}
}

// commit numbers the deltas of batch and appends them to the file, with
// the primary's acknowledgement when it moved, in one write and one
// fdatasync. It returns the acknowledgement it recorded. The file is
// written anew first when its end is unknown (a failed append) or when
// its space is used up and most of its deltas were acknowledged.
func (o *Outbox) commit(batch []*reportReq) (uint64, error) {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	o.mu.Lock()
	sent := o.sent
	o.mu.Unlock()
	seq := o.lastSeq
	var recs []byte
	n := 0
	for _, r := range batch {
		for i := range r.deltas {
			seq++
			r.deltas[i].Seq = seq
			recs = frameDelta(recs, r.deltas[i])
			n++
		}
	}
	// A sequence number is given once, also when its commit fails: a
	// failed append may yet reach the disk.
	o.lastSeq = seq
	if err := o.compactFor(len(recs)); err != nil {
		return 0, err
	}
	if sent > o.removed {
		recs = frameAck(recs, sent)
	}
	o.commits.Add(1)
	if err := o.file.append(recs, n); err != nil {
		return 0, err
	}
	o.synced = seq
	for _, r := range batch {
		o.queueCommitted(r.deltas, r.held)
	}
	return sent, nil
}

// compactFor writes the file anew, holding only the deltas the primary
// has not acknowledged, when its end is unknown or when n more bytes do
// not fit and fewer than half its deltas wait. Called with logMu held.
func (o *Outbox) compactFor(n int) error {
	l := o.file
	o.mu.Lock()
	// The sender's queue holds only what was not acknowledged.
	if !l.broken && (l.fits(n) || 2*len(o.queue) > l.records) {
		o.mu.Unlock()
		return nil
	}
	st := logState{logHeader: logHeader{Epoch: o.epoch, Seq: o.lastSeq, Ack: o.sent}, deltas: slices.Clone(o.queue)}
	o.mu.Unlock()
	nl, err := writeLog(o.path, st)
	if err != nil {
		return err
	}
	l.close()
	o.file = nl
	// The new file holds every delta not acknowledged; numbers given
	// for deltas the caller is about to write are not on disk yet.
	o.synced = st.Ack
	if len(st.deltas) > 0 {
		o.synced = max(o.synced, st.deltas[len(st.deltas)-1].Seq)
	}
	o.mu.Lock()
	o.removed = max(o.removed, st.Ack)
	o.mu.Unlock()
	return nil
}

// removeSent records in the file what the primary acknowledged that the
// file does not show yet (one append; none when there is nothing new).
func (o *Outbox) removeSent() error {
	o.logMu.Lock()
	defer o.logMu.Unlock()
	o.mu.Lock()
	sent, removed := o.sent, o.removed
	o.mu.Unlock()
	if sent <= removed {
		return nil
	}
	var err error
	if o.file.broken {
		err = o.compactFor(0) // the new file records the acknowledgement
	} else {
		o.commits.Add(1)
		err = o.file.append(frameAck(nil, sent), 0)
	}
	if err != nil {
		return fmt.Errorf("cluster: outbox: %w", err)
	}
	o.mu.Lock()
	o.removed = max(o.removed, sent)
	o.mu.Unlock()
	return nil
}

// noteCommit folds the duration of a commit into the running estimate of
// what one costs.
func (o *Outbox) noteCommit(d time.Duration) {
	prev := time.Duration(o.commitCost.Load())
	if prev == 0 {
		prev = d
	}
	o.commitCost.Store(int64(prev + (d-prev)/8))
}

// gatherWindow is how long the commit loop may wait for more reports:
// what a commit costs, at most maxGather.
func (o *Outbox) gatherWindow() time.Duration {
	return min(time.Duration(o.commitCost.Load()), maxGather)
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
	h := o.held[k]
	return bytes + h.bytes, messages + h.messages
}

// Queued returns how many deltas wait to be sent, those still waiting
// for their commit included.
func (o *Outbox) Queued() int {
	// Read before the queue: a batch committed in between is counted
	// twice rather than not at all.
	n := int(o.uncommitted.Load())
	o.mu.Lock()
	defer o.mu.Unlock()
	return n + len(o.queue)
}

// After a send the sender pauses before the next one, so that each send
// (a transaction on the primary) carries many deltas: at a few
// milliseconds per transaction, sending as fast as the primary applies
// would cost one transaction (and, in a standalone node, one bbolt commit
// with its syncs) per two or three deliveries. While changes come now and
// then (a message whose arrival IMAP clients on other nodes wait to see)
// the pause is twice what the send took, at most quickPace. Once reports
// stream in (the deltas of a send came at a rate that fills a send of
// streamDeltas within minPace) it is at least minPace and at most
// maxPace. A full send (MaxReportDeltas) is followed by the next one at
// once, so the pause never limits how fast the queue drains.
const (
	streamDeltas = 8
	quickPace    = 10 * time.Millisecond
	minPace      = 20 * time.Millisecond
	maxPace      = 50 * time.Millisecond
)

// pace is how long the sender pauses after a send of n deltas that took
// took; window is the time since the start of the send before it (0 for
// the first send), idle time included, so that reports that each find
// the sender idle but come often still count as streaming.
func pace(n int, took, window time.Duration) time.Duration {
	streaming := window > 0 && time.Duration(n)*minPace >= streamDeltas*window
	switch {
	case n >= mailcluster.MaxReportDeltas:
		return 0
	case !streaming:
		return min(2*took, quickPace)
	default:
		return min(max(2*took, minPace), maxPace)
	}
}

// removeIdle is how long the sender waits, idle, before it removes what
// the primary acknowledged from the file itself (a commit of reports
// removes it earlier).
const removeIdle = time.Second

// Run sends queued deltas until ctx ends. Kick wakes it early. A report
// arriving while the sender is idle is sent at once; while reports stream
// in, each send waits after the previous one (see pace), so that the
// primary applies many deltas per transaction rather than one report's.
func (o *Outbox) Run(ctx context.Context) {
	backoff := 20 * time.Millisecond
	var prev time.Time // the start of the last send
	for {
		start := time.Now()
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
			var window time.Duration
			if !prev.IsZero() {
				window = start.Sub(prev)
			}
			prev = start
			p := pace(sent, time.Since(start), window)
			if o.paced != nil {
				o.paced(sent, p)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(p):
			}
			continue
		}
		idle := 5 * time.Second
		o.mu.Lock()
		unremoved := o.sent > o.removed
		o.mu.Unlock()
		if unremoved {
			idle = removeIdle
		}
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		case <-time.After(idle):
			if err := o.removeSent(); err != nil {
				o.log.Warn("cannot remove the changes the primary applied from the outbox", "err", err)
			}
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

// sendBatch sends the oldest deltas not sent yet (up to
// MaxReportDeltas). Once the primary applied them they are no longer
// pending; they leave the file with the next commit (see Outbox.sent).
func (o *Outbox) sendBatch(ctx context.Context) (int, error) {
	o.mu.Lock()
	batch := slices.Clone(o.queue[:min(len(o.queue), mailcluster.MaxReportDeltas)])
	o.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	if err := o.syncWritten(batch[len(batch)-1].Seq); err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := o.send(sctx, mailcluster.UsageReport{Node: o.node, Epoch: o.epoch, Deltas: coalesce(batch)})
	cancel()
	if err != nil {
		return 0, err
	}
	last := batch[len(batch)-1].Seq
	o.mu.Lock()
	o.sent = max(o.sent, last)
	i := 0
	for i < len(o.queue) && o.queue[i].Seq <= o.sent {
		i++
	}
	o.queue = o.queue[i:]
	if len(o.queue) == 0 {
		o.queue = nil // the acknowledged deltas' array can go
	}
	if o.Store == nil {
		keys := map[string]bool{}
		for _, d := range batch {
			keys[d.Domain+"/"+d.Mailbox] = true
		}
		o.dropPending(keys, last)
	}
	o.mu.Unlock()
	return len(batch), nil
}
