package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/internal/testkv"
	"mailcluster/node"
	"mailcluster/schema"
	"mailcluster/service"
)

// TestStandaloneResumesDomainDeletion: a domain left marked as being
// deleted (a deletion stopped by a restart) is deleted once a standalone
// node starts over that state.
func TestStandaloneResumesDomainDeletion(t *testing.T) {
	dir := t.TempDir()
	st := testkv.MustOpenBoltStore(t, filepath.Join(dir, "state.db"))
	svc := service.New(st, mailcluster.StaticLeadership{}, slog.New(slog.DiscardHandler), service.Options{})
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"), mailcluster.BootstrapConfig{
		AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	d, _ := json.Marshal(mailcluster.Domain{Name: "gone.example", Deleting: &mailcluster.DomainDeletion{Since: time.Now().UTC(), By: "admin@localhost", Accounts: 150}})
	ops := []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.Domain("gone.example"), Value: d}}
	for i := range 150 {
		a, _ := json.Marshal(mailcluster.Account{Domain: "gone.example", Mailbox: fmt.Sprintf("u%03d", i)})
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account("gone.example", fmt.Sprintf("u%03d", i)), Value: a})
	}
	if _, err := st.Txn(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	n := node.New(&node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", SMTPAddr: "127.0.0.1:0", SMTPHostname: "mx.test"}, slog.New(slog.DiscardHandler), nil)
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := service.SystemContext(context.Background(), "test")
	for i := 0; ; i++ {
		_, err := n.Service.FindDomain(ctx, "gone.example")
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			break
		}
		if i == 1000 {
			t.Fatalf("the marked domain is still there after 10 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The finish is recorded after the last transaction: wait for it.
	for i := 0; ; i++ {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", "cluster.log"))
		if strings.Contains(string(b), `"event":"domain-delete-finished"`) {
			if !strings.Contains(string(b), `"accounts":"150"`) || !strings.Contains(string(b), `"resumed":"true"`) {
				t.Fatalf("cluster log:\n%s", b)
			}
			break
		}
		if i == 1000 {
			t.Fatalf("no domain-delete-finished in the cluster log:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
