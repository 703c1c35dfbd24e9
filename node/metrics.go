package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailcluster"
	"mailcluster/cluster"
)

// metrics is the node's Prometheus registry (served at /metrics). The
// packages add their own collectors to reg (api: HTTP requests; mailsvc:
// SMTP); the rest is defined here: the node's role and replication, read
// at scrape time (registerNode), and what the XML-API handler and the
// cluster log reports (observe).
//
// Every metric is named mailcluster_* and its labels are bounded: routes
// are route patterns, codes come from fixed tables, operations are the
// supported ones (xmlapi.OperationUnknown for any other name).
type metrics struct {
	reg        *prometheus.Registry
	certExpiry *prometheus.GaugeVec
	xmlapiOps  *prometheus.CounterVec
	blocks     prometheus.Counter
	freezes    *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mailcluster", Name: "certificate_expiry_seconds",
		Help: "Seconds until each of the cluster's certificates expires (negative when expired).",
	}, []string{"name"})
	m.xmlapiOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mailcluster", Subsystem: "xmlapi", Name: "operations_total",
		Help: "XML-API requests answered, by operation (\"none\" when refused before the envelope was read, \"unknown\" when unsupported) and <Status> id.",
	}, []string{"operation", "status"})
	m.blocks = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mailcluster", Subsystem: "screening", Name: "blocks_total",
		Help: "Client addresses blocked automatically by dynamic screening, as decided by this node (the primary).",
	})
	m.freezes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mailcluster", Subsystem: "screening", Name: "freezes_total",
		Help: "Accounts frozen, by source (auto: dynamic screening; admin: an administrator), as decided by this node (the primary).",
	}, []string{"source"})
	for _, src := range []string{"auto", "admin"} {
		m.freezes.WithLabelValues(src) // export zeros
	}
	m.reg.MustRegister(m.certExpiry, m.xmlapiOps, m.blocks, m.freezes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// xmlapiOperation counts one XML-API answer (xmlapi.Handler.OnOperation).
func (m *metrics) xmlapiOperation(operation string, status int) {
	m.xmlapiOps.WithLabelValues(operation, strconv.Itoa(status)).Inc()
}

// nodeState is what the node's role and replication metrics read at
// scrape time. Every function must be safe for concurrent use.
type nodeState struct {
	Role        func() mailcluster.Role
	Elections   func() int64         // how often this node became primary
	PrimaryTime func() time.Duration // time as primary in all
	Index       func() uint64        // the applied index of the replicated state
	Lag         func() time.Duration // replication lag; negative: never in contact
	// StateWatchErrors and ElectionWatchErrors count failed Consul watches
	// (of the replicated state and of the primary key).
	StateWatchErrors    func() uint64
	ElectionWatchErrors func() uint64
	// Replication reads the change feed's counters (zero on a standalone
	// node).
	Replication func() cluster.ReplicationStats
}

// standaloneState reads a standalone node: always primary (since it
// started), no election, no Consul.
func standaloneState(lead mailcluster.Leadership, st mailcluster.Store, started time.Time) nodeState {
	zero := func() uint64 { return 0 }
	return nodeState{
		Role:                lead.Role,
		Elections:           func() int64 { return 0 },
		PrimaryTime:         func() time.Duration { return time.Since(started) },
		Index:               st.Index,
		Lag:                 func() time.Duration { return 0 },
		StateWatchErrors:    zero,
		ElectionWatchErrors: zero,
		Replication:         func() cluster.ReplicationStats { return cluster.ReplicationStats{} },
	}
}

// clusterState reads a cluster node's election and Consul store.
func clusterState(e *cluster.Election, st *cluster.ConsulStore) nodeState {
	return nodeState{
		Role:                e.Role,
		Elections:           e.Elections,
		PrimaryTime:         e.PrimaryDuration,
		Index:               st.Index,
		Lag:                 st.Lag,
		StateWatchErrors:    st.WatchErrors,
		ElectionWatchErrors: e.WatchErrors,
		Replication:         st.Stats,
	}
}

// roles are the values of mailcluster_role's role label.
var roles = []mailcluster.Role{mailcluster.RolePrimary, mailcluster.RoleSecondary, mailcluster.RolePending, mailcluster.RoleUnknown}

// registerNode adds the role and replication metrics, read from st.
func (m *metrics) registerNode(st nodeState) {
	for _, r := range roles {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mailcluster", Name: "role",
			Help:        "The node's role: 1 for the current one, 0 for the others.",
			ConstLabels: prometheus.Labels{"role": string(r)},
		}, func() float64 {
			if st.Role() == r {
				return 1
			}
			return 0
		}))
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mailcluster", Name: "elections_total",
			Help: "How often this node became the primary (0 on a standalone node, which is always primary).",
		}, func() float64 { return float64(st.Elections()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mailcluster", Name: "primary_seconds_total",
			Help: "Seconds this node has been the primary since it started.",
		}, func() float64 { return st.PrimaryTime().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mailcluster", Subsystem: "replication", Name: "index",
			Help: "The index of the replicated state this node has applied.",
		}, func() float64 { return float64(st.Index()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mailcluster", Subsystem: "replication", Name: "lag_seconds",
			Help: "How far behind Consul this node's state may be: 0 while the watch is connected, else the time since Consul last answered; -1 before the first answer. Always 0 on a standalone node.",
		}, func() float64 {
			lag := st.Lag()
			if lag < 0 {
				return -1
			}
			return lag.Seconds()
		}),
	)
	for _, c := range []struct {
		name, help string
		read       func(cluster.ReplicationStats) uint64
	}{
		{"read_bytes_total", "Bytes of keys and values this node read from Consul to replicate the state (the feed's head and entries, and full re-reads). Divided by replication_entries_applied_total it is the cost of one replicated write.",
			func(r cluster.ReplicationStats) uint64 { return r.BytesRead }},
		{"entries_applied_total", "Change-feed entries (one per group-committed write transaction) applied to this node's state.",
			func(r cluster.ReplicationStats) uint64 { return r.EntriesApplied }},
		{"resyncs_total", "Full re-reads of the replicated state (a new node, another epoch of the feed, a feed pruned past this node's position).",
			func(r cluster.ReplicationStats) uint64 { return r.Resyncs }},
		{"external_writes_total", "Records found changed in Consul outside mailcluster and published by this node as primary.",
			func(r cluster.ReplicationStats) uint64 { return r.ExternalWrites }},
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mailcluster", Subsystem: "replication", Name: c.name, Help: c.help,
		}, func() float64 { return float64(c.read(st.Replication())) }))
	}
	for watch, n := range map[string]func() uint64{"state": st.StateWatchErrors, "election": st.ElectionWatchErrors} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mailcluster", Name: "watch_errors_total",
			Help:        "Failed Consul watches, by watch (state: the replicated state; election: the primary key). Always 0 on a standalone node.",
			ConstLabels: prometheus.Labels{"watch": watch},
		}, func() float64 { return float64(n()) }))
	}
}

// observe counts the screening decisions among the cluster events: the
// node's cluster log hands every event to it (newEventLog).
func (m *metrics) observe(ev mailcluster.ClusterEvent) {
	switch ev.Event {
	case mailcluster.EventIPBlocked:
		m.blocks.Inc()
	case mailcluster.EventAccountFrozen:
		src := ev.Fields["source"]
		if src != "auto" && src != "admin" {
			src = "other"
		}
		m.freezes.WithLabelValues(src).Inc()
	}
}

// eventLog is the node's cluster log: every event is recorded in the file
// log and then handed to each observer; reads come from the file log.
type eventLog struct {
	mailcluster.ClusterLog
	observers []func(mailcluster.ClusterEvent)
}

// newEventLog returns the cluster log that records in file and is
// observed by the metrics.
func newEventLog(file mailcluster.ClusterLog, m *metrics) eventLog {
	return eventLog{ClusterLog: file, observers: []func(mailcluster.ClusterEvent){m.observe}}
}

// Record implements mailcluster.ClusterLog.
func (l eventLog) Record(ev mailcluster.ClusterEvent) {
	l.ClusterLog.Record(ev)
	for _, o := range l.observers {
		o(ev)
	}
}
