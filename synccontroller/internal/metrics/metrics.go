// Package metrics holds the sync controller's Prometheus series, in a
// registry of its own (no global state).
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Recorder records syncs. Labels never carry secret material: provider
// names, outcomes and condition reasons only.
type Recorder struct {
	reg      *prometheus.Registry
	syncs    *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New registers the series (and the Go and process collectors).
func New() *Recorder {
	r := &Recorder{
		reg: prometheus.NewRegistry(),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secretsync_sync_total",
			Help: "SecretSync syncs by provider and outcome (written, unchanged, error).",
		}, []string{"provider", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secretsync_sync_error_total",
			Help: "Failed SecretSync syncs by provider and condition reason.",
		}, []string{"provider", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "secretsync_sync_duration_seconds",
			Help:    "Duration of one SecretSync sync: token, provider call, Secret write.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider"}),
	}
	r.reg.MustRegister(r.syncs, r.failures, r.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Sync records one sync; reason is empty unless outcome is "error".
func (r *Recorder) Sync(provider, outcome, reason string, d time.Duration) {
	r.syncs.WithLabelValues(provider, outcome).Inc()
	if reason != "" {
		r.failures.WithLabelValues(provider, reason).Inc()
	}
	r.duration.WithLabelValues(provider).Observe(d.Seconds())
}

// Handler serves the registry.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}
