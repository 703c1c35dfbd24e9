package cluster_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/consul/api"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/schema"
)

// TestConsulStoreFencing calls the store's write path directly (no role
// check of the service in front of it) with sessions that do not hold the
// primary key: Consul itself must refuse the write by check-session, and
// nothing of it may be written. The session that holds the key writes.
func TestConsulStoreFencing(t *testing.T) {
	client := MustStartConsul(t)
	ctx := context.Background()
	const clusterName = "fencing"
	prefix := cluster.KeyPrefix(clusterName)
	primaryKey := prefix + schema.KeyPrimary

	newSession := func(name string) string {
		t.Helper()
		id, _, err := client.Session().Create(&api.SessionEntry{Name: name, TTL: "60s", Behavior: api.SessionBehaviorRelease}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	acquire := func(session string) {
		t.Helper()
		ok, _, err := client.KV().Acquire(&api.KVPair{Key: primaryKey, Value: []byte(session), Session: session}, nil)
		if err != nil || !ok {
			t.Fatalf("acquire the primary key with %s: ok=%v err=%v", session, ok, err)
		}
	}
	// read returns the value in Consul itself (not the store's snapshot).
	read := func(key string) *api.KVPair {
		t.Helper()
		kv, _, err := client.KV().Get(prefix+key, &api.QueryOptions{RequireConsistent: true})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}

	st, err := cluster.OpenConsulStore(client, clusterName, filepath.Join(t.TempDir(), "snapshot.db"), discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var session atomic.Value
	session.Store("")
	st.Session = func() string { return session.Load().(string) }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { st.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	deposed, holder := newSession("deposed"), newSession("holder")
	acquire(deposed)
	if _, _, err := client.KV().Release(&api.KVPair{Key: primaryKey, Session: deposed}, nil); err != nil {
		t.Fatal(err)
	}
	acquire(holder)
	destroyed := newSession("destroyed")
	if _, err := client.Session().Destroy(destroyed, nil); err != nil {
		t.Fatal(err)
	}

	write := func(key, value string) (uint64, error) {
		return st.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: key, Value: []byte(value)}})
	}

	t.Run("OK", func(t *testing.T) {
		session.Store(holder)
		index, err := write("test/ok", "written")
		if err != nil {
			t.Fatalf("the holding session could not write: %v", err)
		}
		if kv := read("test/ok"); kv == nil || string(kv.Value) != "written" {
			t.Fatalf("Consul holds %v after the holder's write", kv)
		}
		if kv := read(schema.KeyHead); kv == nil || kv.ModifyIndex != index {
			t.Errorf("meta/head = %v, want ModifyIndex %d", kv, index)
		}
	})

	for _, tc := range []struct{ name, session string }{
		{"ErrNotHolder", deposed},
		{"ErrDestroyedSession", destroyed},
		{"ErrUnknownSession", "00000000-0000-0000-0000-000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := read(schema.KeyHead)
			session.Store(tc.session)
			_, err := write("test/"+tc.name, "must not be written")
			if code := mailcluster.ErrorCode(err); code != mailcluster.EREADONLY {
				t.Errorf("write with a session that does not hold the key: code %q (err %v), want %s", code, err, mailcluster.EREADONLY)
			}
			if kv := read("test/" + tc.name); kv != nil {
				t.Errorf("Consul holds %q = %q: the fenced write went through", kv.Key, kv.Value)
			}
			after := read(schema.KeyHead)
			if before == nil || after == nil {
				t.Fatalf("meta/head missing: before %v, after %v", before, after)
			}
			if after.ModifyIndex != before.ModifyIndex {
				t.Errorf("meta/head was set again by a fenced write (index %d, was %d)", after.ModifyIndex, before.ModifyIndex)
			}
			if kv := read(schema.KeyPrimary); kv == nil || kv.Session != holder {
				t.Errorf("the primary key is %v, want it still held by %s", kv, holder)
			}
		})
	}
}
