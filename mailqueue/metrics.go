package mailqueue

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
)

// Metrics are the outbound queue's collectors:
// mailcluster_queue_messages (messages in this node's queue),
// mailcluster_queue_deferred_messages (of them, those with a failed
// attempt), mailcluster_queue_oldest_age_seconds,
// mailcluster_queue_delivered_total (recipients accepted by their
// destination), mailcluster_queue_bounced_total (recipients refused for
// good or expired), mailcluster_queue_deferred_total (attempts that left
// recipients to retry). A nil *Metrics records nothing.
type Metrics struct {
	messages  prometheus.Gauge
	deferredN prometheus.Gauge
	oldest    prometheus.Gauge
	delivered prometheus.Counter
	bounced   prometheus.Counter
	deferred  prometheus.Counter
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "mailcluster", Subsystem: "queue", Name: name, Help: help}
	}
	m := &Metrics{
		messages:  prometheus.NewGauge(prometheus.GaugeOpts(opts("messages", "Messages in this node's outbound queue."))),
		deferredN: prometheus.NewGauge(prometheus.GaugeOpts(opts("deferred_messages", "Messages in this node's outbound queue that had a failed attempt."))),
		oldest:    prometheus.NewGauge(prometheus.GaugeOpts(opts("oldest_age_seconds", "Age of the oldest message in this node's outbound queue (0 when empty)."))),
		delivered: prometheus.NewCounter(prometheus.CounterOpts(opts("delivered_total", "Recipients of queued messages accepted by their destination."))),
		bounced:   prometheus.NewCounter(prometheus.CounterOpts(opts("bounced_total", "Recipients of queued messages refused for good or expired (a DSN went to the sender)."))),
		deferred:  prometheus.NewCounter(prometheus.CounterOpts(opts("deferred_total", "Delivery attempts that left recipients to retry."))),
	}
	reg.MustRegister(m.messages, m.deferredN, m.oldest, m.delivered, m.bounced, m.deferred)
	return m
}

func (m *Metrics) attempt(delivered, bounced int, deferred bool) {
	if m == nil {
		return
	}
	m.delivered.Add(float64(delivered))
	m.bounced.Add(float64(bounced))
	if deferred {
		m.deferred.Inc()
	}
}

func (m *Metrics) set(st mailcluster.QueueStats) {
	if m == nil {
		return
	}
	m.messages.Set(float64(st.Messages))
	m.deferredN.Set(float64(st.Deferred))
	if st.Oldest.IsZero() {
		m.oldest.Set(0)
	} else {
		m.oldest.Set(time.Since(st.Oldest).Seconds())
	}
}
