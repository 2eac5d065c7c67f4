package storage

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons for edgeagent_storage_dropped_total.
const (
	reasonCommitFailed  = "commit_failed"  // readings of a failed batch
	reasonClosed        = "closed"         // written after Close
	reasonAlertOverflow = "alert_overflow" // held alerts beyond MaxPendingAlerts
	reasonOutboxEvicted = "outbox_evicted" // rollup-lane outbox entries over bytes/age
	reasonRawRetention  = "raw_retention"  // raw readings past RawRetention or MaxRawPerSensor
	reasonByteBudget    = "byte_budget"    // raw readings trimmed for MaxBytes
	reasonInvalid       = "invalid"        // empty sensor or alert id, unencodable alert
)

type metrics struct {
	commits         prometheus.Counter
	commitFailures  prometheus.Counter
	sizeRetries     prometheus.Counter
	folds           prometheus.Counter
	journalReadings prometheus.Gauge
	bytesWritten    prometheus.Counter
	fileBytes       prometheus.Gauge
	readingsWritten prometheus.Counter
	commitDuration  prometheus.Histogram
	batchSize       prometheus.Histogram
	outboxDepth     prometheus.Gauge
	outboxBytes     prometheus.Gauge

	dropCommitFailed, dropClosed, dropAlertOverflow, dropOutboxEvicted,
	dropRawRetention, dropByteBudget, dropInvalid prometheus.Counter
}

// newMetrics registers on reg; with a nil reg the metrics work but are not
// exported.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	dropped := f.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeagent_storage_dropped_total",
		Help: "Readings, alerts or outbox entries storage dropped or trimmed, by reason.",
	}, []string{"reason"})
	return &metrics{
		commits: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_commits_total", Help: "Successful bbolt write transactions.",
		}),
		commitFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_commit_failures_total", Help: "Failed bbolt write transactions (disk full, I/O error, size limit).",
		}),
		sizeRetries: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_size_limit_retries_total",
			Help: "Commits that hit the file size limit (bbolt MaxSize) and were retried after trimming.",
		}),
		folds: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_journal_folds_total",
			Help: "Transactions that moved journal readings into the per-sensor buckets.",
		}),
		journalReadings: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_storage_journal_readings",
			Help: "Committed readings in the journal, not yet folded into the per-sensor buckets.",
		}),
		bytesWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_bytes_written_total",
			Help: "Bytes of pages written by committed transactions (dirty pages plus one meta page; filesystem journal not included).",
		}),
		fileBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_storage_file_bytes", Help: "Size of the database file.",
		}),
		readingsWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_storage_readings_written_total", Help: "Raw readings committed.",
		}),
		commitDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_storage_commit_duration_seconds",
			Help:    "Duration of one group commit, including fsync.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_storage_batch_readings",
			Help:    "Readings per group commit.",
			Buckets: []float64{1, 10, 100, 1000, 5000, 10000, 20000, 50000},
		}),
		outboxDepth: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_storage_outbox_entries", Help: "Entries waiting in the outbox.",
		}),
		outboxBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_storage_outbox_bytes", Help: "Bytes of keys and values in the outbox.",
		}),
		dropCommitFailed:  dropped.WithLabelValues(reasonCommitFailed),
		dropClosed:        dropped.WithLabelValues(reasonClosed),
		dropAlertOverflow: dropped.WithLabelValues(reasonAlertOverflow),
		dropOutboxEvicted: dropped.WithLabelValues(reasonOutboxEvicted),
		dropRawRetention:  dropped.WithLabelValues(reasonRawRetention),
		dropByteBudget:    dropped.WithLabelValues(reasonByteBudget),
		dropInvalid:       dropped.WithLabelValues(reasonInvalid),
	}
}
