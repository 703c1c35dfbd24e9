package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailcluster"
)

// What the tests of package node_test reach inside the package.

var NewHTTPServer = newHTTPServer

// Metrics is the node's metrics registry.
type Metrics = metrics

func NewMetrics() *Metrics { return newMetrics() }

// NewEventLog is the node's cluster log over file, observed by m.
func NewEventLog(file mailcluster.ClusterLog, m *Metrics) mailcluster.ClusterLog {
	return newEventLog(file, m)
}

func (m *metrics) Registry() *prometheus.Registry      { return m.reg }
func (m *metrics) Blocks() prometheus.Counter          { return m.blocks }
func (m *metrics) Freezes() *prometheus.CounterVec     { return m.freezes }
func (m *metrics) XMLAPIOperation(op string, code int) { m.xmlapiOperation(op, code) }

// RegisterStandalone registers the metrics of a standalone node that
// became primary at started.
func (m *metrics) RegisterStandalone(lead mailcluster.Leadership, st mailcluster.Store, started time.Time) {
	m.registerNode(standaloneState(lead, st, started))
}
