package clusterlog_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/clusterlog"
)

func TestRecordAndEvents(t *testing.T) {
	var logs bytes.Buffer
	l := clusterlog.NewFile(filepath.Join(t.TempDir(), "cluster.log"), "n1", slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range 5 {
		l.Record(mailcluster.ClusterEvent{Event: mailcluster.EventJoin, Message: fmt.Sprintf("event %d", i)})
	}
	evs, err := l.Events(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Message != "event 2" || evs[2].Message != "event 4" {
		t.Fatalf("newest three, oldest first: %+v", evs)
	}
	if evs[0].Node != "n1" || evs[0].Level != "info" || evs[0].Time.IsZero() {
		t.Fatalf("defaults not filled in: %+v", evs[0])
	}
	if !strings.Contains(logs.String(), "event 4") {
		t.Fatal("the event was not logged")
	}
}

// TestRotation: past MaxBytes the file moves to cluster.log.1 (replacing
// an older one) and a new file starts; nothing grows without bound.
func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.log")
	l := clusterlog.NewFile(path, "n1", slog.New(slog.DiscardHandler))
	l.MaxBytes = 1024
	for i := range 60 {
		l.Record(mailcluster.ClusterEvent{Event: mailcluster.EventReplicationApplied, Message: fmt.Sprintf("applied %03d", i)})
	}
	cur, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.Stat(path + ".1")
	if err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if cur.Size() > 1024 || old.Size() > 1024 {
		t.Fatalf("sizes %d and %d, limit 1024", cur.Size(), old.Size())
	}
	evs, _ := l.Events(1000)
	if len(evs) == 0 || evs[len(evs)-1].Message != "applied 059" {
		t.Fatalf("the newest event is not in the current file: %+v", evs)
	}
	rotated, _ := os.ReadFile(path + ".1")
	if !strings.Contains(string(rotated), "applied") || strings.Contains(string(rotated), "applied 059") {
		t.Fatal("the rotated file does not hold the older events")
	}
}
