package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"mailcluster/schema"

	"mailcluster"
)

// ClockReading is the last clock probe of a node, published by the primary.
type ClockReading struct {
	OffsetMS int64     `json:"offsetMs"`
	Zone     string    `json:"zone"`
	Warning  string    `json:"warning,omitempty"`
	At       time.Time `json:"at"`
}

// MaxClockOffset is the clock offset past which a node is warned about.
const MaxClockOffset = time.Second

// ClockProbe runs on every node and acts on the primary: it probes each
// registered node's clock over the internal API (offset from the round
// trip, see NewClockReading), and publishes readings that changed; an
// offset over 1 s or another time zone is a warning in the cluster log
// and the status.
type ClockProbe struct {
	Store    mailcluster.Store
	Internal *InternalClient
	Self     string
	Servers  func() []mailcluster.Member
	Primary  func() bool
	Events   mailcluster.ClusterLog
	// Interval between rounds; 0 means 30 s.
	Interval time.Duration
	// Now is the local clock (its location gives the local time zone);
	// nil means time.Now.
	Now func() time.Time
}

func (p *ClockProbe) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// NewClockReading computes a node's reading from one probe: the request
// left at sent and its answer came back at received (local clock), and
// the node answered remote. The offset is the remote time minus the
// midpoint of the round trip (positive when the node's clock is ahead).
// An offset of more than MaxClockOffset either way is a warning; else a
// remote time zone other than localZone is one. At is received in UTC.
func NewClockReading(sent, received time.Time, remote TimeProbe, localZone string) ClockReading {
	mid := sent.Add(received.Sub(sent) / 2)
	offset := time.Duration(remote.UnixNano - mid.UnixNano())
	r := ClockReading{OffsetMS: offset.Milliseconds(), Zone: remote.Zone, At: received.UTC()}
	switch {
	case offset > MaxClockOffset || offset < -MaxClockOffset:
		r.Warning = fmt.Sprintf("clock differs from the primary's by %d ms (more than 1 s)", r.OffsetMS)
	case remote.Zone != localZone:
		r.Warning = fmt.Sprintf("time zone %s differs from the primary's %s", remote.Zone, localZone)
	}
	return r
}

// Run probes until ctx ends.
func (p *ClockProbe) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.Primary() {
			p.Round(ctx)
		}
	}
}

// Round probes every registered node but this one once and publishes
// the readings (Run calls it on the primary only). A node that does not
// answer within 3 s keeps its last reading.
func (p *ClockProbe) Round(ctx context.Context) {
	zone, _ := p.now().Zone()
	for _, s := range p.Servers() {
		if s.Name == p.Self {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		sent := p.now()
		tp, err := p.Internal.Time(pctx, s.APIURL)
		received := p.now()
		cancel()
		if err != nil {
			continue
		}
		p.publish(ctx, s.Name, NewClockReading(sent, received, *tp, zone))
	}
}

// publish stores a reading when it changed noticeably, and records a
// warning when one appears or changes.
func (p *ClockProbe) publish(ctx context.Context, node string, r ClockReading) {
	var old ClockReading
	kv, ok := p.Store.Get(schema.Clock(node))
	if ok {
		_ = json.Unmarshal(kv.Value, &old)
		diff := r.OffsetMS - old.OffsetMS
		if diff < 0 {
			diff = -diff
		}
		if diff < 100 && old.Warning == r.Warning && old.Zone == r.Zone {
			return
		}
	}
	b, _ := json.Marshal(r)
	if _, err := p.Store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.Clock(node), Value: b}}); err != nil {
		return
	}
	if r.Warning != "" && r.Warning != old.Warning && p.Events != nil {
		p.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventClockWarning, Message: r.Warning,
			Fields: map[string]string{"node": node, "offset_ms": strconv.FormatInt(r.OffsetMS, 10), "zone": r.Zone}})
	}
}
