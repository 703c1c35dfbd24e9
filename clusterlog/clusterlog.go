// Package clusterlog keeps a node's cluster log: cluster events as JSON
// lines in <data>/logs/cluster.log, rotated past a size limit, readable
// newest first through both APIs.
package clusterlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"mailcluster"
)

// File is the cluster log of one node: JSON lines in
// <data>/logs/cluster.log, rotated to cluster.log.1 past MaxBytes.
type File struct {
	path string
	node string
	log  *slog.Logger
	// MaxBytes is the size past which the file is rotated; 0 means 10 MiB.
	MaxBytes int64

	mu sync.Mutex
}

var _ mailcluster.ClusterLog = (*File)(nil)

// NewFile returns a cluster log writing to path for node.
func NewFile(path, node string, log *slog.Logger) *File {
	return &File{path: path, node: node, log: log}
}

// Record implements mailcluster.ClusterLog; it also logs the event.
func (l *File) Record(ev mailcluster.ClusterEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.Node == "" {
		ev.Node = l.node
	}
	if ev.Level == "" {
		ev.Level = "info"
	}
	args := []any{"event", ev.Event}
	for k, v := range ev.Fields {
		args = append(args, k, v)
	}
	switch ev.Level {
	case "error":
		l.log.Error(ev.Message, args...)
	case "warn":
		l.log.Warn(ev.Message, args...)
	default:
		l.log.Info(ev.Message, args...)
	}
	line, _ := json.Marshal(ev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.appendLine(append(line, '\n')); err != nil {
		l.log.Error("writing the cluster log", "err", err)
	}
}

func (l *File) appendLine(line []byte) error {
	max := l.MaxBytes
	if max <= 0 {
		max = 10 << 20
	}
	if st, err := os.Stat(l.path); err == nil && st.Size()+int64(len(line)) > max {
		if err := os.Rename(l.path, l.path+".1"); err != nil {
			return fmt.Errorf("clusterlog: rotate log: %w", err)
		}
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("clusterlog: open log: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("clusterlog: write log: %w", err)
	}
	return f.Close()
}

// Events implements mailcluster.ClusterLog (current file only).
func (l *File) Events(limit int) ([]mailcluster.ClusterEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clusterlog: open log: %w", err)
	}
	defer f.Close()
	var out []mailcluster.ClusterEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev mailcluster.ClusterEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		out = append(out, ev)
		if len(out) > limit {
			out = out[1:]
		}
	}
	return out, sc.Err()
}
