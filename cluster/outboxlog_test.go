package cluster_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailcluster"
	"mailcluster/cluster"
)

// recorder is a primary that records what it is sent and acknowledges
// it, or refuses everything while down is set.
type recorder struct {
	mu     sync.Mutex
	down   bool
	epochs map[string]bool
	seqs   []uint64
	bytes  int64
}

func (r *recorder) send(_ context.Context, rep mailcluster.UsageReport) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return 0, errors.New("no primary")
	}
	if r.epochs == nil {
		r.epochs = map[string]bool{}
	}
	r.epochs[rep.Epoch] = true
	for _, d := range rep.Deltas {
		r.seqs = append(r.seqs, d.Seq)
		r.bytes += d.Bytes
	}
	return 1, nil
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// drain lets the primary acknowledge and runs ob until it has sent
// everything.
func (r *recorder) drain(t *testing.T, ob *cluster.Outbox) {
	r.setDown(false)
	stop := runOutbox(t, ob)
	defer stop()
	waitFor(t, func() bool { return ob.Queued() == 0 })
}

func (r *recorder) sent() ([]uint64, int64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs), r.bytes, len(r.epochs)
}

func mustOpenOutbox(t *testing.T, path string, send cluster.SendFunc, log *slog.Logger) *cluster.Outbox {
	t.Helper()
	ob, err := cluster.OpenOutbox(path, "n1", send, log)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// Deltas survive any number of restarts, clean or not, and a sequence
// number is never given twice: the primary, which applies each number
// once, would take a new delta for a repeat and drop it.
func TestOutboxLogKeepsDeltasAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	rec := &recorder{down: true}
	ob := mustOpenOutbox(t, path, rec.send, discard())
	for i := range 5 {
		if err := ob.Report(delta(int64(i + 1))); err != nil {
			t.Fatal(err)
		}
	}
	ob.Close()
	ob = mustOpenOutbox(t, path, rec.send, discard())
	if err := ob.Report(delta(6), delta(7)); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CrashOutbox(ob); err != nil {
		t.Fatal(err)
	}
	for range 2 { // opened twice: the file written at an open reads back whole
		ob = mustOpenOutbox(t, path, rec.send, discard())
		if q := ob.Queued(); q != 7 {
			t.Fatalf("queued after restarts = %d, want 7", q)
		}
		if b, m := ob.Pending("example.com", "alice"); b != 28 || m != 7 {
			t.Fatalf("pending = %d bytes, %d messages; want 28, 7", b, m)
		}
		ob.Close()
	}
	ob = mustOpenOutbox(t, path, rec.send, discard())
	defer ob.Close()
	if err := ob.Report(delta(8)); err != nil {
		t.Fatal(err)
	}
	rec.drain(t, ob)
	seqs, bytes, epochs := rec.sent()
	if len(seqs) != 8 || bytes != 36 || epochs != 1 {
		t.Fatalf("sent seqs %v (%d bytes) in %d epochs; want 8 deltas of 36 bytes in one epoch", seqs, bytes, epochs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence numbers %v do not increase", seqs)
		}
	}
}

