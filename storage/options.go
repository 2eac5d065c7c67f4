package storage

import (
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a DB. The zero value is ready to use; every default is
// applied in one place, (*Options).withDefaults.
type Options struct {
	// CommitInterval is the longest a written reading waits before its batch
	// is committed. Zero means 100ms. A batch is committed sooner when it
	// reaches MaxBatch or when someone waits for durability and the writer is
	// free.
	CommitInterval time.Duration
	// MaxBatch is the number of readings that forces a commit. Zero means
	// 20000. Write blocks (backpressure) while a full batch waits for the
	// writer; while the writer folds the journal, a batch may grow to twice
	// this, so that a fold does not stall every producer.
	MaxBatch int

	// FoldInterval is the longest committed readings stay in the journal
	// (see journal.go) before they are folded into their sensors' raw and
	// rollup buckets. Zero means 30s. Longer folds fewer times: each fold
	// rewrites about two pages per sensor it touches.
	FoldInterval time.Duration
	// FoldReadings is the journal size in readings that starts a fold.
	// Zero means 128 per known sensor, at least 20000 and at most 200000.
	FoldReadings int

	// RawRetention is how long raw readings are kept. Zero means 48h.
	RawRetention time.Duration
	// RollupRetention is how long 1-minute rollups (and resolved alerts) are
	// kept. Zero means 30 days.
	RollupRetention time.Duration
	// MaxRawPerSensor caps the raw readings of one sensor; the oldest go
	// first. Zero means 200000; negative means no cap.
	MaxRawPerSensor int
	// MaxBytes is the whole-file budget. The oldest raw readings are trimmed
	// (never alerts or the outbox) while the pages in use plus the room the
	// next commit needs exceed it: at least 20% of MaxBytes, more when
	// commits are large (a commit rewrites one leaf per sensor it touches).
	// bbolt's MaxSize is set to MaxBytes plus headroom (MaxBytes/4, at least
	// 16MiB) so growth fails with an error instead of exhausting the disk or
	// the 32-bit address space; a commit that still hits it is retried after
	// trimming instead of dropping its readings. Zero means 256MiB.
	MaxBytes int64

	// Outbox makes every alert transition also enqueue an outbox entry
	// (lane "alert") in the same commit. Set it when an uplink is configured.
	Outbox bool
	// OutboxMaxBytes bounds the outbox; over it the oldest "rollup" lane
	// entries are evicted ("alert" entries never are). Zero means 64MiB.
	OutboxMaxBytes int64
	// OutboxMaxAge evicts "rollup" lane entries older than this. Zero means 7 days.
	OutboxMaxAge time.Duration
	// Gateway is stamped into outbox alert payloads whose Alert.Gateway is empty.
	Gateway string

	// MaxPendingAlerts bounds the alerts held in memory while commits fail
	// (disk full); beyond it the oldest are dropped and counted. Zero means 10000.
	MaxPendingAlerts int
	// LockTimeout bounds the wait for the file lock. Zero means 1s.
	LockTimeout time.Duration

	// Logger receives storage events; nil discards.
	Logger *slog.Logger
	// Registerer receives the storage metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock for retention; nil means time.Now.
	Now func() time.Time
}

const (
	defaultCommitInterval   = 100 * time.Millisecond
	defaultMaxBatch         = 20000
	defaultFoldInterval     = 30 * time.Second
	defaultRawRetention     = 48 * time.Hour
	defaultRollupRetention  = 30 * 24 * time.Hour
	defaultMaxRawPerSensor  = 200000
	defaultMaxBytes         = 256 << 20
	defaultOutboxMaxBytes   = 64 << 20
	defaultOutboxMaxAge     = 7 * 24 * time.Hour
	defaultMaxPendingAlerts = 10000
	defaultLockTimeout      = time.Second

	// retentionChunk is the most keys one transaction deletes, so a commit
	// never stalls ingest for long.
	retentionChunk = 10000
	// retentionEvery is how often the writer looks for expired data when idle.
	retentionEvery = time.Second
	// retryEvery is how often a failing writer retries held alerts.
	retryEvery = time.Second
	// trimHigh is the fraction of MaxBytes in use that starts byte trimming
	// when commits are small; large commits reserve more (DB.reserve).
	trimHigh = 0.8
	// maxSizeRetries is how often a batch whose commit hit bbolt's MaxSize
	// is retried after trimming; maxSizeTrimSteps bounds the trimming
	// transactions before each retry.
	maxSizeRetries   = 4
	maxSizeTrimSteps = 32
	// maxTrimSteps bounds the byte-budget trimming transactions the writer
	// runs between two batches.
	maxTrimSteps = 64
)

func (o Options) withDefaults() Options {
	if o.CommitInterval <= 0 {
		o.CommitInterval = defaultCommitInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = defaultMaxBatch
	}
	if o.FoldInterval <= 0 {
		o.FoldInterval = defaultFoldInterval
	}
	if o.RawRetention <= 0 {
		o.RawRetention = defaultRawRetention
	}
	if o.RollupRetention <= 0 {
		o.RollupRetention = defaultRollupRetention
	}
	if o.MaxRawPerSensor == 0 {
		o.MaxRawPerSensor = defaultMaxRawPerSensor
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.OutboxMaxBytes <= 0 {
		o.OutboxMaxBytes = defaultOutboxMaxBytes
	}
	if o.OutboxMaxAge <= 0 {
		o.OutboxMaxAge = defaultOutboxMaxAge
	}
	if o.MaxPendingAlerts <= 0 {
		o.MaxPendingAlerts = defaultMaxPendingAlerts
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// maxSize is bbolt's hard ceiling for the file: the budget plus headroom.
func (o Options) maxSize() int64 {
	h := o.MaxBytes / 4
	if h < 16<<20 {
		h = 16 << 20
	}
	return o.MaxBytes + h
}
