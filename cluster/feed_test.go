package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/schema"
)

// feedNode is one ConsulStore following the feed, as a node runs it.
type feedNode struct {
	t       *testing.T
	client  *api.Client
	cluster string
	path    string
	st      *cluster.ConsulStore
	session atomic.Value // string
	cancel  context.CancelFunc
	done    chan struct{}
	live    sync.RWMutex // held to replace st
	// pastResyncs counts the re-syncs of the node's earlier stores.
	pastResyncs uint64
	mu          sync.Mutex
	applied     []string // "epoch/seq" in the order applied
	dup         []string // entries applied twice or out of order
	events      *recordedEvents
	opts        func(*cluster.ConsulStore)
	before      func() // called before each transaction is sent
}

// recordedEvents is a ClusterLog that keeps what it is given.
type recordedEvents struct {
	mu sync.Mutex
	ev []mailcluster.ClusterEvent
}

func (r *recordedEvents) Record(e mailcluster.ClusterEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
}

func (r *recordedEvents) count(kind mailcluster.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev {
		if e.Event == kind {
			n++
		}
	}
	return n
}

func (r *recordedEvents) Events(int) ([]mailcluster.ClusterEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mailcluster.ClusterEvent(nil), r.ev...), nil
}

// openFeedNode opens a store at path and runs it until the test ends (or
// stop is called).
func openFeedNode(t *testing.T, client *api.Client, clusterName, path string, opts func(*cluster.ConsulStore)) *feedNode {
	t.Helper()
	n := &feedNode{t: t, client: client, cluster: clusterName, path: path, events: &recordedEvents{}, opts: opts}
	n.session.Store("")
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *feedNode) start() {
	n.t.Helper()
	log := discard()
	if os.Getenv("FEED_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st, err := cluster.OpenConsulStore(n.client, n.cluster, n.path, log)
	if err != nil {
		n.t.Fatal(err)
	}
	st.Session = func() string { return n.session.Load().(string) }
	st.Events = n.events
	st.WaitTime = 2 * time.Second
	if n.opts != nil {
		n.opts(st)
	}
	// The next entry follows the position this store starts at (which an
	// earlier store of the node may have reached by a re-sync).
	n.mu.Lock()
	n.applied = nil
	if e, q := cluster.FeedPosition(st); e != "" {
		n.applied = []string{fmt.Sprintf("%s/%d", e, q)}
	}
	n.mu.Unlock()
	var resyncs uint64
	cluster.SetCommitHooks(st, n.before, func(epoch string, seq uint64) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if r := st.Stats().Resyncs; r != resyncs {
			// A re-sync moved the position: the next entry follows it.
			resyncs = r
			n.applied = nil
		}
		if k := len(n.applied); k > 0 {
			var pe string
			var ps uint64
			fmt.Sscanf(strings.Replace(n.applied[k-1], "/", " ", 1), "%s %d", &pe, &ps)
			if pe == epoch && seq != ps+1 {
				n.dup = append(n.dup, fmt.Sprintf("%s/%d after %s/%d", epoch, seq, pe, ps))
			}
		}
		n.applied = append(n.applied, fmt.Sprintf("%s/%d", epoch, seq))
	})
	ctx, cancel := context.WithCancel(context.Background())
	n.live.Lock()
	n.st, n.cancel, n.done = st, cancel, make(chan struct{})
	n.live.Unlock()
	go func() { st.Run(ctx); close(n.done) }()
}

func (n *feedNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.live.Lock()
	n.pastResyncs += n.st.Stats().Resyncs
	n.st.Close()
	n.cancel = nil
	n.live.Unlock()
}

// resyncs counts the node's re-syncs over all its restarts.
func (n *feedNode) resyncs() uint64 {
	n.live.RLock()
	defer n.live.RUnlock()
	r := n.pastResyncs
	if n.cancel != nil {
		r += n.st.Stats().Resyncs
	}
	return r
}

// read runs f on the store unless the node is stopped.
func (n *feedNode) read(f func(st *cluster.ConsulStore)) bool {
	n.live.RLock()
	defer n.live.RUnlock()
	if n.cancel == nil {
		return false
	}
	f(n.st)
	return true
}

