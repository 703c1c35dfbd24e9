package cluster_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/internal/testkv"
	"mailcluster/kvstore"
	"mailcluster/service"
)

// MustOpenPrimary returns a bootstrapped service with one account
// alice@example.com over a fresh bbolt store; mods set options beyond
// the test defaults.
func MustOpenPrimary(t testing.TB, mods ...func(*service.Options)) (*service.Service, *kvstore.BoltStore) {
	t.Helper()
	st := testkv.MustOpenBoltStore(t, "")
	opts := service.Options{BcryptCost: bcrypt.MinCost}
	for _, m := range mods {
		m(&opts)
	}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "p", APIURL: "http://127.0.0.1:1"}}, discard(), opts)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func runOutbox(t *testing.T, ob *cluster.Outbox) func() {
	ctx, cancel := context.WithCancel(service.SystemContext(context.Background(), "test"))
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// mustPrimaryOutbox returns a primary (MustOpenPrimary) and the outbox of
// node, in a new file, that sends to the primary's ApplyUsageReport, as a
// node's outbox does on its own primary, and reads the primary's marks
// from its store; record, unless nil, sees each report before it is
// applied. The outbox is closed when the test ends.
func mustPrimaryOutbox(t testing.TB, node string, record func(mailcluster.UsageReport)) (*service.Service, *kvstore.BoltStore, *cluster.Outbox) {
	t.Helper()
	svc, st := MustOpenPrimary(t)
	send := applyTo(svc)
	if record != nil {
		send = func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
			record(r)
			return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
		}
	}
	ob, err := cluster.OpenOutbox(filepath.Join(t.TempDir(), "outbox.db"), node, send, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	ob.Store = st
	return svc, st, ob
}

func delta(bytes int64) mailcluster.UsageDelta {
	return mailcluster.UsageDelta{Domain: "example.com", Mailbox: "alice", Bytes: bytes, Messages: 1, At: time.Now()}
}

// TestOutboxExactlyOnce loses the primary's acknowledgement: the outbox
// sends again, and the primary counts each change once.
func TestOutboxExactlyOnce(t *testing.T) {
	svc, st := MustOpenPrimary(t)
	var calls atomic.Int32
	send := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		idx, err := svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
		if calls.Add(1) == 1 {
			return 0, errors.New("connection reset") // applied, but the answer was lost
		}
		return idx, err
	}
	ob, err := cluster.OpenOutbox(filepath.Join(t.TempDir(), "outbox.db"), "n1", send, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	ob.Store = st
	if err := ob.Report(delta(100), delta(50)); err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	defer stop()
	waitFor(t, func() bool { return ob.Queued() == 0 })
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Bytes != 150 || u.Messages != 2 {
		t.Fatalf("usage = %+v, want 150 bytes in 2 messages", u)
	}
	if calls.Load() < 2 {
		t.Fatal("the lost acknowledgement was not retried")
	}
	if b, m := ob.Pending("example.com", "alice"); b != 0 || m != 0 {
		t.Fatalf("pending after publication = %d, %d", b, m)
	}
}

// TestOutboxQueuesWhileUnreachable keeps reports across a restart of the
// node while the primary is unreachable, counts them as pending, and sends
// them once it is reachable.
func TestOutboxQueuesWhileUnreachable(t *testing.T) {
	svc, st := MustOpenPrimary(t)
	var up atomic.Bool
	var attempts atomic.Int64
	send := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		attempts.Add(1)
		if !up.Load() {
			return 0, errors.New("no primary")
		}
		return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob, err := cluster.OpenOutbox(path, "n1", send, discard())
	if err != nil {
		t.Fatal(err)
	}
	ob.Store = st
	stop := runOutbox(t, ob)
	for range 3 {
		if err := ob.Report(delta(10)); err != nil {
			t.Fatal(err)
		}
	}
	// Two failed sends after the last report: the outbox has tried, and
	// failed, to send all three.
	tried := attempts.Load()
	waitFor(t, func() bool { return attempts.Load() >= tried+2 })
	if b, m := ob.Pending("example.com", "alice"); b != 30 || m != 3 {
		t.Fatalf("pending = %d, %d; want 30, 3", b, m)
	}
	stop()
	ob.Close()

	ob2, err := cluster.OpenOutbox(path, "n1", send, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer ob2.Close()
	ob2.Store = st
	if ob2.Queued() != 3 {
		t.Fatalf("queued after reopen = %d", ob2.Queued())
	}
	up.Store(true)
	stop2 := runOutbox(t, ob2)
	defer stop2()
	ob2.Kick()
	waitFor(t, func() bool { return mustLocal(svc).Usage("example.com", "alice").Messages == 3 })
	if b, m := ob2.Pending("example.com", "alice"); b != 0 || m != 0 {
		t.Fatalf("pending after publication = %d, %d", b, m)
	}
}

// TestOutboxNewEpoch: a node whose outbox file was rebuilt starts its
// sequence again; the primary must not take the new changes for repeats.
func TestOutboxNewEpoch(t *testing.T) {
	svc, st := MustOpenPrimary(t)
	for range 2 {
		ob, err := cluster.OpenOutbox(filepath.Join(t.TempDir(), "outbox.db"), "n1", func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
			return svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r)
		}, discard())
		if err != nil {
			t.Fatal(err)
		}
		ob.Store = st
		stop := runOutbox(t, ob)
		if err := ob.Report(delta(7)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return ob.Queued() == 0 })
		stop()
		ob.Close()
	}
	if u := mustLocal(svc).Usage("example.com", "alice"); u.Messages != 2 || u.Bytes != 14 {
		t.Fatalf("usage = %+v, want both changes counted", u)
	}
}

func TestApplyUsageReportInvalid(t *testing.T) {
	svc, _ := MustOpenPrimary(t)
	ctx := service.SystemContext(context.Background(), "test")
	for _, r := range []mailcluster.UsageReport{
		{Node: "bad name", Epoch: "e", Deltas: []mailcluster.UsageDelta{{Seq: 1, Domain: "example.com", Mailbox: "alice"}}},
		{Node: "n1", Epoch: "", Deltas: []mailcluster.UsageDelta{{Seq: 1, Domain: "example.com", Mailbox: "alice"}}},
		{Node: "n1", Epoch: "e", Deltas: []mailcluster.UsageDelta{{Seq: 0, Domain: "example.com", Mailbox: "alice"}}},
		{Node: "n1", Epoch: "e", Deltas: []mailcluster.UsageDelta{{Seq: 1, Domain: "example.com", Mailbox: "a/b"}}},
	} {
		if _, err := svc.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r); mailcluster.ErrorCode(err) != mailcluster.EINVALID {
			t.Errorf("report %+v: %v", r, err)
		}
	}
}
