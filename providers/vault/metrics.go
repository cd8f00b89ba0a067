package vault

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are provider-vault's Prometheus series.
type Metrics struct {
	calls  *prometheus.CounterVec
	mounts *prometheus.HistogramVec
	leases *prometheus.CounterVec
}

// NewMetrics registers the series with reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vault_provider_vault_requests_total",
			Help: "Vault API requests by operation (login, read, write, renew-token, renew-lease, mounts: the engine lookup of a mount without an owner) and HTTP status (0: no answer).",
		}, []string{"operation", "status"}),
		mounts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vault_provider_mount_duration_seconds",
			Help:    "Mount requests served, by result code.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"code"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vault_provider_dynamic_secrets_total",
			Help: "Dynamic secrets served per mount, by outcome (issued, kept, renewed, reissued, expired: kept but not renewed in time, issued anew).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.mounts, m.leases)
	}
	return m
}

func (m *Metrics) vaultCall(op string, status int) {
	m.calls.WithLabelValues(sanitize(op), strconv.Itoa(status)).Inc()
}

func (m *Metrics) observeMount(code string, d time.Duration) {
	m.mounts.WithLabelValues(code).Observe(d.Seconds())
}

func (m *Metrics) leaseOutcome(o string) { m.leases.WithLabelValues(o).Inc() }
