// Package inifiles materialises the replicated server settings as ini files
// under a node's data directory (<data>/app/<file>.ini), written
// atomically, and puts back a file edited by hand, reporting the
// overwrite.
package inifiles

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mailcluster/internal/atomicfile"
	"mailcluster/schema"

	"mailcluster"
)

// Materializer writes the replicated ini settings to <dir>/<file>.ini on
// every change, and rewrites a file edited by hand on this node's disk from
// the replicated state (the replicated state always wins).
type Materializer struct {
	store mailcluster.Store
	dir   string
	log   *slog.Logger

	// Interval is how often files on disk are compared with the state, to
	// catch edits by hand; 0 means one second.
	Interval time.Duration
	// OnOverwrite, when set, is called after a file that differed from the
	// replicated state (edited or removed by hand) has been rewritten.
	OnOverwrite func(file string)
	// Settle is how long the files are written after a change of the
	// settings at the latest, so that a burst of changes is written once;
	// 0 means 50 ms.
	Settle time.Duration

	mu   sync.Mutex
	last map[string][]byte // what was last written, per file name
}

// NewMaterializer returns a Materializer writing into dir.
func NewMaterializer(store mailcluster.Store, dir string, log *slog.Logger) *Materializer {
	return &Materializer{store: store, dir: dir, log: log, last: map[string][]byte{}}
}

// Sync writes every file whose content on disk differs from the state.
// overwrite, when not nil, is called for each file that was changed or
// removed on disk since this Materializer last wrote it (an edit by hand),
// as opposed to a file that is rewritten because the state changed.
func (m *Materializer) Sync(overwrite func(file string)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return fmt.Errorf("inifiles: settings dir: %w", err)
	}
	want := map[string]bool{}
	for _, name := range schema.ListSettingsFiles(m.store) {
		secs, _ := schema.ReadSettingsFile(m.store, name)
		body := append([]byte("; Written by mailcluster from the replicated state. Edits here are overwritten;\n; change settings through the API on the primary.\n"), mailcluster.RenderIni(secs)...)
		path := filepath.Join(m.dir, name+".ini")
		want[name+".ini"] = true
		cur, rerr := os.ReadFile(path)
		if rerr == nil && bytes.Equal(cur, body) {
			m.last[name] = body
			continue
		}
		prev, wrote := m.last[name]
		if err := atomicfile.Write(path, body, 0o644); err != nil {
			return err
		}
		m.last[name] = body
		if overwrite != nil && wrote && (rerr != nil || !bytes.Equal(cur, prev)) {
			overwrite(name)
		}
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("inifiles: settings dir: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".ini") && !want[n] && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(m.dir, n)); err != nil {
				return fmt.Errorf("inifiles: remove %s: %w", n, err)
			}
		}
	}
	return nil
}

// Run keeps the files current until ctx ends.
func (m *Materializer) Run(ctx context.Context) {
	changes, stop := m.store.Notify(schema.PrefixSettings)
	defer stop()
	interval := m.Interval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if err := m.Sync(nil); err != nil {
		m.log.Error("writing settings files", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			settle := m.Settle
			if settle <= 0 {
				settle = 50 * time.Millisecond
			}
			select { // changes arriving meanwhile are written with this one
			case <-ctx.Done():
				return
			case <-time.After(settle):
			}
			if err := m.Sync(nil); err != nil {
				m.log.Error("writing settings files", "err", err)
			}
		case <-tick.C:
			err := m.Sync(func(file string) {
				if m.OnOverwrite != nil {
					m.OnOverwrite(file)
					return
				}
				m.log.Warn("settings file on disk differed from the replicated state and was overwritten", "file", file+".ini")
			})
			if err != nil {
				m.log.Error("writing settings files", "err", err)
			}
		}
	}
}
