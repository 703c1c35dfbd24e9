package mailstore

import "sync"

// Hub carries "this folder changed" from the writers of a node (SMTP
// delivery, IMAP sessions, the REST API's deletions) to its readers (IMAP
// sessions with the folder selected), so that a reader looks again at
// once instead of at its next rescan. A folder is named by its directory
// as Folder.Dir returns it (the mailbox path resolved below the mailbox
// roots), the same on every node of the shared path; a change learned
// from another node (through the primary: Store.PublishChange) is
// published the same way. A notice carries no content: readers read the
// folder again (Folder.Sync). Implementations are safe for concurrent use
// and never block a publisher.
type Hub interface {
	// Publish tells the subscribers of folder that it changed.
	Publish(folder string)
	// PublishAll tells every subscriber that its folder may have changed
	// (changes were missed).
	PublishAll()
	// Subscribe returns a channel that receives a value after every
	// Publish of folder (several notices may merge into one), and the
	// function that ends the subscription.
	Subscribe(folder string) (notices <-chan struct{}, cancel func())
}

// LocalHub is the Hub of one process.
type LocalHub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

var _ Hub = (*LocalHub)(nil)

// NewHub returns an empty LocalHub.
func NewHub() *LocalHub {
	return &LocalHub{subs: map[string]map[chan struct{}]struct{}{}}
}

// Publish implements Hub.
func (h *LocalHub) Publish(folder string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[folder] {
		select {
		case ch <- struct{}{}:
		default: // a notice is pending already
		}
	}
}

// PublishAll implements Hub.
func (h *LocalHub) PublishAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.subs {
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// Subscribe implements Hub.
func (h *LocalHub) Subscribe(folder string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[folder] == nil {
		h.subs[folder] = map[chan struct{}]struct{}{}
	}
	h.subs[folder][ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(h.subs[folder], ch)
			if len(h.subs[folder]) == 0 {
				delete(h.subs, folder)
			}
		})
	}
}

// nopHub is the Hub of a Store without one.
type nopHub struct{}

func (nopHub) Publish(string) {}
func (nopHub) PublishAll()    {}
func (nopHub) Subscribe(string) (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}