// assertInOrder fails the test if the node applied an entry twice or
// skipped one.
func (n *feedNode) assertInOrder(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.dup) > 0 {
		t.Errorf("%s applied entries twice or skipped some: %v", n.path, n.dup)
	}
}

// becomePrimary creates a session and takes the primary key with it.
func (n *feedNode) becomePrimary() {
	n.t.Helper()
	id, _, err := n.client.Session().Create(&api.SessionEntry{Name: "feed-test", TTL: "120s", Behavior: api.SessionBehaviorRelease, LockDelay: time.Millisecond}, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	ok, _, err := n.client.KV().Acquire(&api.KVPair{Key: cluster.KeyPrefix(n.cluster) + schema.KeyPrimary, Value: []byte(id), Session: id}, nil)
	if err != nil || !ok {
		n.t.Fatalf("acquire the primary key: ok=%v err=%v", ok, err)
	}
	n.session.Store(id)
}

// openFeedPair opens two nodes of cluster clusterName, p made the
// primary and s a secondary, each with its own file.
func openFeedPair(t *testing.T, client *api.Client, clusterName string) (p, s *feedNode) {
	t.Helper()
	dir := t.TempDir()
	p = openFeedNode(t, client, clusterName, filepath.Join(dir, "p.db"), nil)
	s = openFeedNode(t, client, clusterName, filepath.Join(dir, "s.db"), nil)
	p.becomePrimary()
	return p, s
}

func (n *feedNode) write(ops ...mailcluster.Op) (uint64, error) {
	return n.st.Txn(context.Background(), ops)
}

func set(key, value string) mailcluster.Op {
	return mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: []byte(value)}
}

// awaitIndex waits until n has applied index.
func (n *feedNode) awaitIndex(index uint64) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.st.WaitIndex(ctx, index); err != nil {
		n.t.Fatalf("index %d not applied within 10 s (at %d)", index, n.st.Index())
	}
}

// content returns every record of a store (or of Consul) as key=value.
func content(kvs []mailcluster.KV) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[kv.Key] = fmt.Sprintf("%s@%d", kv.Value, kv.ModifyIndex)
	}
	return out
}

