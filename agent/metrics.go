package agent

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Rejection reasons the pipeline itself adds to those of the decoders.
const (
	ReasonTooManySensors = "too_many_sensors"
	ReasonShuttingDown   = "shutting_down"
	ReasonStorageFailed  = "storage_failed"
	ReasonAckTimeout     = "ack_timeout"
)

type pipelineMetrics struct {
	received  prometheus.Counter
	processed prometheus.Counter
	unmatched prometheus.Counter
	rejected  *prometheus.CounterVec
	children  sync.Map // reason -> prometheus.Counter, resolved once

	// The same totals as plain numbers, for Stats (status API, sd_notify).
	nReceived, nProcessed, nRejected, nUnmatched atomic.Uint64
}

func (m *pipelineMetrics) receivedOne()     { m.received.Inc(); m.nReceived.Add(1) }
func (m *pipelineMetrics) unmatchedOne()    { m.unmatched.Inc(); m.nUnmatched.Add(1) }
func (m *pipelineMetrics) processedN(n int) { m.processed.Add(float64(n)); m.nProcessed.Add(uint64(n)) }

func newPipelineMetrics(reg prometheus.Registerer) *pipelineMetrics {
	m := &pipelineMetrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_readings_received_total", Help: "Readings decoded and accepted into the pipeline.",
		}),
		processed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_readings_processed_total", Help: "Readings that went through every stage.",
		}),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_unmatched_total", Help: "Messages on topics that match no ingest template (passed through, not readings).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeagent_readings_rejected_total", Help: "Readings or payloads rejected, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonTooManySensors, ReasonShuttingDown, ReasonStorageFailed, ReasonAckTimeout} {
		m.child(r)
	}
	if reg != nil {
		reg.MustRegister(m.received, m.processed, m.unmatched, m.rejected)
	}
	return m
}

// Counted pre-creates the rejected counter of each reason so it reads 0 from the start.
func (m *pipelineMetrics) Counted(reasons ...string) {
	for _, r := range reasons {
		m.child(r)
	}
}

func (m *pipelineMetrics) child(reason string) prometheus.Counter {
	if c, ok := m.children.Load(reason); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.children.LoadOrStore(reason, m.rejected.WithLabelValues(reason))
	return c.(prometheus.Counter)
}

func (m *pipelineMetrics) reject(reason string) { m.child(reason).Inc(); m.nRejected.Add(1) }
