package inifiles_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailcluster/inifiles"
	"mailcluster/internal/testkv"

	"mailcluster"
)

func TestMaterializer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := testkv.MustOpenBoltStore(t, "")
	dir := t.TempDir()
	set := func(key, value string) {
		t.Helper()
		if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: key, Value: []byte(value)}}); err != nil {
			t.Fatal(err)
		}
	}
	set("settings/mailcluster/SMTP/Banner", "hello")
	m := inifiles.NewMaterializer(s, dir, discard())
	m.Interval = 50 * time.Millisecond
	var overwrites atomic.Int32
	m.OnOverwrite = func(file string) {
		if file == "mailcluster" {
			overwrites.Add(1)
		}
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	path := filepath.Join(dir, "mailcluster.ini")
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "Banner=hello") })

	set("settings/mailcluster/SMTP/Banner", "changed")
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "Banner=changed") })
	if n := overwrites.Load(); n != 0 {
		t.Fatalf("a change of the state was reported as %d local edits", n)
	}

	if err := os.WriteFile(path, []byte("[SMTP]\nBanner=edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "Banner=changed") })
	waitFor(t, func() bool { return overwrites.Load() == 1 })

	set("settings/other/A/B", "c")
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "other.ini")); return err == nil })
	if _, err := s.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDelete, Key: "settings/other/A/B"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "other.ini")); return os.IsNotExist(err) })
	cancel()
	<-done
}

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
