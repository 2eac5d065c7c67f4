// Package config loads edgeagent's YAML configuration: defaults for every key,
// strict decoding (an unknown key is an error with its line) and validation
// whose messages name the key path ("mqtt.listen: missing port").
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file. Each section lives in its own file.
type Config struct {
	GatewayID string         `yaml:"gateway_id"`
	DataDir   string         `yaml:"data_dir"`
	CPUs      int            `yaml:"cpus"` // GOMAXPROCS; 0: Go's default (every CPU, or the cgroup's quota)
	Log       LogConfig      `yaml:"log"`
	MQTT      MQTTConfig     `yaml:"mqtt"`
	Ingest    IngestConfig   `yaml:"ingest"`
	Pipeline  PipeConfig     `yaml:"pipeline"`
	HTTP      HTTPConfig     `yaml:"http"`
	Storage   StorageConfig  `yaml:"storage"`
	Rules     []Rule         `yaml:"rules"`
	Upstream  UpstreamConfig `yaml:"upstream"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// PipeConfig sizes the pipeline.
type PipeConfig struct {
	Shards    int `yaml:"shards"`     // 0: one per CPU
	QueueSize int `yaml:"queue_size"` // readings buffered per shard
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "edgeagent"
	}
	return Config{
		GatewayID: host,
		DataDir:   "/var/lib/edgeagent",
		CPUs:      1,
		Log:       LogConfig{Level: "info", Format: "text"},
		MQTT:      defaultMQTT(),
		Ingest:    defaultIngest(),
		Pipeline:  PipeConfig{Shards: 0, QueueSize: 4096},
		HTTP:      defaultHTTP(),
		Storage:   defaultStorage(),
		Upstream:  defaultUpstream(),
	}
}

// Load reads, decodes and validates the file at path.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over the defaults and validates the result.
func Parse(b []byte) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("yaml: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks every section and joins all problems found.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.GatewayID == "" {
		add("gateway_id", "must not be empty")
	} else if !validTopicLevel(c.GatewayID) {
		add("gateway_id", "%q must be one MQTT topic level (no '/', '+', '#')", c.GatewayID)
	}
	if c.DataDir == "" {
		add("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.CPUs < 0 || c.CPUs > 1024 {
		add("cpus", "%d must be between 0 (every CPU) and 1024", c.CPUs)
	}
	if c.Pipeline.Shards < 0 || c.Pipeline.Shards > 256 {
		add("pipeline.shards", "%d must be between 0 (one per CPU) and 256", c.Pipeline.Shards)
	}
	if c.Pipeline.QueueSize < 1 {
		add("pipeline.queue_size", "%d must be at least 1", c.Pipeline.QueueSize)
	}
	c.MQTT.validate(add)
	c.Ingest.validate(add)
	c.HTTP.validate(add)
	c.Storage.validate(add)
	validateRules(c.Rules, add)
	c.Upstream.validate(add)
	return errors.Join(errs...)
}

// Marshal renders the effective configuration as YAML.
func (c Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

type addFunc func(key, format string, args ...any)
