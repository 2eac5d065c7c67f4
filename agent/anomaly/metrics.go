package anomaly

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the alert metrics, shared by the engines of all shards.
// A nil *Metrics records nothing.
type Metrics struct {
	firing, resolved, flapping prometheus.Counter
	open                       prometheus.Gauge
}

// NewMetrics registers edgeagent_alerts_total{state} and
// edgeagent_alerts_open with reg; a nil reg registers nothing (the metrics
// still count, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	total := f.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeagent_alerts_total",
		Help: "Alert transitions emitted, by state (firing includes repeats).",
	}, []string{"state"})
	return &Metrics{
		firing:   total.WithLabelValues("firing"),
		resolved: total.WithLabelValues("resolved"),
		flapping: total.WithLabelValues("flapping"),
		open: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_alerts_open",
			Help: "Incidents currently firing or flapping.",
		}),
	}
}

func (m *Metrics) count(ev event) {
	if m == nil {
		return
	}
	switch ev {
	case evFiring:
		m.firing.Inc()
		m.open.Inc()
	case evRepeat:
		m.firing.Inc()
	case evFlapping:
		m.flapping.Inc()
		m.open.Inc()
	case evResolved, evFlapResolved:
		m.resolved.Inc()
		m.open.Dec()
	}
}

// restored counts an incident that was open in a restored snapshot.
func (m *Metrics) restored() {
	if m != nil {
		m.open.Inc()
	}
}
