//go:build clockskew

package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"mailcluster/node"
)

// maxTestClockOffset bounds --test-clock-offset.
const maxTestClockOffset = 24 * time.Hour

// A build with -tags clockskew (tests only) adds --test-clock-offset: the
// node answers the primary's clock probes with its clock shifted by this
// much, to fake a skewed clock. A normal build has no such flag, variable
// or config key.
func init() {
	testHooks = append(testHooks, testHook{
		flags: func(fs *pflag.FlagSet) {
			fs.Duration("test-clock-offset", 0, "TEST BUILD ONLY: answer clock probes with this node's clock shifted by this much")
		},
		apply: func(fs *pflag.FlagSet, n *node.Node, log *slog.Logger) error {
			offset, err := fs.GetDuration("test-clock-offset")
			if err != nil {
				return err
			}
			if offset > maxTestClockOffset || offset < -maxTestClockOffset {
				return fmt.Errorf("test-clock-offset %s: must be within ±%s", offset, maxTestClockOffset)
			}
			if offset == 0 {
				return nil
			}
			log.Warn("test build: clock probes are answered with a shifted clock", "test_clock_offset", offset.String())
			n.ProbeClock = func() time.Time { return time.Now().Add(offset) }
			return nil
		},
	})
}
