package gcfloor_test

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"mailcluster/internal/gcfloor"
)

const mib = 1 << 20

func TestPercentFor(t *testing.T) {
	for _, tt := range []struct {
		name        string
		base        int
		floor, live uint64
		want        int
	}{
		{"SmallHeap", 100, 32 * mib, 2 * mib, 800},
		{"LiveUnknown", 100, 32 * mib, 0, 800},
		{"HeapAboveMinimum", 100, 32 * mib, 8 * mib, 300},
		{"GoalReachesFloor", 100, 32 * mib, 16 * mib, 100},
		{"MinimumReachesFloor", 100, 4 * mib, 1 * mib, 100},
		{"LargeHeap", 100, 32 * mib, 500 * mib, 100},
		{"HigherBase", 200, 32 * mib, 8 * mib, 300},
		{"HigherBaseReachesFloor", 400, 32 * mib, 8 * mib, 400},
		{"GCOff", -1, 32 * mib, 2 * mib, -1},
		{"BaseZero", 0, 32 * mib, 2 * mib, 800},
		{"LiveAboveFloor", 100, 32 * mib, 40 * mib, 100},
		{"NoFloor", 100, 0, 2 * mib, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcfloor.PercentFor(tt.base, tt.floor, tt.live); got != tt.want {
				t.Fatalf("PercentFor(%d, %d, %d) = %d, want %d", tt.base, tt.floor, tt.live, got, tt.want)
			}
		})
	}
}

// sink keeps the compiler from dropping the garbage of allocate.
var sink []byte

// allocate makes n bytes of garbage in 64 KiB pieces and returns how many
// collections ran meanwhile.
func allocate(n int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n / (64 << 10) {
		sink = make([]byte, 64<<10)
	}
	sink = nil
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// waitPercent waits until the GC percentage in effect is what ok accepts
// (the floor adjusts it after a collection, in the finalizer goroutine).
func waitPercent(t *testing.T, what string, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := gcfloor.RuntimePercent()
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percentage %d: want %s", p, what)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// waitArmed waits until want sentinels are armed (a released one goes
// at the next collection after its last finalizer ran).
func waitArmed(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gcfloor.Armed() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d sentinels armed, want %d", gcfloor.Armed(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSet(t *testing.T) {
	base := gcfloor.RuntimePercent()
	t.Cleanup(func() { debug.SetGCPercent(base) })

	t.Run("FewerCollections", func(t *testing.T) {
		runtime.GC()
		without := allocate(256 * mib)
		release := gcfloor.Set(64 * mib)
		runtime.GC()
		with := allocate(256 * mib)
		release()
		t.Logf("collections while 256 MiB were allocated: %d without a floor, %d with a floor of 64 MiB", without, with)
		if without < 24 {
			t.Fatalf("%d collections without a floor: the test heap is larger than it assumes", without)
		}
		if with < 2 || with > 12 {
			t.Fatalf("%d collections with a floor of 64 MiB, want 2 to 12 (a goal of about 64 MiB)", with)
		}
		if p := gcfloor.RuntimePercent(); p != base {
			t.Fatalf("GC percentage after release %d, want %d", p, base)
		}
	})

	t.Run("LargeLiveHeap", func(t *testing.T) {
		release := gcfloor.Set(64 * mib)
		defer release()
		waitPercent(t, "above the base while the heap is small", func(p int) bool { return p > base })
		live := make([]byte, 48*mib) // twice this is above the floor
		for i := 0; i < len(live); i += 4096 {
			live[i] = 1
		}
		waitPercent(t, "the base with 48 MiB live", func(p int) bool { return p == base })
		runtime.KeepAlive(live)
		live = nil
		waitPercent(t, "above the base again once the heap is small", func(p int) bool { return p > base })
	})

	t.Run("HighestFloor", func(t *testing.T) {
		low := gcfloor.Set(16 * mib)
		defer low()
		lowP := waitPercent(t, "above the base", func(p int) bool { return p > base })
		high := gcfloor.Set(256 * mib)
		highP := gcfloor.RuntimePercent()
		if highP <= lowP {
			t.Fatalf("GC percentage %d with floors of 16 and 256 MiB, not above %d with 16 MiB", highP, lowP)
		}
		high()
		high() // a second release does nothing
		if p := gcfloor.RuntimePercent(); p >= highP || p <= base {
			t.Fatalf("GC percentage %d after releasing the higher floor, want between %d and %d", p, base, highP)
		}
		low()
		if p := gcfloor.RuntimePercent(); p != base {
			t.Fatalf("GC percentage after the last release %d, want %d", p, base)
		}
	})

	t.Run("GCOff", func(t *testing.T) {
		debug.SetGCPercent(-1)
		defer debug.SetGCPercent(base)
		release := gcfloor.Set(64 * mib)
		runtime.GC()
		if p := gcfloor.RuntimePercent(); p != -1 {
			t.Fatalf("GC percentage %d with GOGC=off and a floor, want -1", p)
		}
		release()
		if p := gcfloor.RuntimePercent(); p != -1 {
			t.Fatalf("GC percentage %d after release, want -1", p)
		}
	})

	t.Run("OneSentinel", func(t *testing.T) {
		// Floors set and released one after the other leave one sentinel
		// running while set, and none once released.
		for range 3 {
			gcfloor.Set(64 * mib)()
		}
		release := gcfloor.Set(64 * mib)
		waitArmed(t, 1)
		release()
		waitArmed(t, 0)
	})

	t.Run("Zero", func(t *testing.T) {
		gcfloor.Set(0)()
		if p := gcfloor.RuntimePercent(); p != base {
			t.Fatalf("GC percentage %d with a floor of 0, want %d", p, base)
		}
	})
}
