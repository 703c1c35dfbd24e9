//go:build !linux

package harness

import "os/exec"

// DieWithParent does nothing outside Linux (no parent-death signal there).
func DieWithParent(cmd *exec.Cmd) {}
