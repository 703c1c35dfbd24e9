package inifiles_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

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
