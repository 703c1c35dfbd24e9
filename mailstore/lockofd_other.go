//go:build !linux

package mailstore

import "os"

// ofdHold does nothing here: takers wait on their timer.
func ofdHold(f *os.File) {}

// ofdWait returns a channel that is never closed: takers wait on their timer.
func ofdWait(path string) <-chan struct{} { return nil }

// zombie reports false here: only a process that no longer exists is gone.
func zombie(pid int) bool { return false }

// exitWait returns nil here: takers wait on their timer.
func exitWait(pid int) <-chan struct{} { return nil }
