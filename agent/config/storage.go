package config

import "time"

// StorageConfig is the local bbolt history.
type StorageConfig struct {
	CommitInterval  time.Duration `yaml:"commit_interval"`
	RawRetention    time.Duration `yaml:"raw_retention"`
	MaxRawPerSensor int           `yaml:"max_raw_per_sensor"`
	RollupRetention time.Duration `yaml:"rollup_retention"`
	MaxBytes        ByteSize      `yaml:"max_bytes"`
}

func defaultStorage() StorageConfig {
	return StorageConfig{
		CommitInterval:  100 * time.Millisecond,
		RawRetention:    48 * time.Hour,
		MaxRawPerSensor: 200000,
		RollupRetention: 30 * 24 * time.Hour,
		MaxBytes:        256 << 20,
	}
}

func (s *StorageConfig) validate(add addFunc) {
	if s.CommitInterval <= 0 || s.CommitInterval > 10*time.Second {
		add("storage.commit_interval", "%v must be between 0 and 10s", s.CommitInterval)
	}
	if s.RawRetention <= 0 {
		add("storage.raw_retention", "must be positive")
	}
	if s.RollupRetention <= 0 {
		add("storage.rollup_retention", "must be positive")
	}
	if s.MaxBytes < 1<<20 {
		add("storage.max_bytes", "%v is below 1MB", s.MaxBytes)
	}
}
