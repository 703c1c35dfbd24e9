package bench_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/schema"
)

// benchWrites measures writes on the primary (REST), one client and 32
// concurrent, each against its baseline in the same run:
//
//   - domain creates and settings writes against raw Consul transactions
//     of the same operations and bytes as the node's transaction for one
//     write (check-session, the record, a feed entry holding the record,
//     the CAS of a head record), sent with the same Consul client library
//     and defaults as the node uses, from as many clients. Each raw client
//     has a head record of its own, so raw clients never conflict; the
//     node may put concurrent writes into one transaction (group commit),
//     the raw clients do not.
//   - account creates with a password against a bare bcrypt loop (cost
//     10, as the service hashes) with the same number of goroutines in
//     this process.
func benchWrites(t *testing.T, c *Cluster, rec *recorder) {
	mustDo(t, "POST", c.Nodes[waitPrimary(t, c, 10*time.Second)].BaseURL+"/api/v1/domains", `{"name":"write.example"}`, 201)
	dur := loadDuration()
	raw := newRawWriter(t, c.Consul.Addr, "bench-raw-"+c.Name)
	now := time.Now().UTC()

	for _, kind := range []struct {
		name, what string
		method     string
		want       int
		path       func(conc, worker int, seq int64) string
		body       func(conc int, seq int64) string
		// record is the raw transaction's record for a worker and a sequence
		// number: a key and value of the same size as the node's.
		record func(conc, worker int, seq int64) (string, []byte, consulapi.KVOp)
	}{
		{
			name: "domain creates", what: "domain", method: "POST", want: 201,
			path: func(int, int, int64) string { return "/api/v1/domains" },
			body: func(conc int, seq int64) string { return fmt.Sprintf(`{"name":"wd%02d-%06d.example"}`, conc, seq) },
			record: func(conc, _ int, seq int64) (string, []byte, consulapi.KVOp) {
				name := fmt.Sprintf("wd%02d-%06d.example", conc, seq)
				b, _ := json.Marshal(&mailcluster.Domain{Name: name, CreatedAt: now, UpdatedAt: now})
				return schema.Domain(name), b, consulapi.KVCAS
			},
		},
		{
			// Every client writes a key of its own: writes of one key cannot
			// share a transaction.
			name: "settings writes", what: "setting", method: "PUT", want: 200,
			path: func(conc, worker int, _ int64) string {
				return fmt.Sprintf("/api/v1/settings/bench/Load%02d/K%02d", conc, worker)
			},
			body: func(_ int, seq int64) string { return fmt.Sprintf(`{"value":"v-%06d"}`, seq) },
			record: func(conc, worker int, seq int64) (string, []byte, consulapi.KVOp) {
				return schema.Setting("bench", fmt.Sprintf("Load%02d", conc), fmt.Sprintf("K%02d", worker)), fmt.Appendf(nil, "v-%06d", seq), consulapi.KVSet
			},
		},
	} {
		for _, conc := range []int{1, 32} {
			// The raw baseline first, once the nodes are quiet.
			settle(t, c, 30*time.Second)
			heads := raw.heads(t, fmt.Sprintf("%s-%d", kind.what, conc), conc)
			base := runLoad(conc, dur, 0, func(w int, seq int64) error {
				key, value, verb := kind.record(conc, w, seq)
				return raw.commit(heads[w], key, value, verb)
			})
			primary := c.Nodes[waitPrimary(t, c, 30*time.Second)] // it changes when the primary stepped down under load
			client := newLoadClient(conc)
			stop := profile(t, primary.Pid(), fmt.Sprintf("writes-%s-%d", kind.what, conc))
			api := runLoad(conc, dur, 0, func(w int, seq int64) error {
				return httpOp(client, kind.want, func(seq int64) (*http.Request, error) {
					return adminRequest(kind.method, primary.BaseURL+kind.path(conc, w, seq), kind.body(conc, seq))
				})(w, seq)
			})
			stop()
			client.CloseIdleConnections()
			t.Logf("%s, %d clients: %d in %s (%.1f/s, p99 %.1f ms); raw Consul %d (%.0f/s, p99 %.2f ms)", kind.name, conc,
				api.N, api.Elapsed.Round(time.Millisecond), api.PerSec(), api.Pct(0.99), base.N, base.PerSec(), base.Pct(0.99))
			if err := errOK(api); err != nil {
				rec.fail(t, "%s, %d clients: %v", kind.name, conc, err)
				continue
			}
			if err := errOK(base); err != nil {
				rec.fail(t, "raw consul txn, %d clients: %v", conc, err)
				continue
			}
			key, value, _ := kind.record(conc, 0, 1)
			note := fmt.Sprintf("raw txn per write: check-session, %s of the record (%d B), CAS of a feed entry holding it (%d B), CAS of a head record (one per client)",
				map[string]string{"domain": "CAS (must not exist)", "setting": "set"}[kind.what], len(key)+len(value), raw.entrySize(key, value))
			tg := ratioAtLeast(0.8)
			rec.add("writes", kind.name+" on the primary"+clientsLabel(conc), api.PerSec(), "/s", base.PerSec(), "raw Consul txn", &tg, api.N, note)
			rec.add("writes", kind.name+" on the primary"+clientsLabel(conc)+", p99", api.Pct(0.99), "ms", base.Pct(0.99), "raw Consul txn", nil, api.N, "")
		}
	}

	// Account creates: the service hashes the password (bcrypt, cost 10).
	for _, conc := range []int{1, 32} {
		settle(t, c, 30*time.Second)
		base := runLoad(conc, dur, 0, func(int, int64) error {
			_, err := bcrypt.GenerateFromPassword([]byte("bench-pass-123"), bcrypt.DefaultCost)
			return err
		})
		primary := c.Nodes[waitPrimary(t, c, 30*time.Second)]
		client := newLoadClient(conc)
		stop := profile(t, primary.Pid(), fmt.Sprintf("writes-account-%d", conc))
		api := runLoad(conc, dur, 0, httpOp(client, 201, func(seq int64) (*http.Request, error) {
			return adminRequest("POST", primary.BaseURL+"/api/v1/domains/write.example/accounts",
				fmt.Sprintf(`{"mailbox":"w%02d-%06d","password":"bench-pass-123"}`, conc, seq))
		}))
		stop()
		client.CloseIdleConnections()
		t.Logf("account creates, %d clients: %d in %s (%.1f/s, p99 %.1f ms); bare bcrypt %d (%.1f/s)", conc,
			api.N, api.Elapsed.Round(time.Millisecond), api.PerSec(), api.Pct(0.99), base.N, base.PerSec())
		if err := errOK(api); err != nil {
			rec.fail(t, "account creates, %d clients: %v", conc, err)
			continue
		}
		tg := ratioAtLeast(0.8)
		rec.add("writes", "account creates with a password on the primary"+clientsLabel(conc), api.PerSec(), "/s", base.PerSec(), "bare bcrypt loop", &tg, api.N,
			fmt.Sprintf("baseline: bcrypt.GenerateFromPassword at cost %d from %d goroutines in the load generator, on the same CPUs", bcrypt.DefaultCost, conc))
		rec.add("writes", "account creates with a password on the primary"+clientsLabel(conc)+", p99", api.Pct(0.99), "ms", base.Pct(0.99), "bare bcrypt loop", nil, api.N, "")
	}
}

