package certs_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/kvstore"
	"mailcluster/service"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// MustOpenPrimary returns a bootstrapped standalone service over a fresh
// bbolt store; mods set options beyond the test defaults.
func MustOpenPrimary(t *testing.T, mods ...func(*service.Options)) (*service.Service, *kvstore.BoltStore) {
	t.Helper()
	st, err := kvstore.OpenBoltStore(filepath.Join(t.TempDir(), "state.db"), discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := service.Options{BcryptCost: bcrypt.MinCost}
	for _, m := range mods {
		m(&opts)
	}
	svc := service.New(st, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: "p", APIURL: "http://127.0.0.1:1"}}, discard(), opts)
	if _, err := svc.Bootstrap(service.SystemContext(context.Background(), "test"),
		mailcluster.BootstrapConfig{AdminAddress: "admin@localhost", AdminPassword: "admin-pass-1", DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return svc, st
}
