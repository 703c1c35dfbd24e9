package mailqueue

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"mailcluster/mailstore"

	"mailcluster"
)

// The spool's layout under the queue directory (on the shared path):
//
//	nodes/<node>/msgs/<id>/message        the message as it will be sent
//	nodes/<node>/msgs/<id>/envelope.json  sender, recipients and their states
//	nodes/<node>/tmp/<id>/                a message being written (not yet accepted)
//	nodes/<node>/retry/<id>               "retry now" asked by an administrator
//
// A message directory appears in msgs/ by one rename, after both files
// and the directory are synced, so a message is either wholly queued or
// not at all; a takeover moves it to another node's msgs/ by one rename.
const (
	dirNodes    = "nodes"
	dirMsgs     = "msgs"
	dirTmp      = "tmp"
	dirRetry    = "retry"
	fileMessage = "message"
	fileEnv     = "envelope.json"
)

// ErrNotFound is returned for a queue id that is not (or no longer) queued.
var ErrNotFound = fmt.Errorf("mailqueue: %w", mailcluster.ErrQueueNotFound)

// Envelope is what the queue keeps about a message beside its content.
type Envelope struct {
	ID          string                        `json:"id"`
	From        string                        `json:"from"`
	Rcpts       []mailcluster.QueuedRecipient `json:"rcpts"`
	Created     time.Time                     `json:"created"`
	NextAttempt time.Time                     `json:"next"`
	Attempts    int                           `json:"attempts"`
	Warned      bool                          `json:"warned,omitempty"`
	Size        int64                         `json:"size"`
	// Prefix is sent before the message (a DKIM-Signature field).
	Prefix []byte `json:"prefix,omitempty"`
	// Subject is kept for the operators' listing (cleaned, bounded).
	Subject string `json:"subject,omitempty"`
	// Origin is the node that accepted the message.
	Origin string `json:"origin,omitempty"`
}

// pending returns the recipients not yet delivered or failed.
func (e *Envelope) pending() []string {
	var out []string
	for _, r := range e.Rcpts {
		if r.State == mailcluster.RcptPending {
			out = append(out, r.Address)
		}
	}
	return out
}

// Spool is the queue directory on the shared path.
type Spool struct {
	Dir string // the queue directory, absolute
	// Syncs, when set, shares the syncs of the msgs/ directory between
	// concurrent writes (group commit); nil syncs it for each.
	Syncs *mailstore.DirSyncs
}

// syncShared syncs a directory every message of a node shares, with
// concurrent callers when the Spool has Syncs.
func (s Spool) syncShared(dir string) error {
	if s.Syncs == nil {
		return mailstore.SyncDir(dir)
	}
	return s.Syncs.Sync(dir, mailstore.SyncDir)
}

// nodeDir is the directory of a node's queue. A name that is not a
// node name ("..", "a/b") never names a directory outside nodes/: it
// becomes a name no node has.
func (s Spool) nodeDir(node string) string {
	if !mailcluster.ValidNodeName(node) {
		node = "_invalid"
	}
	return filepath.Join(s.Dir, dirNodes, node)
}

func (s Spool) msgDir(node, id string) string {
	return filepath.Join(s.nodeDir(node), dirMsgs, id)
}

// newID returns a queue id: the time in nanoseconds (so that ids sort by
// age) and 48 random bits.
func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x-%s", uint64(now.UnixNano()), hex.EncodeToString(b[:]))
}

// Init creates the node's directories.
func (s Spool) Init(node string) error {
	for _, d := range []string{dirMsgs, dirTmp, dirRetry} {
		if err := os.MkdirAll(filepath.Join(s.nodeDir(node), d), 0o750); err != nil {
			return fmt.Errorf("mailqueue: %w", err)
		}
	}
	return nil
}

// Write queues a message for node: header, then body (at most maxBody
// bytes: more is mailstore.ErrTooLarge), with env's sender and recipients.
// sign, when not nil, is given the written message and returns the
// header fields to send before it (DKIM). The message is durable when
// Write returns nil.
func (s Spool) Write(node string, env *Envelope, header []byte, body io.Reader, maxBody int64, sign func(msg io.Reader) ([]byte, error)) error {
	now := time.Now()
	if env.ID == "" {
		env.ID = newID(now)
	}
	if env.Created.IsZero() {
		env.Created = now
	}
	if env.NextAttempt.IsZero() {
		env.NextAttempt = now
	}
	tmp := filepath.Join(s.nodeDir(node), dirTmp, env.ID)
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	f, err := os.OpenFile(filepath.Join(tmp, fileMessage), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	_, err = w.Write(header)
	var n int64
	if err == nil {
		n, err = io.Copy(w, io.LimitReader(body, maxBody+1))
		if err == nil && n > maxBody {
			err = mailstore.ErrTooLarge
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		f.Close()
		return err
	}
	// The message's sync runs while its envelope is made and synced: two
	// fsyncs at once rather than one after the other. Both end before the
	// directory is synced and renamed into the queue.
	synced := make(chan error, 1)
	go func() {
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		synced <- err
	}()
	waited := false
	wait := func() error {
		if waited {
			return nil
		}
		waited = true
		return <-synced
	}
	defer wait() // on every early return, before the deferred removal of tmp
	env.Size = int64(len(header)) + n
	if env.Subject == "" {
		env.Subject = subjectOf(header) // submitted mail: the header was read already
	}
	if env.Subject == "" {
		if mf, err := os.Open(filepath.Join(tmp, fileMessage)); err == nil {
			env.Subject = subjectOf(headerOf(mf))
			mf.Close()
		}
	}
	if sign != nil {
		mf, err := os.Open(filepath.Join(tmp, fileMessage))
		if err != nil {
			return fmt.Errorf("mailqueue: %w", err)
		}
		prefix, err := sign(bufio.NewReaderSize(mf, 64<<10))
		mf.Close()
		if err != nil {
			return fmt.Errorf("mailqueue: sign: %w", err)
		}
		env.Prefix = prefix
	}
	if err := createEnvelope(tmp, env); err != nil {
		return err
	}
	if err := wait(); err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	if err := mailstore.SyncDir(tmp); err != nil {
		return err
	}
	dst := s.msgDir(node, env.ID)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	ok = true
	if err := s.syncShared(filepath.Dir(dst)); err != nil {
		// The message may not survive a crash: take it back, so that the
		// client is not told it was accepted.
		os.RemoveAll(dst)
		return err
	}
	return nil
}

// createEnvelope writes the first envelope of a message being written
// (its directory is not in the queue yet, so no rename is needed).
func createEnvelope(dir string, env *Envelope) error {
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, fileEnv), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	return nil
}

// writeEnvelope replaces dir's envelope: written to a temporary file,
// synced, renamed.
func writeEnvelope(dir string, env *Envelope) error {
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	f, err := os.CreateTemp(dir, ".env-*")
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, fileEnv))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("mailqueue: %w", err)
	}
	return nil
}

