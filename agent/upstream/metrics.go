package upstream

import "github.com/prometheus/client_golang/prometheus"

// Lanes of the outbox, in the order they are evicted (first) or kept (last).
const (
	LaneRollup = "rollup"
	LaneStatus = "status"
	LaneAlert  = "alert"
)

type metrics struct {
	depth      prometheus.Gauge
	bytes      prometheus.Gauge
	oldestAge  prometheus.Gauge
	connected  prometheus.Gauge
	published  prometheus.Counter
	connects   prometheus.Counter
	errors     prometheus.Counter
	evicted    map[string]prometheus.Counter // lane -> child, resolved once
	ackLatency prometheus.Histogram
}

// newMetrics builds the metrics and registers them on reg; nil registers none
// (the values still count, for State and tests).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_outbox_depth", Help: "Entries waiting in the outbox (not yet acknowledged upstream).",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_outbox_bytes", Help: "Payload bytes waiting in the outbox.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_outbox_oldest_age_seconds", Help: "Age of the oldest outbox entry; 0 when empty.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_upstream_connected", Help: "1 while the uplink is connected to the upstream broker.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_upstream_published_total", Help: "Outbox entries acknowledged (PUBACK) by the upstream broker.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_upstream_connects_total", Help: "Successful connections to the upstream broker.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_upstream_errors_total", Help: "Connection cycles that ended with an error (connect failure, lost link, ack timeout).",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_upstream_ack_latency_seconds",
			Help:    "Time from publish to PUBACK of outbox entries.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		evicted: map[string]prometheus.Counter{},
	}
	ev := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeagent_upstream_evicted_total", Help: "Outbox entries dropped by the uplink's bounds (or not forwarded), by lane.",
	}, []string{"lane"})
	for _, l := range []string{LaneRollup, LaneStatus, LaneAlert} {
		m.evicted[l] = ev.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.depth, m.bytes, m.oldestAge, m.connected, m.published, m.connects, m.errors, m.ackLatency, ev)
	}
	return m
}

// evictedChild returns the counter of lane; unknown lanes count as rollup
// (the lowest priority), so the label set stays bounded.
func (m *metrics) evictedChild(lane string) prometheus.Counter {
	if c, ok := m.evicted[lane]; ok {
		return c
	}
	return m.evicted[LaneRollup]
}
