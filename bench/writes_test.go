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
)

// benchWrites measures account creates on the primary (REST), one client
// and 32 concurrent, against raw Consul transactions of the same shape
// (check-session, check-index, CAS of a value of the same size, set of
// meta/txn: the operations of the service's create) sent with the same
// Consul client library and defaults as the node uses. Domain creates
// (no bcrypt hash) are measured the same way, for information.
func benchWrites(t *testing.T, c *Cluster, rec *recorder) {
	mustDo(t, "POST", c.Nodes[waitPrimary(t, c, 10*time.Second)].BaseURL+"/api/v1/domains", `{"name":"write.example"}`, 201)
	dur := loadDuration()

	raw := newRawWriter(t, c.Consul.Addr, "bench-raw-"+c.Name)
	// The value of a raw create is an account as the service stores it.
	hash, _ := bcrypt.GenerateFromPassword([]byte("bench-pass-123"), bcrypt.DefaultCost)
	now := time.Now().UTC()
	accountJSON, _ := json.Marshal(&mailcluster.Account{Domain: "write.example", Mailbox: "w1-000001", PasswordHash: string(hash),
		MailboxPath: "/tmp/mailcluster-bench/mailboxes/write.example/w1-000001/", AdminRights: mailcluster.AdminNone, CreatedAt: now, UpdatedAt: now})
	domainJSON, _ := json.Marshal(&mailcluster.Domain{Name: "wd1-000001.example", CreatedAt: now, UpdatedAt: now})

	post := func(url string, body func(seq int64) string) func(int64) (*http.Request, error) {
		return func(seq int64) (*http.Request, error) {
			req, err := http.NewRequest("POST", url, strings.NewReader(body(seq)))
			if err == nil {
				req.SetBasicAuth(adminUser, adminPW)
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		}
	}
	for _, kind := range []struct {
		name, what string
		path       string
		body       func(int) func(int64) string
		rawValue   []byte
		rawCheck   bool
		targeted   bool
		note       string
	}{
		{
			name: "account creates", what: "account",
			path: "/api/v1/domains/write.example/accounts",
			body: func(conc int) func(int64) string {
				return func(seq int64) string {
					return fmt.Sprintf(`{"mailbox":"w%d-%06d","password":"bench-pass-123"}`, conc, seq)
				}
			},
			rawValue: accountJSON, rawCheck: true, targeted: true, note: "includes a bcrypt hash (cost 10) per create",
		},
		{
			name: "domain creates (no bcrypt)", what: "domain",
			path: "/api/v1/domains",
			body: func(conc int) func(int64) string {
				return func(seq int64) string { return fmt.Sprintf(`{"name":"wd%d-%06d.example"}`, conc, seq) }
			},
			rawValue: domainJSON, note: "for information: the write path without bcrypt",
		},
	} {
		for _, conc := range []int{1, 32} {
			// The raw baseline first, once the nodes are done with the
			// previous load (they list the grown prefix for a while).
			settle(t, c, 30*time.Second)
			base := runLoad(conc, dur, 0, func(_ int, seq int64) error {
				return raw.create(fmt.Sprintf("%s/%d/%d", kind.what, conc, seq), kind.rawValue, kind.rawCheck)
			})
			primary := c.Nodes[waitPrimary(t, c, 30*time.Second)] // it changes when the primary stepped down under load
			client := newLoadClient(conc)
			stop := profile(t, primary.Pid(), fmt.Sprintf("writes-%s-%d", kind.what, conc))
			api := runLoad(conc, dur, 0, httpOp(client, 201, post(primary.BaseURL+kind.path, kind.body(conc))))
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
			var tg *target
			if kind.targeted {
				x := ratioAtLeast(0.8)
				tg = &x
			}
			clients := fmt.Sprintf(", %d client", conc)
			if conc > 1 {
				clients += "s"
			}
			rec.add("writes", kind.name+" on the primary"+clients, api.PerSec(), "/s", base.PerSec(), "raw Consul txn", tg, api.N, kind.note)
			rec.add("writes", kind.name+" on the primary"+clients+", p99", api.Pct(0.99), "ms", base.Pct(0.99), "raw Consul txn", nil, api.N, "")
		}
	}
}

// rawWriter sends Consul transactions shaped like the service's writes.
type rawWriter struct {
	client    *consulapi.Client
	prefix    string
	session   string
	domainIdx uint64
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
	if ok, _, err := client.KV().Acquire(&consulapi.KVPair{Key: w.prefix + "primary", Session: w.session}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if _, err := client.KV().Put(&consulapi.KVPair{Key: w.prefix + "domains/write.example", Value: []byte(`{}`)}, nil); err != nil {
		t.Fatal(err)
	}
	kv, _, err := client.KV().Get(w.prefix+"domains/write.example", nil)
	if err != nil || kv == nil {
		t.Fatalf("read back: %v", err)
	}
	w.domainIdx = kv.ModifyIndex
	return w
}

// create is one transaction: check-session on the lock key, optionally
// check-index on the domain, CAS (must not exist) of key, set meta/txn.
func (w *rawWriter) create(key string, value []byte, checkDomain bool) error {
	ops := consulapi.TxnOps{{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckSession, Key: w.prefix + "primary", Session: w.session}}}
	if checkDomain {
		ops = append(ops, &consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckIndex, Key: w.prefix + "domains/write.example", Index: w.domainIdx}})
	}
	stamp := fmt.Appendf(nil, `{"at":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	ops = append(ops,
		&consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: w.prefix + key, Value: value, Index: 0}},
		&consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: w.prefix + "meta/txn", Value: stamp}})
	ok, resp, _, err := w.client.Txn().Txn(ops, nil)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("txn refused: %v", resp.Errors)
	}
	return nil
}
