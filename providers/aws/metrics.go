package aws

import (
	"context"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sscsi/secrets-store/providers/aws/awserr"
)

// Metrics are the provider's Prometheus series. Labels never carry object
// names, values or tokens: api is an AWS operation name, code an AWS error
// code or OK.
type Metrics struct {
	apiCalls      *prometheus.CounterVec
	mountDuration *prometheus.HistogramVec
}

// NewMetrics registers the series on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provider_aws_api_calls_total",
			Help: "AWS API calls made by the provider (after SDK retries), by operation and result code.",
		}, []string{"api", "code"}),
		mountDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provider_aws_mount_duration_seconds",
			Help:    "Duration of Mount calls, by result code.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"code"}),
	}
	if reg != nil {
		reg.MustRegister(m.apiCalls, m.mountDuration)
	}
	return m
}

func (m *Metrics) apiCall(api, code string) { m.apiCalls.WithLabelValues(api, code).Inc() }

func (m *Metrics) observeMount(code string, d time.Duration) {
	m.mountDuration.WithLabelValues(code).Observe(d.Seconds())
}

// APICalls returns the count for one api and code (tests and the bench).
func (m *Metrics) APICalls(api, code string) float64 {
	c, err := m.apiCalls.GetMetricWithLabelValues(api, code)
	if err != nil {
		return 0
	}
	return counterValue(c)
}

// middleware counts every SDK operation once, after its retries.
func (m *Metrics) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("sscsiAPICallMetrics",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			m.apiCall(awsmiddleware.GetOperationName(ctx), awserr.Code(err))
			return out, md, err
		}), middleware.Before)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
