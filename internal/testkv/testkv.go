// Package testkv opens throwaway standalone stores for tests.
package testkv

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"mailcluster/kvstore"
)

// MustOpenBoltStore opens a standalone store at path, or in a fresh temp
// dir when path is "", and closes it when the test ends.
func MustOpenBoltStore(tb testing.TB, path string) *kvstore.BoltStore {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "state.db")
	}
	s, err := kvstore.OpenBoltStore(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
