// Package metrics holds the driver's Prometheus series, with the upstream
// names and labels so existing dashboards keep working.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Recorder records the driver's metrics into its own registry.
type Recorder struct {
	reg   *prometheus.Registry
	known func(provider string) bool

	publish, publishErr     *prometheus.CounterVec
	unpublish, unpublishErr *prometheus.CounterVec
	rotation, rotationErr   *prometheus.CounterVec
	rotationDur             *prometheus.HistogramVec
	syncTotal               *prometheus.CounterVec
	syncNotOwned            *prometheus.CounterVec
	syncDur                 *prometheus.HistogramVec
	publishDur              *prometheus.HistogramVec
	providerCalls           *prometheus.HistogramVec
}

// longBuckets reach minutes: a mount that waits on a slow backend is what
// an operator needs to see, and upstream's 2 s cap hides it.
var longBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

var osType = runtime.GOOS

// Config configures a Recorder.
type Config struct {
	// KnownProvider reports whether a provider name may be a label value
	// (the driver: it has a socket on this node). Other names, which any
	// SecretProviderClass author can invent, are recorded as
	// OtherProvider, so the number of series stays bounded. Nil: every
	// name is a label (tests).
	KnownProvider func(provider string) bool
}

// OtherProvider is the provider label of names KnownProvider rejects.
const OtherProvider = "other"

// New returns a Recorder with every series registered and every provider
// name a label value (tests; the driver uses NewWithConfig).
func New() *Recorder { return NewWithConfig(Config{}) }

// NewWithConfig returns a Recorder with every series registered.
func NewWithConfig(cfg Config) *Recorder {
	r := &Recorder{reg: prometheus.NewRegistry(), known: cfg.KnownProvider}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		r.reg.MustRegister(c)
		return c
	}
	hv := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: longBuckets}, labels)
		r.reg.MustRegister(h)
		return h
	}
	r.publish = cv("node_publish_total", "Successful NodePublishVolume calls.", "provider", "os_type")
	r.publishErr = cv("node_publish_error_total", "Failed NodePublishVolume calls.", "provider", "error_type", "os_type")
	r.unpublish = cv("node_unpublish_total", "Successful NodeUnpublishVolume calls.", "os_type")
	r.unpublishErr = cv("node_unpublish_error_total", "Failed NodeUnpublishVolume calls.", "os_type")
	r.rotation = cv("rotation_reconcile_total", "Rotation re-fetches.", "provider", "rotated", "os_type")
	r.rotationErr = cv("rotation_reconcile_error_total", "Failed rotation re-fetches.", "provider", "error_type", "rotated", "os_type")
	r.rotationDur = hv("rotation_reconcile_duration_sec", "Duration of a rotation re-fetch in seconds.", "os_type")
	r.syncTotal = cv("sync_k8s_secret_total", "Kubernetes Secrets created or updated from secretObjects.", "provider", "os_type")
	r.syncNotOwned = cv("sync_k8s_secret_not_owned_total", "secretObjects entries not synced because a Secret of that name exists that the driver did not create for that SecretProviderClass.", "provider", "os_type")
	r.syncDur = hv("sync_k8s_secret_duration_sec", "Duration of syncing one volume's Kubernetes Secrets in seconds.", "os_type")
	r.publishDur = hv("node_publish_duration_seconds", "Duration of NodePublishVolume calls that fetched from a provider.", "provider", "os_type")
	r.providerCalls = hv("provider_mount_duration_seconds", "Duration of Mount calls to provider plugins.", "provider", "code")
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus text format.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Registry exposes the registry (tests).
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// provider is the label value for a provider name.
func (r *Recorder) provider(name string) string {
	if r.known != nil && !r.known(name) {
		return OtherProvider
	}
	return name
}

func b(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// Publish records a NodePublishVolume outcome. errorType is "" on success.
func (r *Recorder) Publish(provider, errorType string, d time.Duration, fetched bool) {
	provider = r.provider(provider)
	if errorType == "" {
		r.publish.WithLabelValues(provider, osType).Inc()
		if fetched {
			r.publishDur.WithLabelValues(provider, osType).Observe(d.Seconds())
		}
		return
	}
	r.publishErr.WithLabelValues(provider, errorType, osType).Inc()
}

// Unpublish records a NodeUnpublishVolume outcome.
func (r *Recorder) Unpublish(failed bool) {
	if failed {
		r.unpublishErr.WithLabelValues(osType).Inc()
		return
	}
	r.unpublish.WithLabelValues(osType).Inc()
}

// Rotation records a rotation re-fetch. errorType is "" on success.
func (r *Recorder) Rotation(provider, errorType string, rotated bool, d time.Duration) {
	r.rotationDur.WithLabelValues(osType).Observe(d.Seconds())
	if errorType == "" {
		r.rotation.WithLabelValues(r.provider(provider), b(rotated), osType).Inc()
		return
	}
	r.rotationErr.WithLabelValues(r.provider(provider), errorType, b(rotated), osType).Inc()
}

// Sync records syncing one volume's Kubernetes Secrets.
func (r *Recorder) Sync(provider string, secrets int, d time.Duration) {
	r.syncTotal.WithLabelValues(r.provider(provider), osType).Add(float64(secrets))
	r.syncDur.WithLabelValues(osType).Observe(d.Seconds())
}

// SyncNotOwned counts an entry refused because its Secret belongs to
// someone else.
func (r *Recorder) SyncNotOwned(provider string) {
	r.syncNotOwned.WithLabelValues(provider, osType).Inc()
}

// ProviderCall records one Mount call to a provider.
func (r *Recorder) ProviderCall(provider, code string, d time.Duration) {
	r.providerCalls.WithLabelValues(r.provider(provider), code).Observe(d.Seconds())
}
