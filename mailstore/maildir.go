package mailstore

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailcluster"
)

// Maildir is one mailbox directory (tmp, new, cur) as described at
// https://cr.yp.to/proto/maildir.html. Messages are written to tmp, synced,
// and renamed into new, and the directory is synced, before a delivery is
// acknowledged.
type Maildir string

var deliveryCounter atomic.Uint64

// Init creates tmp, new and cur.
func (m Maildir) Init() error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(string(m), sub), 0o750); err != nil {
			return fmt.Errorf("mailstore: maildir %s: %w", m, err)
		}
	}
	return nil
}

// uniqueName returns a Maildir unique name carrying the size (",S=").
func uniqueName(size int64) string {
	now := time.Now()
	host := strings.NewReplacer("/", "_", ":", "_", ",", "_").Replace(hostname)
	return fmt.Sprintf("%d.M%06dP%dQ%dR%s.%s,S=%d", now.Unix(), now.Nanosecond()/1000, ownPID,
		deliveryCounter.Add(1), strings.ToLower(rand.Text()[:8]), host, size)
}

var reMessageID = regexp.MustCompile(`^[0-9]+\.[A-Za-z0-9._-]+,S=[0-9]+$`)

// ValidMessageID reports whether id has the shape of a message id made by
// this package (and so cannot name a path outside the mailbox).
func ValidMessageID(id string) bool {
	return len(id) < 256 && reMessageID.MatchString(id) && !strings.Contains(id, "..")
}

// messageSize reads the size from a unique name.
func messageSize(id string) int64 {
	i := strings.LastIndex(id, ",S=")
	if i < 0 {
		return -1
	}
	end := strings.IndexAny(id[i+3:], ",:")
	if end < 0 {
		end = len(id) - i - 3
	}
	n, err := strconv.ParseInt(id[i+3:i+3+end], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// find returns the path of a message in new or cur.
func (m Maildir) find(id string) (string, error) {
	if !ValidMessageID(id) {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Message id %q is not valid.", id)
	}
	p := filepath.Join(string(m), "new", id)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(string(m), "cur", id+":2,*"))
	if len(matches) > 0 {
		return matches[0], nil
	}
	if _, err := os.Stat(filepath.Join(string(m), "cur", id)); err == nil {
		return filepath.Join(string(m), "cur", id), nil
	}
	return "", mailcluster.Errorf(mailcluster.ENOTFOUND, "Message %s does not exist.", id)
}

// entry is a message file of new or cur.
type entry struct {
	id   string
	path string
	size int64
	mod  time.Time
}

// entries lists the messages of new and cur, by id.
func (m Maildir) entries() ([]entry, error) {
	var out []entry
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(string(m), sub)
		des, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mailstore: read %s: %w", dir, err)
		}
		for _, de := range des {
			if !de.Type().IsRegular() || strings.HasPrefix(de.Name(), ".") {
				continue
			}
			id, _, _ := strings.Cut(de.Name(), ":")
			e := entry{id: id, path: filepath.Join(dir, de.Name()), size: messageSize(id)}
			if info, err := de.Info(); err == nil {
				e.mod = info.ModTime()
				if e.size < 0 {
					e.size = info.Size()
				}
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// Count returns the bytes and messages stored (new and cur) in the
// maildir and its Maildir++ folders.
func (m Maildir) Count() (bytes, messages int64, err error) {
	dirs := []Maildir{m}
	for _, name := range folderDirs(string(m)) {
		dirs = append(dirs, Maildir(filepath.Join(string(m), name)))
	}
	for _, d := range dirs {
		es, eerr := d.entries()
		for _, e := range es {
			bytes += e.size
			messages++
		}
		if eerr != nil && err == nil {
			err = eerr
		}
	}
	return bytes, messages, err
}

// summary reads the headers of a message file for a listing.
func summary(e entry) mailcluster.Message {
	msg := mailcluster.Message{ID: e.id, Size: e.size, Received: e.mod.UTC()}
	if sec, err := strconv.ParseInt(strings.SplitN(e.id, ".", 2)[0], 10, 64); err == nil {
		msg.Received = time.Unix(sec, 0).UTC()
	}
	f, err := os.Open(e.path)
	if err != nil {
		return msg
	}
	defer f.Close()
	m, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(f, 256<<10)))
	if err != nil {
		return msg
	}
	dec := new(mime.WordDecoder)
	for _, h := range []struct {
		name string
		dst  *string
	}{{"From", &msg.From}, {"Subject", &msg.Subject}} {
		v := m.Header.Get(h.name)
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		if len(v) > 998 {
			v = v[:998]
		}
		*h.dst = v
	}
	return msg
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error { return SyncDir(dir) }
