package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/internal/nodeauth"
	"mailcluster/internal/testkv"
	"mailcluster/schema"
)

// TestNewClockReading checks the offset (remote time minus the midpoint
// of the round trip) and the warnings: more than 1 s either way, else
// another time zone.
func TestNewClockReading(t *testing.T) {
	sent := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	const zone = "CET"
	tests := []struct {
		name      string
		roundTrip time.Duration
		remote    time.Duration // remote time minus sent
		zone      string
		offsetMS  int64
		warning   string // substring; "" means no warning
	}{
		{name: "InSync", roundTrip: 10 * time.Millisecond, remote: 5 * time.Millisecond, zone: zone},
		// The remote answered at the very start of the round trip: it
		// is behind the midpoint by half the round trip.
		{name: "AnsweredAtSend", roundTrip: 400 * time.Millisecond, remote: 0, zone: zone, offsetMS: -200},
		{name: "AnsweredAtReceive", roundTrip: 400 * time.Millisecond, remote: 400 * time.Millisecond, zone: zone, offsetMS: 200},
		{name: "Ahead", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond + 750*time.Millisecond, zone: zone, offsetMS: 750},
		{name: "Behind", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond - 750*time.Millisecond, zone: zone, offsetMS: -750},
		{name: "AheadExactly1s", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond + time.Second, zone: zone, offsetMS: 1000},
		{name: "BehindExactly1s", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond - time.Second, zone: zone, offsetMS: -1000},
		{name: "AheadOver1s", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond + time.Second + time.Nanosecond, zone: zone,
			offsetMS: 1000, warning: "clock differs from the primary's by 1000 ms (more than 1 s)"},
		{name: "BehindOver1s", roundTrip: 20 * time.Millisecond, remote: 10*time.Millisecond - time.Second - time.Nanosecond, zone: zone,
			offsetMS: -1000, warning: "clock differs from the primary's by -1000 ms"},
		{name: "FarAhead", roundTrip: 2 * time.Millisecond, remote: time.Millisecond + time.Hour, zone: zone,
			offsetMS: 3600000, warning: "by 3600000 ms"},
		// A slow round trip hides no skew: only the midpoint counts.
		{name: "SlowRoundTrip", roundTrip: 2500 * time.Millisecond, remote: 1250 * time.Millisecond, zone: zone},
		// An odd round trip in nanoseconds: the midpoint rounds down.
		{name: "OddRoundTrip", roundTrip: 3, remote: 1 + time.Second, zone: zone, offsetMS: 1000},
		{name: "OtherZone", roundTrip: 10 * time.Millisecond, remote: 5 * time.Millisecond, zone: "UTC",
			warning: "time zone UTC differs from the primary's CET"},
		// A skew is the graver warning and wins over the zone.
		{name: "OtherZoneAndSkew", roundTrip: 10 * time.Millisecond, remote: 5*time.Millisecond + 2*time.Second, zone: "UTC",
			offsetMS: 2000, warning: "by 2000 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			received := sent.Add(tt.roundTrip)
			remote := cluster.TimeProbe{UnixNano: sent.Add(tt.remote).UnixNano(), Zone: tt.zone}
			r := cluster.NewClockReading(sent, received, remote, zone)
			if r.OffsetMS != tt.offsetMS {
				t.Errorf("offset %d ms, want %d", r.OffsetMS, tt.offsetMS)
			}
			if r.Zone != tt.zone {
				t.Errorf("zone %q, want %q", r.Zone, tt.zone)
			}
			if !r.At.Equal(received) || r.At.Location() != time.UTC {
				t.Errorf("at %v, want %v in UTC", r.At, received)
			}
			switch {
			case tt.warning == "" && r.Warning != "":
				t.Errorf("warning %q, want none", r.Warning)
			case tt.warning != "" && !strings.Contains(r.Warning, tt.warning):
				t.Errorf("warning %q, want one with %q", r.Warning, tt.warning)
			}
		})
	}
}

// steppingClock is a local clock that moves a second forward at every
// reading; it remembers the last reading.
type steppingClock struct {
	mu   sync.Mutex
	now  time.Time
	last time.Time
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	c.last = c.now
	return c.now
}

func (c *steppingClock) Last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// clockLog is a cluster log that keeps what it was given.
type clockLog struct {
	mu     sync.Mutex
	events []mailcluster.ClusterEvent
}

