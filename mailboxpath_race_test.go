package mailcluster_test

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"mailcluster"
)

// A mailbox directory created while its path is being confined (the
// first deliveries to a new mailbox, concurrently) is resolved, never
// refused.
func TestConfineWhileTheMailboxIsCreated(t *testing.T) {
	root := t.TempDir()
	failures := 0
	for i := 0; i < 400; i++ {
		p := filepath.Join(root, "d"+strconv.Itoa(i), "box")
		var wg sync.WaitGroup
		var mu sync.Mutex
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if g == 0 {
					_ = os.MkdirAll(p, 0o750)
				}
				if _, err := mailcluster.ConfineMailboxPath(p, root); err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	if failures > 0 {
		t.Fatalf("%d confinements of a mailbox being created were refused", failures)
	}
}
