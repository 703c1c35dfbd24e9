package mailqueue

import (
	"strconv"
	"strings"
	"time"

	"mailcluster"
)

// Settings of [Queue] in the main ini file. Durations are Go durations
// ("90s", "4h") or whole days ("5d").
const (
	SectionQueue = mailcluster.SectionQueue
	// KeyRetrySchedule is the wait after each failed attempt, in order;
	// the last one repeats. Default "5m,10m,20m,40m,1h".
	KeyRetrySchedule = mailcluster.KeyRetrySchedule
	// KeyMaxAge is how long a message is retried before it bounces.
	// Default 5d (Postfix's maximal_queue_lifetime).
	KeyMaxAge = mailcluster.KeyQueueMaxAge
	// KeyDelayWarning is the age at which the sender is told once that the
	// message is still being retried; 0 sends none. Default 4h.
	KeyDelayWarning = mailcluster.KeyDelayWarning
	// KeyMaxPerDestination bounds the deliveries in progress to one
	// destination domain (or to the smarthost) from one node. Default 10.
	KeyMaxPerDestination = mailcluster.KeyMaxPerDestination
	// KeyMaxDeliveries bounds the deliveries in progress on one node.
	// Default 50.
	KeyMaxDeliveries = mailcluster.KeyMaxDeliveries
	// KeyTakeoverAfter is how long a node must have been gone (no session,
	// no passing health check) before the primary hands its queue to the
	// live nodes. Default 30s.
	KeyTakeoverAfter = mailcluster.KeyTakeoverAfter
)

// Defaults of [Queue].
var (
	DefaultRetrySchedule = []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}
	DefaultMaxAge        = 5 * 24 * time.Hour
	DefaultDelayWarning  = 4 * time.Hour
	DefaultTakeoverAfter = 30 * time.Second
)

const (
	DefaultMaxPerDestination = 10
	DefaultMaxDeliveries     = 50
)

// Setting reads the main ini file.
type Setting func(section, key, def string) string

func (s Setting) duration(key string, def time.Duration) time.Duration {
	if d, ok := mailcluster.ParseQueueDuration(s(SectionQueue, key, "")); ok {
		return d
	}
	return def
}

func (s Setting) count(key string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(s(SectionQueue, key, ""))); err == nil && n > 0 {
		return n
	}
	return def
}

func (s Setting) schedule() []time.Duration {
	v := s(SectionQueue, KeyRetrySchedule, "")
	if v == "" {
		return DefaultRetrySchedule
	}
	var out []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, ok := mailcluster.ParseQueueDuration(p)
		if !ok || d <= 0 {
			return DefaultRetrySchedule
		}
		out = append(out, d)
	}
	return out
}

// backoff is the wait after the n-th failed attempt (n from 1).
func backoff(schedule []time.Duration, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > len(schedule) {
		n = len(schedule)
	}
	return schedule[n-1]
}