func (l *clockLog) Record(ev mailcluster.ClusterEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *clockLog) Events(limit int) ([]mailcluster.ClusterEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mailcluster.ClusterEvent(nil), l.events...), nil
}

// clockNode serves a node's /internal/v1/time: its clock is the prober's
// clock at the request plus half the prober's 1 s step (the midpoint of
// the round trip) plus an offset, in a zone.
type clockNode struct {
	mu     sync.Mutex
	clock  *steppingClock
	offset time.Duration
	zone   string
	calls  int
}

func (n *clockNode) set(offset time.Duration, zone string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.offset, n.zone = offset, zone
}

func (n *clockNode) Calls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

func (n *clockNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := nodeauth.NewVerifier(testKey).Verify(r, func() ([]byte, error) { return io.ReadAll(r.Body) }); err != nil ||
		r.URL.Path != "/internal/v1/time" {
		http.Error(w, "refused", http.StatusUnauthorized)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	now := n.clock.Last().Add(500 * time.Millisecond).Add(n.offset)
	_ = json.NewEncoder(w).Encode(cluster.TimeProbe{UnixNano: now.UnixNano(), Zone: n.zone})
}

// TestClockProbeRound runs rounds of the probe with an injected local
// clock against a node's real internal API, and checks the stored
// readings and the warnings in the cluster log.
func TestClockProbeRound(t *testing.T) {
	ctx := context.Background()
	store := testkv.MustOpenBoltStore(t, "")
	clock := &steppingClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))}
	node := &clockNode{clock: clock, zone: "CET"}
	srv := httptest.NewServer(node)
	t.Cleanup(srv.Close)
	events := &clockLog{}
	probe := &cluster.ClockProbe{Store: store, Self: "node1", Events: events, Now: clock.Now,
		Internal: &cluster.InternalClient{Signer: &nodeauth.Signer{Key: testKey, Node: "node1"}},
		Servers: func() []mailcluster.Member {
			return []mailcluster.Member{{Name: "node1", APIURL: "http://127.0.0.1:1"}, {Name: "node2", APIURL: srv.URL}}
		},
		Primary: func() bool { return true }}

	reading := func(t *testing.T) cluster.ClockReading {
		t.Helper()
		kv, ok := store.Get(schema.Clock("node2"))
		if !ok {
			t.Fatal("no reading stored for node2")
		}
		var r cluster.ClockReading
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	warnings := func() []mailcluster.ClusterEvent {
		evs, _ := events.Events(0)
		return evs
	}

	steps := []struct {
		name     string
		offset   time.Duration
		zone     string
		offsetMS int64
		warning  string
		events   int // warnings recorded so far
	}{
		{name: "InSync", offset: 0, zone: "CET"},
		{name: "Exactly1s", offset: time.Second, zone: "CET", offsetMS: 1000},
		{name: "Over1s", offset: time.Second + time.Millisecond, zone: "CET", offsetMS: 1001,
			warning: "clock differs from the primary's by 1001 ms (more than 1 s)", events: 1},
		{name: "BehindOver1s", offset: -3 * time.Second, zone: "CET", offsetMS: -3000,
			warning: "clock differs from the primary's by -3000 ms (more than 1 s)", events: 2},
		{name: "BackInSync", offset: 0, zone: "CET", events: 2},
		{name: "OtherZone", offset: 0, zone: "UTC", warning: "time zone UTC differs from the primary's CET", events: 3},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			node.set(st.offset, st.zone)
			before := node.Calls()
			probe.Round(ctx)
			if node.Calls() != before+1 {
				t.Fatalf("node2 probed %d times, want once", node.Calls()-before)
			}
			r := reading(t)
			if r.OffsetMS != st.offsetMS || r.Zone != st.zone || r.Warning != st.warning {
				t.Fatalf("reading = %+v, want offset %d ms, zone %s, warning %q", r, st.offsetMS, st.zone, st.warning)
			}
			if !r.At.Equal(clock.Last()) {
				t.Errorf("reading at %v, want the time of the answer %v", r.At, clock.Last())
			}
			evs := warnings()
			if len(evs) != st.events {
				t.Fatalf("%d warnings recorded, want %d: %+v", len(evs), st.events, evs)
			}
			if st.warning != "" {
				ev := evs[len(evs)-1]
				if ev.Level != "warn" || ev.Event != mailcluster.EventClockWarning || ev.Message != st.warning ||
					ev.Fields["node"] != "node2" || ev.Fields["zone"] != st.zone {
					t.Errorf("event = %+v", ev)
				}
			}
		})
	}
}
