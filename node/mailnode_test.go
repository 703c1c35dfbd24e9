package node_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"mailcluster"
	"mailcluster/node"
	"mailcluster/service"
)

// startMailNode starts a standalone node with an SMTP listener and the
// listeners listen adds to its configuration, with domain example.com and
// account alice@example.com (password alice-pass-1). It returns the node
// and a pool trusting the node's self-signed certificate.
func startMailNode(t *testing.T, listen func(*node.Config)) (*node.Node, *x509.CertPool) {
	t.Helper()
	data := t.TempDir()
	c := &node.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", NodeName: "n1", AdminAddress: "admin@localhost",
		AdminPassword: "admin-pass-1", SMTPAddr: "127.0.0.1:0", SMTPHostname: "mx.test"}
	listen(c)
	n := node.New(c, slog.New(slog.DiscardHandler), nil)
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := n.Service.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Service.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "alice-pass-1"}); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(data, "tls", "selfsigned.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return n, pool
}
