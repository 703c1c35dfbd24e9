package service

import (
	"context"
	"runtime"
	"sync/atomic"
)

// bcryptSlots bounds how many password checks run at once, so that a
// flood of logins queues instead of starving every other request of CPU.
var bcryptSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// bcryptBusy counts the password checks running now; bcryptPeak is the
// most that ever ran at once.
var bcryptBusy, bcryptPeak atomic.Int64

// withBcryptSlot runs f while holding a password-check slot; it gives up
// (false) when ctx ends first.
func withBcryptSlot(ctx context.Context, f func()) bool {
	select {
	case bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-bcryptSlots }()
	n := bcryptBusy.Add(1)
	defer bcryptBusy.Add(-1)
	for peak := bcryptPeak.Load(); n > peak && !bcryptPeak.CompareAndSwap(peak, n); peak = bcryptPeak.Load() {
	}
	f()
	return true
}
