package gcfloor

import "runtime/debug"

// RuntimePercent returns the GC percentage in effect, read under the
// floor's lock so that no adjustment runs between the two calls.
func RuntimePercent() int {
	state.mu.Lock()
	defer state.mu.Unlock()
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Armed returns how many sentinels are armed: one while a floor is set,
// none some collections after the last is released.
func Armed() int {
	state.mu.Lock()
	defer state.mu.Unlock()
	return state.armed
}
