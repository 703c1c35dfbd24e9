package cluster_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"mailcluster/kvstore"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// MustOpenBoltStore opens a standalone store in a temp dir (path "") or at
// path, closed on cleanup.
func MustOpenBoltStore(tb testing.TB, path string) *kvstore.BoltStore {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "state.db")
	}
	s, err := kvstore.OpenBoltStore(path, discard())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