// SaveEnvelope records env's new state for a message of node. A message
// taken away meanwhile (deleted, or handed to another node) gives
// ErrNotFound and is not recreated.
func (s Spool) SaveEnvelope(node string, env *Envelope) error {
	dir := s.msgDir(node, env.ID)
	if _, err := os.Stat(filepath.Join(dir, fileMessage)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("mailqueue: %w", err)
	}
	if err := writeEnvelope(dir, env); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	return nil
}

// Envelope reads the envelope of a message of node.
func (s Spool) Envelope(node, id string) (*Envelope, error) {
	if !mailcluster.ValidQueueID(id) {
		return nil, ErrNotFound
	}
	b, err := os.ReadFile(filepath.Join(s.msgDir(node, id), fileEnv))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("mailqueue: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.ID != id {
		return nil, fmt.Errorf("mailqueue: envelope of %s cannot be read", id)
	}
	return &env, nil
}

// Open opens the content of a message of node.
func (s Spool) Open(node, id string) (*os.File, error) {
	if !mailcluster.ValidQueueID(id) {
		return nil, ErrNotFound
	}
	f, err := os.Open(filepath.Join(s.msgDir(node, id), fileMessage))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// Remove removes a message of node from the queue (delivered, bounced or
// deleted). A message already gone is not an error.
func (s Spool) Remove(node, id string) error {
	if !mailcluster.ValidQueueID(id) {
		return ErrNotFound
	}
	dir := s.msgDir(node, id)
	// Rename first, so that the message leaves msgs/ at once and a crash
	// halfway through the removal leaves nothing that looks queued.
	gone := filepath.Join(s.nodeDir(node), dirTmp, id+".gone")
	if err := os.Rename(dir, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("mailqueue: %w", err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	return nil
}

// IDs lists the ids of node's messages, oldest first.
func (s Spool) IDs(node string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.nodeDir(node), dirMsgs))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("mailqueue: %w", err)
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		if mailcluster.ValidQueueID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Nodes lists the nodes that have a queue directory.
func (s Spool) Nodes() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, dirNodes))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("mailqueue: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && mailcluster.ValidNodeName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Move hands a message from one node to another by one rename; the new
// owner finds it at its next scan. It returns ErrNotFound when the
// message is no longer in from's queue.
func (s Spool) Move(from, to, id string) error {
	if !mailcluster.ValidQueueID(id) {
		return ErrNotFound
	}
	if err := s.Init(to); err != nil {
		return err
	}
	err := os.Rename(s.msgDir(from, id), s.msgDir(to, id))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	_ = mailstore.SyncDir(filepath.Join(s.nodeDir(to), dirMsgs))
	_ = mailstore.SyncDir(filepath.Join(s.nodeDir(from), dirMsgs))
	return nil
}

// AskRetry marks a message of node for an attempt now; the owner's
// runner picks the mark up within a second.
func (s Spool) AskRetry(node, id string) error {
	if _, err := os.Stat(s.msgDir(node, id)); err != nil {
		return ErrNotFound
	}
	f, err := os.OpenFile(filepath.Join(s.nodeDir(node), dirRetry, id), os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("mailqueue: %w", err)
	}
	return f.Close()
}

// takeRetries returns and clears the retry marks of node.
func (s Spool) takeRetries(node string) []string {
	dir := filepath.Join(s.nodeDir(node), dirRetry)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
		if mailcluster.ValidQueueID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// cleanTmp removes what a crash left in node's tmp/ (never acknowledged).
func (s Spool) cleanTmp(node string, olderThan time.Duration) {
	dir := filepath.Join(s.nodeDir(node), dirTmp)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > olderThan {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// subjectOf returns the Subject of a header section, cleaned of control
// characters and cut to 200 bytes, for the operators' listing.
func subjectOf(header []byte) string {
	m, err := mail.ReadMessage(io.MultiReader(strings.NewReader(string(header)), strings.NewReader("\r\n")))
	if err != nil {
		return ""
	}
	s := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		s = d
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
