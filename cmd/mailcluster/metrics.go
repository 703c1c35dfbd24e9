package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is the node's Prometheus registry (served at /metrics).
type metrics struct {
	reg        *prometheus.Registry
	certExpiry *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mailcluster", Name: "certificate_expiry_seconds",
		Help: "Seconds until each of the cluster's certificates expires (negative when expired).",
	}, []string{"name"})
	m.reg.MustRegister(m.certExpiry, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
