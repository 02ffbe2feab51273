package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's own, by route name (the HTTP ones come from package web).
type metrics struct {
	rateLimited     *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	upstreamErrors  *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	upstreamRetries *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	upstreamUp      *prometheus.GaugeVec
	clientTimeouts  *prometheus.CounterVec // gateway_client_timeouts_total, by phase
	routes          sync.Map               // route name → *routeStats
}

// routeStats are one route's series, looked up once: a label lookup hashes every label value
// under a lock, and per request that measured as much as the gateway's checks together.
type routeStats struct {
	allowed, limited, unavailable, rateLimited, authFailures, upstreamErrors prometheus.Counter
	upstreamLatency                                                          prometheus.Observer
}

func (m *metrics) route(name string) *routeStats {
	if s, ok := m.routes.Load(name); ok {
		return s.(*routeStats)
	}
	s := &routeStats{
		allowed: m.decisions.WithLabelValues(name, "allowed"), limited: m.decisions.WithLabelValues(name, "limited"),
		unavailable: m.decisions.WithLabelValues(name, "unavailable"), rateLimited: m.rateLimited.WithLabelValues(name),
		authFailures: m.authFailures.WithLabelValues(name), upstreamErrors: m.upstreamErrors.WithLabelValues(name),
		upstreamLatency: m.upstreamLatency.WithLabelValues(name),
	}
	actual, _ := m.routes.LoadOrStore(name, s)
	return actual.(*routeStats)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limited_total", Help: "Requests refused with 429, by route.",
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_auth_failures_total", Help: "Requests refused for a missing or invalid token, by route.",
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_errors_total", Help: "Requests answered 502 or 504 because the upstream failed, by route.",
		}, []string{"route"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_upstream_duration_seconds", Help: "Time until the upstream's response headers, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_retries_total",
			Help: "Requests that never reached their upstream, by upstream address and outcome: retried, or budget_exhausted (answered 502).",
		}, []string{"upstream", "outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limit_decisions_total",
			Help: "Rate-limit checks by route and decision: allowed, limited (429), or unavailable (the limiter failed; 503).",
		}, []string{"route", "decision"}),
		clientTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_client_timeouts_total",
			Help: "Requests answered 408 and closed because the client was too slow, by phase: head (REQUEST_HEADER_TIMEOUT) or body (REQUEST_BODY_MIN_RATE).",
		}, []string{"phase"}),
		upstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_upstream_up",
			Help: "1 when the last request to this upstream address got an answer, 0 when it could not be sent or got none.",
		}, []string{"upstream"}),
	}
	reg.MustRegister(m.rateLimited, m.authFailures, m.upstreamErrors, m.upstreamLatency, m.upstreamRetries, m.decisions, m.upstreamUp, m.clientTimeouts)
	return m
}
