package imapsvc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"

	"mailcluster/mailstore"
)

// registry holds the node's view of every selected folder, shared by the
// sessions that have it selected: one mailbox per folder directory.
type registry struct {
	hub     mailstore.Hub
	rescan  time.Duration
	log     *slog.Logger
	headers *headerCache // expunged messages leave it

	mu    sync.Mutex
	boxes map[string]*mailbox
}

func newRegistry(hub mailstore.Hub, rescan time.Duration, log *slog.Logger, headers *headerCache) *registry {
	return &registry{hub: hub, rescan: rescan, log: log, headers: headers, boxes: map[string]*mailbox{}}
}

// mailbox is a selected folder on this node: its messages in sequence
// order (the server's view: sequence number = index + 1) and the
// imapserver tracker that turns changes into each session's EXISTS,
// EXPUNGE and FETCH FLAGS. Changes come from sync, which compares a fresh
// read of the folder with the view; it runs on a Hub notice, before a
// session's answer when the view is older than the rescan interval, and
// every rescan interval while a session idles.
type mailbox struct {
	reg     *registry
	folder  *mailstore.Folder
	tracker *imapserver.MailboxTracker
	stop    chan struct{}
	cancel  func()
	refs    int // under reg.mu

	// opMu orders the changes of this node's sessions and the syncs, so
	// that a sync never applies a read older than a change it follows.
	opMu sync.Mutex

	mu       sync.Mutex // the view
	msgs     []mailstore.Message
	validity uint32
	next     uint32
	synced   time.Time
}

// open returns the node's mailbox of a folder, reading it the first time
// (fresh: read by this call). The caller releases it.
func (r *registry) open(ctx context.Context, f *mailstore.Folder) (mb *mailbox, fresh bool, err error) {
	r.mu.Lock()
	if mb := r.boxes[f.Dir()]; mb != nil {
		mb.refs++
		r.mu.Unlock()
		return mb, false, nil
	}
	r.mu.Unlock()
	snap, err := f.Sync(ctx)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb := r.boxes[f.Dir()]; mb != nil {
		mb.refs++
		return mb, false, nil
	}
	mb = &mailbox{reg: r, folder: f, tracker: imapserver.NewMailboxTracker(uint32(len(snap.Messages))), stop: make(chan struct{}),
		msgs: snap.Messages, validity: snap.UIDValidity, next: snap.UIDNext, synced: time.Now(), refs: 1}
	var notices <-chan struct{}
	if r.hub != nil {
		notices, mb.cancel = r.hub.Subscribe(f.Dir())
	}
	r.boxes[f.Dir()] = mb
	go mb.watch(notices)
	return mb, true, nil
}

// release gives a mailbox back; the last one stops watching it.
func (r *registry) release(mb *mailbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mb.refs--
	if mb.refs > 0 {
		return
	}
	if r.boxes[mb.folder.Dir()] != mb {
		return // stopped by close already
	}
	delete(r.boxes, mb.folder.Dir())
	if mb.cancel != nil {
		mb.cancel()
	}
	close(mb.stop)
}

// close stops watching every mailbox (the server is closed).
func (r *registry) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dir, mb := range r.boxes {
		if mb.cancel != nil {
			mb.cancel()
		}
		close(mb.stop)
		delete(r.boxes, dir)
	}
}

// watch syncs on every Hub notice until the mailbox is released.
func (mb *mailbox) watch(notices <-chan struct{}) {
	for {
		select {
		case <-mb.stop:
			return
		case <-notices:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := mb.sync(ctx); err != nil {
				mb.reg.log.Debug("imap: folder sync after a change", "folder", mb.folder.Dir(), "err", err)
			}
			cancel()
		}
	}
}

// sync reads the folder and queues its changes for every session.
func (mb *mailbox) sync(ctx context.Context) error {
	mb.opMu.Lock()
	defer mb.opMu.Unlock()
	return mb.syncLocked(ctx)
}

// syncUnless syncs unless fresh.
func (mb *mailbox) syncUnless(ctx context.Context, fresh bool) error {
	if fresh {
		return nil
	}
	return mb.sync(ctx)
}

// syncIfOld syncs when the view is older than the rescan interval.
func (mb *mailbox) syncIfOld(ctx context.Context) error {
	mb.mu.Lock()
	old := time.Since(mb.synced) >= mb.reg.rescan
	mb.mu.Unlock()
	if !old {
		return nil
	}
	return mb.sync(ctx)
}

// syncLocked is sync with opMu held.
func (mb *mailbox) syncLocked(ctx context.Context) error {
	snap, err := mb.folder.Sync(ctx)
	if err != nil {
		return err
	}
	mb.apply(snap)
	return nil
}

// apply compares a read of the folder with the view and queues the
// differences: EXPUNGE for messages gone (from the highest sequence
// number down, so that lower numbers stay valid), FETCH FLAGS for
// changed flags, EXISTS for new messages. A folder with a new
// UIDVALIDITY (deleted and created again) loses every message of the
// view and shows the new ones.
func (mb *mailbox) apply(snap *mailstore.Snapshot) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.synced = time.Now()
	var now []mailstore.Message // both in ascending UID order
	if snap.UIDValidity == mb.validity {
		now = snap.Messages
	}
	kept := make([]mailstore.Message, 0, len(mb.msgs))
	var gone []int // indexes in mb.msgs
	j := 0
	for i, m := range mb.msgs {
		for j < len(now) && now[j].UID < m.UID {
			j++ // below the view's last UID yet unknown to it: cannot be
		}
		if j < len(now) && now[j].UID == m.UID {
			kept = append(kept, now[j])
			j++
		} else {
			gone = append(gone, i)
		}
	}
	for k := len(gone) - 1; k >= 0; k-- {
		mb.tracker.QueueExpunge(uint32(gone[k] + 1))
		mb.reg.headers.drop(mb.folder.Dir(), mb.msgs[gone[k]].Key)
	}
	// The flags of the messages kept, numbered after the expunges.
	o := 0
	for i, n := range kept {
		for mb.msgs[o].UID != n.UID {
			o++
		}
		if n.Flags != mb.msgs[o].Flags {
			mb.tracker.QueueMessageFlags(uint32(i+1), imapUID(n.UID), imapFlags(n.Flags), nil)
		}
	}
	var top uint32
	if len(kept) > 0 {
		top = kept[len(kept)-1].UID
	}
	added := false
	for _, m := range snap.Messages {
		// UIDs only grow: a message the view lacks is above its last one.
		if m.UID > top {
			kept = append(kept, m)
			added = true
		}
	}
	mb.msgs, mb.validity, mb.next = kept, snap.UIDValidity, snap.UIDNext
	if added {
		mb.tracker.QueueNumMessages(uint32(len(kept)))
	}
}

// setFlags records flags this node's session set (already on disk) and
// tells the other sessions; the session answers for itself.
func (mb *mailbox) setFlags(flags map[uint32]string, source *imapserver.SessionTracker) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for i, m := range mb.msgs {
		if f, ok := flags[m.UID]; ok && f != m.Flags {
			mb.msgs[i].Flags = f
			mb.tracker.QueueMessageFlags(uint32(i+1), imapUID(m.UID), imapFlags(f), source)
		}
	}
}