// A commit cut short by a crash (its records in part on disk) was never
// acknowledged to its reporter: it is left out at the next open, with a
// warning, and its remains are gone from the file written then, so that
// the deltas given its numbers again are not confused with them later.
func TestOutboxLogTornCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	rec := &recorder{down: true}
	ob := mustOpenOutbox(t, path, rec.send, discard())
	for i := range 3 {
		if err := ob.Report(delta(int64(10 * (i + 1)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.CrashOutbox(ob); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The end of the records: the first zero length after them.
	end := lastRecordEnd(t, data)
	// A cut commit: a whole record with a wrong checksum, then another
	// whole and valid one (sectors written out of order).
	d4, _ := json.Marshal(mailcluster.UsageDelta{Seq: 4, Domain: "example.com", Mailbox: "alice", Bytes: 1000, Messages: 1})
	torn := record('D', d4)
	torn[len(torn)-1] ^= 0xff
	d5, _ := json.Marshal(mailcluster.UsageDelta{Seq: 5, Domain: "example.com", Mailbox: "alice", Bytes: 2000, Messages: 1})
	torn = append(torn, record('D', d5)...)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(torn, int64(end)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var logged bytes.Buffer
	ob = mustOpenOutbox(t, path, rec.send, slog.New(slog.NewTextHandler(&logged, nil)))
	if q := ob.Queued(); q != 3 {
		t.Fatalf("queued = %d, want the 3 whole deltas", q)
	}
	if b, _ := ob.Pending("example.com", "alice"); b != 60 {
		t.Fatalf("pending = %d bytes, want 60 (the cut commit left out)", b)
	}
	if !strings.Contains(logged.String(), "cut short") {
		t.Fatalf("no warning about the cut commit: %q", logged.String())
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rest := data[lastRecordEnd(t, data):]; bytes.Count(rest, []byte{0}) != len(rest) {
		t.Fatal("the cut commit's remains are still in the file after the open")
	}
	if err := ob.Report(delta(1)); err != nil {
		t.Fatal(err)
	}
	ob.Close()
	ob = mustOpenOutbox(t, path, rec.send, discard())
	defer ob.Close()
	if b, m := ob.Pending("example.com", "alice"); b != 61 || m != 4 {
		t.Fatalf("pending after another restart = %d, %d; want 61, 4 (nothing of the cut commit)", b, m)
	}
	rec.drain(t, ob)
	if seqs, bytes, _ := rec.sent(); !slices.Equal(seqs, []uint64{1, 2, 3, 4}) || bytes != 61 {
		t.Fatalf("sent %v, %d bytes; want 1 to 4, 61 bytes", seqs, bytes)
	}
}

// record frames a record as the outbox log does.
func record(kind byte, body []byte) []byte {
	payload := append([]byte{kind}, body...)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	out = binary.LittleEndian.AppendUint32(out, cluster.Crc32c(payload))
	return append(out, payload...)
}

// lastRecordEnd walks the records of an outbox log to the first zero
// length.
func lastRecordEnd(t *testing.T, data []byte) int {
	t.Helper()
	off := bytes.IndexByte(data, '\n') + 1
	for off+8 <= len(data) {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 {
			return off
		}
		off += 8 + n
	}
	t.Fatal("no end in the outbox log")
	return 0
}

// An append that fails (a failing disk) fails its reports, which are not
// sent nor pending; the next commit writes the file anew and succeeds,
// and the file then holds exactly the deltas acknowledged to reporters.
func TestOutboxLogFailedAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	rec := &recorder{down: true}
	ob := mustOpenOutbox(t, path, rec.send, discard())
	if err := ob.Report(delta(1)); err != nil {
		t.Fatal(err)
	}
	cluster.BreakOutboxFile(ob)
	if err := ob.Report(delta(100)); err == nil {
		t.Fatal("a report whose append failed succeeded")
	}
	if b, _ := ob.Pending("example.com", "alice"); b != 1 {
		t.Fatalf("pending = %d bytes, want 1 (the failed report not counted)", b)
	}
	if err := ob.Report(delta(10)); err != nil {
		t.Fatalf("the commit after a failed one: %v", err)
	}
	if q := ob.Queued(); q != 2 {
		t.Fatalf("queued = %d, want 2", q)
	}
	if err := cluster.CrashOutbox(ob); err != nil {
		t.Fatal(err)
	}
	ob = mustOpenOutbox(t, path, rec.send, discard())
	defer ob.Close()
	if b, m := ob.Pending("example.com", "alice"); b != 11 || m != 2 {
		t.Fatalf("pending after a crash = %d, %d; want 11, 2", b, m)
	}
}

// While the primary acknowledges, the file stays small however many
// deltas pass through it (it is written anew once its space is used);
// while it does not, the file grows and keeps them all.
func TestOutboxLogCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	rec := &recorder{}
	ob := mustOpenOutbox(t, path, rec.send, discard())
	stop := runOutbox(t, ob)
	const n = 6000 // about 1 MiB of records
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if err := ob.Report(delta(1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return ob.Queued() == 0 })
	stop()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 512<<10 {
		t.Fatalf("the file is %d bytes after %d acknowledged deltas, want it written anew (at most 512 KiB)", fi.Size(), n)
	}
	if _, bytes, _ := rec.sent(); bytes != n {
		t.Fatalf("sent %d bytes, want %d", bytes, n)
	}

	rec.setDown(true)
	for range n {
		if err := ob.Report(delta(2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.CrashOutbox(ob); err != nil {
		t.Fatal(err)
	}
	ob = mustOpenOutbox(t, path, rec.send, discard())
	defer ob.Close()
	if b, m := ob.Pending("example.com", "alice"); b != 2*n || m != n {
		t.Fatalf("pending = %d, %d; want %d, %d", b, m, 2*n, n)
	}
}

// Opening an outbox: one writer at a time; a file being written anew
// when the node stopped is dropped (the file it was to replace is whole); the bbolt file of
// earlier versions is carried over with its epoch and sequence; a file
// that is neither is refused and left as it is.
func TestOutboxLogOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	rec := &recorder{down: true}
	ob := mustOpenOutbox(t, path, rec.send, discard())
	if err := ob.Report(delta(3)); err != nil {
		t.Fatal(err)
	}
	ob.Close()
	if err := os.WriteFile(path+".new", []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	ob = mustOpenOutbox(t, path, rec.send, discard())
	if q := ob.Queued(); q != 1 {
		t.Fatalf("queued = %d, want 1", q)
	}
	// One writer at a time: a second open while it is open is refused.
	if ob2, err := cluster.OpenOutbox(path, "n1", rec.send, discard()); err == nil {
		ob2.Close()
		t.Fatal("the outbox was opened twice at once")
	}
	ob.Close()
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the incomplete file is still there: %v", err)
	}

	old := filepath.Join(dir, "old.db")
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		eb, _ := tx.CreateBucket([]byte("epoch"))
		eb.Put([]byte("epoch"), []byte("old-epoch"))
		b, _ := tx.CreateBucket([]byte("usage"))
		b.SetSequence(9) // 7 to 9 given; 7 acknowledged and removed
		for _, seq := range []uint64{8, 9} {
			v, _ := json.Marshal(mailcluster.UsageDelta{Seq: seq, Domain: "example.com", Mailbox: "alice", Bytes: 5, Messages: 1, At: time.Now()})
			b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	rec2 := &recorder{}
	var epoch string
	send := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		epoch = r.Epoch
		return rec2.send(ctx, r)
	}
	ob = mustOpenOutbox(t, old, send, discard())
	if b, m := ob.Pending("example.com", "alice"); b != 10 || m != 2 {
		t.Fatalf("pending from the earlier file = %d, %d; want 10, 2", b, m)
	}
	if err := ob.Report(delta(1)); err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	waitFor(t, func() bool { return ob.Queued() == 0 })
	stop()
	ob.Close()
	if seqs, _, _ := rec2.sent(); !slices.Equal(seqs, []uint64{8, 9, 10}) || epoch != "old-epoch" {
		t.Fatalf("sent %v in epoch %q; want 8, 9, 10 in old-epoch", seqs, epoch)
	}

	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte("not an outbox"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.OpenOutbox(bad, "n1", rec.send, discard()); err == nil {
		t.Fatal("a file that is no outbox was opened")
	}
	if b, _ := os.ReadFile(bad); string(b) != "not an outbox" {
		t.Fatalf("the refused file was changed: %q", b)
	}
}
