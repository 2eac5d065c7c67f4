package config

import (
	"path/filepath"
	"strings"
	"time"
)

// StorageConfig is the local bbolt history (package storage).
type StorageConfig struct {
	// File is the database file; a relative path is inside data_dir.
	File string `yaml:"file"`
	// CommitInterval is the longest a reading waits for its group commit.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// MaxBatch is the number of readings that forces a commit.
	MaxBatch        int           `yaml:"max_batch"`
	RawRetention    time.Duration `yaml:"raw_retention"`
	MaxRawPerSensor int           `yaml:"max_raw_per_sensor"`
	RollupRetention time.Duration `yaml:"rollup_retention"`
	// MaxBytes is the whole-file budget; the oldest raw readings are trimmed
	// to stay within it (never alerts or the outbox).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxPendingAlerts bounds alerts held in memory while commits fail.
	MaxPendingAlerts int `yaml:"max_pending_alerts"`
	// SnapshotInterval is how often detector/filter state is saved (and
	// always on shutdown).
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
}

func defaultStorage() StorageConfig {
	return StorageConfig{
		File:             "edgeagent.db",
		CommitInterval:   100 * time.Millisecond,
		MaxBatch:         20000,
		RawRetention:     48 * time.Hour,
		MaxRawPerSensor:  200000,
		RollupRetention:  30 * 24 * time.Hour,
		MaxBytes:         256 << 20,
		MaxPendingAlerts: 10000,
		SnapshotInterval: 5 * time.Minute,
	}
}

// Path returns the database file's path for the given data_dir.
func (s *StorageConfig) Path(dataDir string) string {
	if filepath.IsAbs(s.File) {
		return s.File
	}
	return filepath.Join(dataDir, s.File)
}

func (s *StorageConfig) validate(add addFunc) {
	if s.File == "" || strings.HasSuffix(s.File, "/") {
		add("storage.file", "%q must name a file", s.File)
	}
	if s.CommitInterval <= 0 || s.CommitInterval > 10*time.Second {
		add("storage.commit_interval", "%v must be between 0 and 10s", s.CommitInterval)
	}
	if s.MaxBatch < 100 || s.MaxBatch > 1_000_000 {
		add("storage.max_batch", "%d must be between 100 and 1000000", s.MaxBatch)
	}
	if s.RawRetention <= 0 {
		add("storage.raw_retention", "must be positive")
	}
	if s.MaxRawPerSensor < 1 {
		add("storage.max_raw_per_sensor", "%d must be at least 1", s.MaxRawPerSensor)
	}
	if s.RollupRetention <= 0 {
		add("storage.rollup_retention", "must be positive")
	}
	if s.MaxBytes < 1<<20 {
		add("storage.max_bytes", "%v is below 1MB", s.MaxBytes)
	}
	if s.MaxPendingAlerts < 1 {
		add("storage.max_pending_alerts", "%d must be at least 1", s.MaxPendingAlerts)
	}
	if s.SnapshotInterval < time.Second {
		add("storage.snapshot_interval", "%v must be at least 1s", s.SnapshotInterval)
	}
}
