// Package gcfloor keeps the Go garbage collector from running while the
// heap is small. With the runtime's default (GOGC=100) a collection
// starts when the heap has grown to twice what the last one found live,
// and at least to 4 MiB: a node whose live heap is one or two MiB and
// which answers thousands of requests a second then collects dozens of
// times a second, and each collection has a fixed cost (stopping every
// goroutine twice, scanning stacks and globals) whatever the heap holds.
//
// A floor raises the GC percentage (runtime/debug.SetGCPercent) after
// each collection so that the next one starts when the heap reaches the
// floor, and gives the percentage back as the live heap grows: once
// twice the live heap is above the floor, the percentage in effect when
// the first floor was set (GOGC) applies unchanged. A memory limit
// (GOMEMLIMIT) still applies, as the runtime enforces it whatever the
// percentage; a GOGC of "off" is left alone.
//
// The GC is one per process; so is the floor. Several callers may set
// one (several nodes in one test process): the highest applies, and the
// percentage goes back when the last is released.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapMinimum is the runtime's least heap goal at GOGC=100; the runtime
// scales it with the percentage (at GOGC=800 no collection starts before
// the heap reaches 32 MiB, whatever is live).
const heapMinimum = 4 << 20

// liveMetric is the runtime metric of the heap the last GC found live.
const liveMetric = "/gc/heap/live:bytes"

// state is the process's floor.
var state struct {
	mu      sync.Mutex
	floors  map[*int]uint64 // set and not released, by handle
	base    int             // GC percentage when the first floor was set
	percent int             // percentage set last
	gen     int             // bumped when the last floor is released: older sentinels stop
	armed   int             // sentinels armed and not let go (one while a floor is set)
	sample  []metrics.Sample
}

// Set asks for a heap of at least floor bytes before the GC runs, until
// release is called (once; later calls do nothing). A floor of 0 asks
// nothing.
func Set(floor uint64) (release func()) {
	if floor == 0 {
		return func() {}
	}
	h := new(int)
	state.mu.Lock()
	if len(state.floors) == 0 {
		state.floors = map[*int]uint64{}
		state.base = debug.SetGCPercent(100)
		debug.SetGCPercent(state.base)
		state.percent = state.base
		state.sample = []metrics.Sample{{Name: liveMetric}}
		state.gen++
		arm(state.gen)
	}
	state.floors[h] = floor
	adjustLocked()
	state.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			state.mu.Lock()
			defer state.mu.Unlock()
			delete(state.floors, h)
			if len(state.floors) == 0 {
				state.gen++
				if state.percent != state.base {
					debug.SetGCPercent(state.base)
				}
				state.percent = state.base
				return
			}
			adjustLocked()
		})
	}
}

// PercentFor returns the GC percentage for a live heap of live bytes and
// a floor, where base is the percentage without a floor: base when the
// heap goal at base (base percent over live, and at least the runtime's
// minimum scaled by base) reaches the floor already, or base is negative
// (GOGC=off); else the percentage at which the goal is the floor. Since
// the runtime's minimum grows with the percentage, the result is at most
// floor / 4 MiB times 100, however little is live: a heap that suddenly
// grows cannot outrun the goal by more than that in one cycle.
func PercentFor(base int, floor, live uint64) int {
	if base < 0 || floor == 0 || live >= floor {
		return base
	}
	// The goal is the larger of live grown by p percent and the minimum
	// scaled by p: the first p that brings either to the floor.
	p := floor * 100 / heapMinimum
	if live > 0 {
		p = min(p, (floor-live)*100/live)
	}
	return max(int(p), base)
}

// adjustLocked sets the percentage for the live heap the last GC found.
func adjustLocked() {
	var floor uint64
	for _, f := range state.floors {
		floor = max(floor, f)
	}
	metrics.Read(state.sample)
	var live uint64
	if s := state.sample[0]; s.Value.Kind() == metrics.KindUint64 {
		live = s.Value.Uint64()
	}
	if p := PercentFor(state.base, floor, live); p != state.percent {
		debug.SetGCPercent(p)
		state.percent = p
	}
}

// sentinel is an object nothing refers to: the GC finds it unreachable in
// every cycle and queues its finalizer, which adjusts the percentage and
// sets itself again (see arm). It holds a pointer so that the runtime
// does not place it in a tiny block shared with other objects.
type sentinel struct {
	gen *int
}

// arm sets the finalizer that runs after each GC for generation gen.
func arm(gen int) {
	state.armed++
	runtime.SetFinalizer(&sentinel{gen: &gen}, afterGC)
}

// afterGC runs in the finalizer goroutine after a GC cycle.
func afterGC(s *sentinel) {
	state.mu.Lock()
	defer state.mu.Unlock()
	if *s.gen != state.gen || len(state.floors) == 0 {
		state.armed--
		return // released: let the sentinel go
	}
	adjustLocked()
	runtime.SetFinalizer(s, afterGC)
}
