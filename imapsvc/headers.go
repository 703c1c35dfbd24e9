package imapsvc

import (
	"bufio"
	"container/list"
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"mailcluster/mailstore"
)

// DefaultHeaderCacheBytes is the memory a Server's header cache may hold
// when Config.HeaderCacheBytes is 0.
const DefaultHeaderCacheBytes = 64 << 20

// maxCachedHeader is the largest header kept parsed in the cache; a
// message with a larger one keeps only its envelope there (a SEARCH on
// its header fields reads the file).
const maxCachedHeader = 64 << 10

// headerCache keeps the parsed header and envelope of messages for the
// sessions of a node, so that FETCH ENVELOPE and SEARCH on header fields
// do not read message files again. A message is known by its folder and
// unique name (the file name without its flags): the content under that
// name never changes, and the name stays when the flags change. The
// entries are bounded by their estimated memory, least recently used
// out first.
type headerCache struct {
	limit int64

	mu      sync.Mutex
	used    int64
	lru     *list.List // of *headerEntry, most recent first
	entries map[string]*list.Element
}

// headerEntry is the cached header of one message.
type headerEntry struct {
	id   string // folder directory, NUL, unique name
	size int64  // the message's size: a different file under the name is not this one
	env  *imap.Envelope
	hdr  *textproto.Header // nil when the header is larger than maxCachedHeader
	cost int64
}

func newHeaderCache(limit int64) *headerCache {
	if limit <= 0 {
		limit = DefaultHeaderCacheBytes
	}
	return &headerCache{limit: limit, lru: list.New(), entries: map[string]*list.Element{}}
}

func cacheID(dir, key string) string { return dir + "\x00" + key }

// get returns a message's cached entry, or nil.
func (c *headerCache) get(dir string, m mailstore.Message) *headerEntry {
	id := cacheID(dir, m.Key)
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.entries[id]
	if el == nil {
		return nil
	}
	e := el.Value.(*headerEntry)
	if e.size != m.Size {
		c.removeLocked(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return e
}

// put records an entry, evicting the least recently used ones beyond the
// limit (an entry larger than the whole limit is not kept).
func (c *headerCache) put(e *headerEntry) {
	if e.cost > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.entries[e.id]; el != nil {
		c.removeLocked(el)
	}
	c.entries[e.id] = c.lru.PushFront(e)
	c.used += e.cost
	for c.used > c.limit {
		c.removeLocked(c.lru.Back())
	}
}

// drop forgets a message (expunged).
func (c *headerCache) drop(dir, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.entries[cacheID(dir, key)]; el != nil {
		c.removeLocked(el)
	}
}

func (c *headerCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*headerEntry)
	delete(c.entries, e.id)
	c.used -= e.cost
}

// stats returns the number of entries and their estimated memory.
func (c *headerCache) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.used
}

// load returns a message's entry from the cache, or reads the header of
// its file (only the header: up to the blank line) and caches it.
// Errors: ENOTFOUND (expunged), *LocalError.
func (c *headerCache) load(f *mailstore.Folder, m mailstore.Message) (*headerEntry, error) {
	if e := c.get(f.Dir(), m); e != nil {
		return e, nil
	}
	r, err := f.Open(m)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	e := parseHeaderEntry(io.LimitReader(r, max(m.Size, 0)+1<<20))
	e.id, e.size = cacheID(f.Dir(), m.Key), m.Size
	c.put(e)
	return e, nil
}

// parseHeaderEntry reads a message's header and builds its entry; a
// header that does not parse gives an empty envelope.
func parseHeaderEntry(r io.Reader) *headerEntry {
	cr := &countReader{r: r}
	br := bufio.NewReaderSize(cr, 4096)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return &headerEntry{env: &imap.Envelope{}, cost: 512}
	}
	e := &headerEntry{env: imapserver.ExtractEnvelope(h)}
	n := cr.n - int64(br.Buffered()) // the header's bytes
	if n <= maxCachedHeader {
		e.hdr = &h
		// The parsed fields keep their raw bytes and decoded strings.
		e.cost = 3 * n
	}
	e.cost += 512 + envelopeBytes(e.env)
	return e
}

// envelopeBytes estimates the memory of an envelope's strings.
func envelopeBytes(env *imap.Envelope) int64 {
	n := len(env.Subject) + len(env.MessageID) + 8*len(env.InReplyTo)
	for _, l := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		for _, a := range l {
			n += 64 + len(a.Name) + len(a.Mailbox) + len(a.Host)
		}
	}
	for _, s := range env.InReplyTo {
		n += len(s)
	}
	return int64(n)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
