package mailstore_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailcluster/mailstore"
)

// benchMessage is a message of about 10 KiB, as the APPEND bench sends.
var benchMessage = func() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@remote.test\r\nTo: alice@example.com\r\nSubject: bench\r\n\r\n")
	for b.Len() < 10<<10 {
		b.WriteString("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n")
	}
	return b.Bytes()
}()

// BenchmarkAppendParallel appends 10 KiB messages from 8 goroutines into
// one folder that already holds 2,000 messages, through Folder.Append (as
// an IMAP APPEND does).
func BenchmarkAppendParallel(b *testing.B) {
	e := mustStoreEnv(b)
	s := mailstore.NewStore(e.dir, e.rep, slog.New(slog.DiscardHandler), mailstore.Options{})
	if err := mailstore.Maildir(e.alice.MailboxPath).Init(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d:2,S", time.Now().Unix()-10000+int64(i), i, len(benchMessage))
		if err := os.WriteFile(filepath.Join(e.alice.MailboxPath, "cur", name), benchMessage, 0o640); err != nil {
			b.Fatal(err)
		}
	}
	inbox := mustFolder(b, e, s, "INBOX")
	if snap, err := inbox.Sync(bg); err != nil || len(snap.Messages) != 2000 {
		b.Fatalf("Sync: %v", err)
	}
	const clients = 8
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.ReportAllocs()
	b.ResetTimer()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, _, err := inbox.Append(bg, bytes.NewReader(benchMessage), "S", time.Time{}, 1<<20); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if snap, err := inbox.Sync(bg); err != nil || len(snap.Messages) != 2000+b.N {
		b.Fatalf("after: %d messages, %v; want %d", len(snap.Messages), err, 2000+b.N)
	}
}