func clientsLabel(conc int) string {
	if conc == 1 {
		return ", 1 client"
	}
	return fmt.Sprintf(", %d clients", conc)
}

// adminRequest builds a request as the administrator, with a JSON body
// when body is not empty.
func adminRequest(method, url, body string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(adminUser, adminPW)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// rawWriter sends Consul transactions shaped like the node's writes.
type rawWriter struct {
	client  *consulapi.Client
	prefix  string
	session string
}

// rawHead is one raw client's head record and feed: only its own
// goroutine uses it.
type rawHead struct {
	key   string
	index uint64 // ModifyIndex of the head (0: not written yet)
	epoch string
	seq   uint64
}

// rawFeedEntry has the fields and JSON names of a feed entry.
type rawFeedEntry struct {
	ID      string      `json:"id"`
	Epoch   string      `json:"epoch"`
	Seq     uint64      `json:"seq"`
	At      time.Time   `json:"at"`
	Changes []rawChange `json:"changes"`
}

type rawChange struct {
	Key   string `json:"k"`
	Value []byte `json:"v,omitempty"`
}

func newRawWriter(t *testing.T, addr, prefix string) *rawWriter {
	t.Helper()
	client, err := consulapi.NewClient(&consulapi.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	w := &rawWriter{client: client, prefix: prefix + "/"}
	w.session, _, err = client.Session().Create(&consulapi.SessionEntry{Name: "bench", Behavior: consulapi.SessionBehaviorRelease, LockDelay: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = client.Session().Destroy(w.session, nil) })
	if ok, _, err := client.KV().Acquire(&consulapi.KVPair{Key: w.prefix + schema.KeyPrimary, Session: w.session}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	return w
}

// heads returns n fresh raw clients' heads, named after run.
func (w *rawWriter) heads(t *testing.T, run string, n int) []*rawHead {
	t.Helper()
	out := make([]*rawHead, n)
	for i := range out {
		// An epoch of the node's length (24 hex digits).
		out[i] = &rawHead{key: fmt.Sprintf("%s%s-%s-%02d", w.prefix, schema.KeyHead, run, i), epoch: fmt.Sprintf("%024x", time.Now().UnixNano()+int64(i))}
	}
	return out
}

func (w *rawWriter) entry(h *rawHead, key string, value []byte) []byte {
	b, _ := json.Marshal(&rawFeedEntry{ID: fmt.Sprintf("%024x", time.Now().UnixNano()), Epoch: h.epoch, Seq: h.seq + 1,
		At: time.Now().UTC(), Changes: []rawChange{{Key: key, Value: value}}})
	return b
}

// entrySize is the size of the feed entry holding key and value.
func (w *rawWriter) entrySize(key string, value []byte) int {
	return len(w.entry(&rawHead{epoch: strings.Repeat("0", 24)}, key, value))
}

// commit is one transaction: check-session on the lock key, the record
// (verb: CAS that it does not exist, or set), the feed entry holding it
// (CAS: must not exist) and the CAS of the client's head.
func (w *rawWriter) commit(h *rawHead, key string, value []byte, verb consulapi.KVOp) error {
	entry := w.entry(h, key, value)
	pos, _ := json.Marshal(struct {
		Epoch string `json:"epoch"`
		Seq   uint64 `json:"seq"`
	}{h.epoch, h.seq + 1})
	ops := consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckSession, Key: w.prefix + schema.KeyPrimary, Session: w.session}},
		{KV: &consulapi.KVTxnOp{Verb: verb, Key: w.prefix + key, Value: value, Index: 0}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: w.prefix + schema.Feed(h.epoch, h.seq+1), Value: entry, Index: 0}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: h.key, Value: pos, Index: h.index}},
	}
	ok, resp, _, err := w.client.Txn().Txn(ops, nil)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("txn refused: %v", resp.Errors)
	}
	h.seq++
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == h.key {
			h.index = r.KV.ModifyIndex
		}
	}
	return nil
}