// consulContent reads the replicated records from Consul itself.
func consulContent(t *testing.T, client *api.Client, clusterName string) map[string]string {
	t.Helper()
	prefix := cluster.KeyPrefix(clusterName)
	pairs, _, err := client.KV().List(prefix, &api.QueryOptions{RequireConsistent: true})
	if err != nil {
		t.Fatal(err)
	}
	var kvs []mailcluster.KV
	for _, p := range pairs {
		k := strings.TrimPrefix(p.Key, prefix)
		if k == schema.KeyPrimary || k == schema.KeyHead || strings.HasPrefix(k, schema.PrefixFeed) {
			continue
		}
		kvs = append(kvs, mailcluster.KV{Key: k, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	return content(kvs)
}

func sameContent(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", what, len(got), len(want))
	}
	n := 0
	for k, v := range want {
		if got[k] != v && n < 5 {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
			n++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && n < 10 {
			t.Errorf("%s: %s should not exist", what, k)
			n++
		}
	}
}

func head(t *testing.T, client *api.Client, clusterName string) (epoch string, seq uint64) {
	t.Helper()
	pair, _, err := client.KV().Get(cluster.KeyPrefix(clusterName)+schema.KeyHead, &api.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil {
		t.Fatalf("head: %v %v", pair, err)
	}
	var h struct {
		Epoch string `json:"epoch"`
		Seq   uint64 `json:"seq"`
	}
	if err := json.Unmarshal(pair.Value, &h); err != nil {
		t.Fatal(err)
	}
	return h.Epoch, h.Seq
}

// TestFeedReplicates: a secondary applies each write of the primary from
// the feed, reading per write about the size of the change, whatever the
// size of the state.
func TestFeedReplicates(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-replicates"
	p, s := openFeedPair(t, client, name)

	perWrite := func() uint64 {
		before := s.st.Stats().BytesRead
		index, err := p.write(set("settings/mailcluster/SMTP/Banner", fmt.Sprintf("banner %d", time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		s.awaitIndex(index)
		return s.st.Stats().BytesRead - before
	}
	first, err := p.write(set("domains/example.com", `{"name":"example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	// A new node's first catch-up is a re-sync: wait until it is counted.
	s.awaitIndex(first)
	waitFor(t, func() bool { return s.st.Stats().Resyncs == 1 })
	resyncs := s.st.Stats().Resyncs
	small := perWrite()
	// 2,000 more records, in transactions of 100.
	for i := 0; i < 20; i++ {
		var ops []mailcluster.Op
		for j := 0; j < 100; j++ {
			ops = append(ops, set(fmt.Sprintf("accounts/example.com/user%04d", i*100+j), strings.Repeat("x", 200)))
		}
		index, err := p.write(ops...)
		if err != nil {
			t.Fatal(err)
		}
		s.awaitIndex(index)
	}
	large := perWrite()
	t.Logf("bytes read from Consul per write: %d at 2 records, %d at 2,002", small, large)
	if small == 0 || large > small+64 {
		t.Errorf("a write cost the secondary %d bytes at 2 records and %d at 2,002: replication must follow the change, not the state", small, large)
	}
	if got := s.st.Count(schema.AccountPrefix("example.com")); got != 2000 {
		t.Errorf("secondary counts %d accounts, want 2000", got)
	}
	sameContent(t, "secondary", content(s.st.List("", "", 0)), consulContent(t, client, name))
	sameContent(t, "primary", content(p.st.List("", "", 0)), consulContent(t, client, name))
	if got := s.st.Stats().Resyncs; got != resyncs {
		t.Errorf("the secondary re-synced %d times after its first catch-up; it should have followed the feed", got-resyncs)
	}
	s.assertInOrder(t)
}

// TestFeedGroupCommit: writes that wait while a transaction is in flight
// go out together in one transaction; a write whose check fails fails
// alone, and the others commit.
func TestFeedGroupCommit(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-group"
	hold := make(chan struct{})
	var held atomic.Bool
	p := &feedNode{t: t, client: client, cluster: name, path: filepath.Join(t.TempDir(), "p.db"), events: &recordedEvents{},
		before: func() {
			if held.CompareAndSwap(false, true) {
				<-hold
			}
		}}
	p.session.Store("")
	p.start()
	t.Cleanup(p.stop)
	p.becomePrimary()

	first := make(chan error, 1)
	go func() { _, err := p.write(set("domains/first", "1")); first <- err }()
	waitFor(t, held.Load)
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		op := set(fmt.Sprintf("domains/d%02d", i), "v")
		if i == 7 {
			// Must not exist, but does: this write fails its check.
			op = mailcluster.Op{Verb: mailcluster.OpCAS, Key: "domains/first", Value: []byte("x"), Index: 0}
		}
		go func() { _, err := p.write(op); errs <- err }()
	}
	waitFor(t, func() bool { return cluster.QueuedWrites(p.st) == n })
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	conflicts := 0
	for i := 0; i < n; i++ {
		err := <-errs
		switch mailcluster.ErrorCode(err) {
		case "":
		case mailcluster.ECONFLICT:
			conflicts++
		default:
			t.Errorf("write: %v", err)
		}
	}
	if conflicts != 1 {
		t.Errorf("%d writes failed their check, want 1", conflicts)
	}
	if _, seq := head(t, client, name); seq != 2 {
		t.Errorf("the feed has %d entries, want 2: the first write, then the other %d in one transaction", seq, n-1)
	}
	if got := p.st.Count("domains/"); got != n {
		t.Errorf("%d domains, want %d", got, n)
	}
	if kv, _ := p.st.Get("domains/first"); string(kv.Value) != "1" {
		t.Errorf("domains/first = %q: the failed write changed it", kv.Value)
	}
}

// dropProxy forwards to Consul and, when armed, loses the answer to the
// next write transaction: after forwarding it (the write commits) or
// before (it never reaches Consul).
type dropProxy struct {
	target *url.URL
	// mode: 0 pass, 1 drop the next write's answer after forwarding, 2 drop
	// the next write before forwarding; reset to 0 once used.
	mode    atomic.Int32
	dropped atomic.Int32
	every   atomic.Int32 // >0: also drop (after forwarding) every n-th write
	writes  atomic.Int32
	rp      *httputil.ReverseProxy
}

func newDropProxy(t *testing.T, client *api.Client, consulAddr string) (*dropProxy, *api.Client) {
	t.Helper()
	u, _ := url.Parse("http://" + consulAddr)
	d := &dropProxy{target: u, rp: httputil.NewSingleHostReverseProxy(u)}
	d.rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func (d *dropProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Path == "/v1/txn" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		// A write of the feed carries the head's CAS and a feed entry.
		if bytes.Contains(body, []byte(`"check-session"`)) && bytes.Contains(body, []byte(`/feed/`)) {
			n := d.writes.Add(1)
			mode := d.mode.Swap(0)
			if every := d.every.Load(); mode == 0 && every > 0 && n%every == 0 {
				mode = 1
			}
			switch mode {
			case 1:
				rec := httptest.NewRecorder()
				d.rp.ServeHTTP(rec, r)
				d.dropped.Add(1)
				panic(http.ErrAbortHandler)
			case 2:
				d.dropped.Add(1)
				panic(http.ErrAbortHandler)
			}
		}
	}
	d.rp.ServeHTTP(w, r)
}

// TestFeedUnknownOutcome: when the answer to a write transaction is lost,
// the primary finds out from the head whether it committed, and answers
// definitely: no error, exactly one entry, applied once everywhere.
func TestFeedUnknownOutcome(t *testing.T) {
	client, addr := mustStartConsulAddr(t)
	const name = "feed-unknown"
	proxy, viaProxy := newDropProxy(t, client, addr)
	dir := t.TempDir()
	p := openFeedNode(t, viaProxy, name, filepath.Join(dir, "p.db"), nil)
	s := openFeedNode(t, client, name, filepath.Join(dir, "s.db"), nil)
	p.becomePrimary()
	if _, err := p.write(set("domains/start", "v")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mode int32
	}{{"LostAfterCommit", 1}, {"LostBeforeConsul", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			_, before := head(t, client, name)
			dropped := proxy.dropped.Load()
			proxy.mode.Store(tc.mode)
			key := "domains/" + strings.ToLower(tc.name)
			index, err := p.write(mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: []byte("once"), Index: 0})
			if err != nil {
				t.Fatalf("a write whose answer was lost: %v (want a definite success)", err)
			}
			if proxy.dropped.Load() != dropped+1 {
				t.Fatal("the proxy lost no answer: the test proves nothing")
			}
			if _, seq := head(t, client, name); seq != before+1 {
				t.Errorf("the feed moved from %d to %d, want one entry", before, seq)
			}
			pair, _, err := client.KV().Get(cluster.KeyPrefix(name)+key, nil)
			if err != nil || pair == nil || string(pair.Value) != "once" || pair.ModifyIndex != index {
				t.Errorf("Consul holds %+v (err %v), want the value at the index answered (%d)", pair, err, index)
			}
			s.awaitIndex(index)
			if kv, ok := s.st.Get(key); !ok || kv.ModifyIndex != index {
				t.Errorf("the secondary holds %+v", kv)
			}
		})
	}
	s.assertInOrder(t)
}

// TestFeedResync: a node that was away while the feed was pruned past its
// position, or that lost its local file, re-syncs and then follows again.
func TestFeedResync(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-resync"
	dir := t.TempDir()
	p := openFeedNode(t, client, name, filepath.Join(dir, "p.db"), func(st *cluster.ConsulStore) { st.FeedMaxEntries = 3 })
	s := openFeedNode(t, client, name, filepath.Join(dir, "s.db"), nil)
	p.becomePrimary()
	index, err := p.write(set("domains/a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	s.stop()
	for i := 0; i < 10; i++ {
		if _, err := p.write(set(fmt.Sprintf("domains/d%d", i), "v"), mailcluster.Op{Verb: mailcluster.OpDelete, Key: "domains/a"}); err != nil {
			t.Fatal(err)
		}
	}
	index, err = p.write(set("domains/last", "v"))
	if err != nil {
		t.Fatal(err)
	}
	epoch, _ := head(t, client, name)
	keys, _, err := client.KV().Keys(cluster.KeyPrefix(name)+schema.FeedEpoch(epoch), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 4 {
		t.Errorf("%d feed entries kept, want at most 4 (FeedMaxEntries 3, pruned with each write)", len(keys))
	}
	logged := s.events.count(mailcluster.EventReplicationResync) // the first catch-up's
	s.start()
	s.awaitIndex(index)
	// The count and the log entry follow the swap that WaitIndex saw.
	waitFor(t, func() bool { return s.events.count(mailcluster.EventReplicationResync) == logged+1 })
	if got := s.st.Stats().Resyncs; got != 1 {
		t.Errorf("re-syncs: %d, want 1", got)
	}
	sameContent(t, "after re-sync", content(s.st.List("", "", 0)), consulContent(t, client, name))

	// The local file lost: a new one is built from Consul.
	s.stop()
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	s.start()
	index, err = p.write(set("domains/after-loss", "v"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	sameContent(t, "after the local file was lost", content(s.st.List("", "", 0)), consulContent(t, client, name))

	// The feed deleted (a Consul snapshot from before it, say): the next
	// write starts a new epoch and every node re-syncs to it.
	if _, err := client.KV().DeleteTree(cluster.KeyPrefix(name)+schema.PrefixFeed, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Delete(cluster.KeyPrefix(name)+schema.KeyHead, nil); err != nil {
		t.Fatal(err)
	}
	index, err = p.write(set("domains/new-epoch", "v"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	if e, _ := cluster.FeedPosition(s.st); e == epoch {
		t.Error("the secondary still follows the old epoch")
	}
	sameContent(t, "after a new epoch", content(s.st.List("", "", 0)), consulContent(t, client, name))

	// The head damaged by hand: the primary starts a new epoch over it.
	epoch, _ = head(t, client, name)
	if _, err := client.KV().Put(&api.KVPair{Key: cluster.KeyPrefix(name) + schema.KeyHead, Value: []byte("edited by hand")}, nil); err != nil {
		t.Fatal(err)
	}
	index, err = p.write(set("domains/after-damage", "v"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	if e, _ := cluster.FeedPosition(s.st); e == epoch {
		t.Error("the secondary still follows the old epoch")
	}
	sameContent(t, "after a new epoch", content(s.st.List("", "", 0)), consulContent(t, client, name))
}

// TestFeedResyncEveryShape: a node that lost its file rebuilds it from
// Consul whatever the shape of the records (folders of folders, folders of
// records, loose records beside folders and at the top, more pages than
// are read at once, more loose records than one transaction reads), with
// every record and its index, as the pages are read concurrently.
func TestFeedResyncEveryShape(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-resync-shapes"
	p, s := openFeedPair(t, client, name)
	var ops []mailcluster.Op
	flush := func() {
		if _, err := p.write(ops...); err != nil {
			t.Fatal(err)
		}
		ops = nil
	}
	for d := range 40 { // 40 pages of accounts, more than readAllAhead
		for m := range 3 {
			ops = append(ops, set(fmt.Sprintf("accounts/d%02d.example/m%d", d, m), fmt.Sprintf("a%d-%d", d, m)))
		}
		ops = append(ops, set(fmt.Sprintf("domains/d%02d.example", d), "d"))
		if len(ops) >= 40 {
			flush()
		}
	}
	for i := range 70 { // loose records beside folders: two transactions' worth
		ops = append(ops, set(fmt.Sprintf("accounts/loose%02d", i), "l"))
		if len(ops) >= 40 {
			flush()
		}
	}
	ops = append(ops, set("toplevel", "t"))
	flush()
	index, err := p.write(set("domains/last", "v"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	s.stop()
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.awaitIndex(index)
	got := content(s.st.List("", "", 0))
	if len(got) < 40*4+70+2 {
		t.Fatalf("%d records after the rebuild", len(got))
	}
	sameContent(t, "after the rebuild", got, consulContent(t, client, name))
}

// TestFeedExternalWrite: a record changed in Consul outside mailcluster
// reaches every node through the primary, and is in the cluster log.
func TestFeedExternalWrite(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-external"
	p, s := openFeedPair(t, client, name)
	index, err := p.write(set("settings/mailcluster/SMTP/Banner", "ours"), set("domains/gone", "v"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index)
	prefix := cluster.KeyPrefix(name)
	if _, err := client.KV().Put(&api.KVPair{Key: prefix + "settings/mailcluster/SMTP/Banner", Value: []byte("edited in the UI")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Delete(prefix+"domains/gone", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		kv, _ := s.st.Get("settings/mailcluster/SMTP/Banner")
		_, gone := s.st.Get("domains/gone")
		return string(kv.Value) == "edited in the UI" && !gone
	})
	if p.events.count(mailcluster.EventExternalWrite) == 0 {
		t.Error("the change made outside mailcluster is not in the primary's cluster log")
	}
	sameContent(t, "secondary", content(s.st.List("", "", 0)), consulContent(t, client, name))
	sameContent(t, "primary", content(p.st.List("", "", 0)), consulContent(t, client, name))
}

// TestFeedUnderFaults: writers move amounts between ten keys of a constant
// sum with CAS while the primary's transaction answers are lost now and
// then, the feed is pruned after four entries, one secondary's watcher is
// stopped and restarted again and again, and another loses its local file.
// Readers on the secondaries never see a torn write (the sum holds in
// every read); every acknowledged write ends up on every node; no node
// applies an entry twice or skips one; every answer is definite.
func TestFeedUnderFaults(t *testing.T) {
	client, addr := mustStartConsulAddr(t)
	const name = "feed-faults"
	proxy, viaProxy := newDropProxy(t, client, addr)
	dir := t.TempDir()
	p := openFeedNode(t, viaProxy, name, filepath.Join(dir, "p.db"), func(st *cluster.ConsulStore) { st.FeedMaxEntries = 4 })
	s1 := openFeedNode(t, client, name, filepath.Join(dir, "s1.db"), nil)
	s2 := openFeedNode(t, client, name, filepath.Join(dir, "s2.db"), nil)
	p.becomePrimary()
	const keys, total = 10, 1000
	var init []mailcluster.Op
	for i := 0; i < keys; i++ {
		init = append(init, set(fmt.Sprintf("sum/%d", i), fmt.Sprint(total/keys)))
	}
	index, err := p.write(init...)
	if err != nil {
		t.Fatal(err)
	}
	s1.awaitIndex(index)
	s2.awaitIndex(index)
	proxy.every.Store(5)

	deadline := time.Now().Add(40 * time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	var failures []string
	var torn []string
	var reads atomic.Int64
	const writers, perWriter = 4, 60
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perWriter && time.Now().Before(deadline); {
				i, j := (w+n)%keys, (w+3*n+1)%keys
				if i == j {
					j = (j + 1) % keys
				}
				a, _ := p.st.Get(fmt.Sprintf("sum/%d", i))
				b, _ := p.st.Get(fmt.Sprintf("sum/%d", j))
				var av, bv int
				fmt.Sscan(string(a.Value), &av)
				fmt.Sscan(string(b.Value), &bv)
				amt := 1 + n%7
				ack := fmt.Sprintf("ack/%d/%d", w, n)
				_, err := p.write(
					mailcluster.Op{Verb: mailcluster.OpCAS, Key: a.Key, Value: []byte(fmt.Sprint(av - amt)), Index: a.ModifyIndex},
					mailcluster.Op{Verb: mailcluster.OpCAS, Key: b.Key, Value: []byte(fmt.Sprint(bv + amt)), Index: b.ModifyIndex},
					set(ack, "1"))
				switch mailcluster.ErrorCode(err) {
				case "":
					mu.Lock()
					acked = append(acked, ack)
					mu.Unlock()
					n++
				case mailcluster.ECONFLICT:
					// Another writer moved one of the keys: read again.
				default:
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
			}
		}()
	}
	reader := func(n *feedNode) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(time.Millisecond)
			n.read(func(st *cluster.ConsulStore) {
				kvs := st.List("sum/", "", 0)
				sum := 0
				for _, kv := range kvs {
					var v int
					fmt.Sscan(string(kv.Value), &v)
					sum += v
				}
				if len(kvs) == 0 {
					return // a node that lost its file, before its first catch-up
				}
				reads.Add(1)
				if len(kvs) != keys || sum != total {
					mu.Lock()
					torn = append(torn, fmt.Sprintf("%d keys, sum %d", len(kvs), sum))
					mu.Unlock()
				}
			})
		}
	}
	wg.Add(2)
	go reader(s1)
	go reader(s2)
	faults := make(chan struct{})
	go func() {
		defer close(faults)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			s1.stop()
			// Away while the feed moves on (every other time past the prune
			// horizon of four entries).
			until := proxy.writes.Load() + int32(2+4*(k%2))
			for end := time.Now().Add(2 * time.Second); proxy.writes.Load() < until && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			s1.start()
			if k == 3 {
				s2.stop()
				os.Remove(s2.path)
				s2.start()
			}
		}
	}()
	// Wait for the writers, then stop the readers and the faults.
	writersDone := make(chan struct{})
	go func() {
		for {
			mu.Lock()
			n, f := len(acked), len(failures)
			mu.Unlock()
			if n == writers*perWriter || f > 0 || time.Now().After(deadline) {
				close(writersDone)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	<-writersDone
	close(stop)
	wg.Wait()
	<-faults
	proxy.every.Store(0)

	if len(failures) > 0 {
		t.Fatalf("writes without a definite answer: %v", failures)
	}
	if len(acked) < writers*perWriter {
		t.Fatalf("only %d of %d writes done within the time", len(acked), writers*perWriter)
	}
	if proxy.dropped.Load() == 0 {
		t.Fatal("no transaction answer was lost: the test proves nothing")
	}
	t.Logf("%d writes acknowledged, %d answers lost, %d reads on secondaries, re-syncs: s1 %d, s2 %d",
		len(acked), proxy.dropped.Load(), reads.Load(), s1.resyncs(), s2.resyncs())
	if len(torn) > 0 {
		t.Errorf("%d reads saw a torn write, e.g. %s", len(torn), torn[0])
	}
	final, err := p.write(set("domains/final", "v"))
	if err != nil {
		t.Fatal(err)
	}
	want := consulContent(t, client, name)
	for _, n := range []*feedNode{p, s1, s2} {
		n.awaitIndex(final)
		got := content(n.st.List("", "", 0))
		sameContent(t, n.path, got, want)
		for _, k := range acked {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: acknowledged write %s is missing", n.path, k)
			}
		}
		n.assertInOrder(t)
	}
	// The primary's own commits, made while its watch for changes outside
	// mailcluster and its feed watch ran, are neither.
	if n := p.events.count(mailcluster.EventExternalWrite); n != 0 || p.st.Stats().ExternalWrites != 0 {
		evs, _ := p.events.Events(0)
		for _, e := range evs {
			if e.Event == mailcluster.EventExternalWrite {
				t.Logf("%+v", e.Fields)
			}
		}
		t.Errorf("the primary took its own writes for %d changes made outside mailcluster (%d events)", p.st.Stats().ExternalWrites, n)
	}
	if r := p.resyncs(); r != 0 {
		t.Errorf("the primary re-synced %d times while it wrote", r)
	}
	if s1.resyncs() == 0 {
		t.Error("the secondary that stopped and started never re-synced: the prune horizon was not reached")
	}
}

// TestFeedExternalWriteMasked: a change made outside mailcluster right
// before one of the primary's own writes is not told apart by the
// prefix's index (the primary's write is the latest); the primary's
// periodic full comparison finds it.
func TestFeedExternalWriteMasked(t *testing.T) {
	client := MustStartConsul(t)
	const name = "feed-masked"
	dir := t.TempDir()
	p := openFeedNode(t, client, name, filepath.Join(dir, "p.db"), func(st *cluster.ConsulStore) {
		st.OutsideCheckEvery = 3 * time.Second // the index watch looks only after the primary's write
		st.ReconcileEvery = time.Second
	})
	s := openFeedNode(t, client, name, filepath.Join(dir, "s.db"), nil)
	p.becomePrimary()
	index, err := p.write(set("domains/a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitIndex(index) // s follows the feed from here on
	if _, err := client.KV().Put(&api.KVPair{Key: cluster.KeyPrefix(name) + "domains/outside", Value: []byte("edited")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.write(set("domains/b", "1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if kv, ok := s.st.Get("domains/outside"); ok && string(kv.Value) == "edited" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change made outside mailcluster never reached the secondary")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.events.count(mailcluster.EventExternalWrite) == 0 {
		t.Error("no external-write event")
	}
	if r := s.resyncs(); r != 1 {
		t.Errorf("the secondary re-synced %d times (once to join): it should have had the change from the feed", r)
	}
}
