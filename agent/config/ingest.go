package config

import (
	"fmt"
	"strings"
	"time"
)

// IngestConfig maps MQTT topics and payloads to readings.
type IngestConfig struct {
	Topics     []TopicConfig `yaml:"topics"`
	MaxPayload ByteSize      `yaml:"max_payload"`
	MaxSensors int           `yaml:"max_sensors"`
	MaxSkew    time.Duration `yaml:"max_skew"`
	MaxIDLen   int           `yaml:"max_id_len"`
}

// TopicConfig is one topic template and the codec for its payloads. The
// template syntax and codecs are checked in full by ingest.New (package
// agent/ingest), whose errors use the same key paths.
type TopicConfig struct {
	Pattern    string `yaml:"pattern"`     // "sensors/{sensor}/{kind}"; {sensor+} spans levels; + and # as in MQTT
	Format     string `yaml:"format"`      // json, number, auto
	Value      string `yaml:"value"`       // JSON field path of the value, "a.b.c"
	Time       string `yaml:"time"`        // JSON field path of the timestamp; "" = arrival
	TimeFormat string `yaml:"time_format"` // auto (default), unix_s, unix_ms, unix_us, unix_ns, rfc3339
	Sensor     string `yaml:"sensor"`      // JSON field path of a sensor id that overrides {sensor}
	Kind       string `yaml:"kind"`        // fixed kind when the pattern has no {kind}
	Unit       string `yaml:"unit"`        // fixed unit; or JSON field path via unit_field
	UnitField  string `yaml:"unit_field"`
}

// IngestFormats are the payload codecs a topic may name.
var IngestFormats = []string{"json", "number", "auto"}

// IngestTimeFormats are the timestamp formats a topic may name ("" = auto).
var IngestTimeFormats = []string{"auto", "unix_s", "unix_ms", "unix_us", "unix_ns", "rfc3339"}

func defaultIngest() IngestConfig {
	return IngestConfig{
		Topics: []TopicConfig{{
			Pattern: "sensors/{sensor}/{kind}", Format: "auto", Value: "value", Time: "ts", Sensor: "sensor",
		}},
		MaxPayload: 4096,
		MaxSensors: 10000,
		MaxSkew:    60 * time.Second,
		MaxIDLen:   128,
	}
}

func (in *IngestConfig) validate(add addFunc) {
	if len(in.Topics) == 0 {
		add("ingest.topics", "must list at least one topic template")
	}
	for i, t := range in.Topics {
		key := fmt.Sprintf("ingest.topics[%d]", i)
		if t.Pattern == "" {
			add(key+".pattern", "must not be empty")
		} else if !strings.Contains(t.Pattern, "{sensor}") && !strings.Contains(t.Pattern, "{sensor+}") && t.Sensor == "" {
			add(key+".pattern", "%q has no {sensor} placeholder and the topic no sensor field", t.Pattern)
		}
		ok := false
		for _, f := range IngestFormats {
			ok = ok || t.Format == f
		}
		if !ok {
			add(key+".format", "%q is not one of %s", t.Format, strings.Join(IngestFormats, ", "))
		}
		if t.Format != "number" && t.Value == "" {
			add(key+".value", "must name the JSON field of the value")
		}
		if t.Format == "number" {
			for _, f := range []struct{ key, val string }{{"time", t.Time}, {"sensor", t.Sensor}, {"unit_field", t.UnitField}} {
				if f.val != "" {
					add(key+"."+f.key, "format number has no fields; use json or auto")
				}
			}
		}
		if t.TimeFormat != "" {
			ok := false
			for _, f := range IngestTimeFormats {
				ok = ok || t.TimeFormat == f
			}
			if !ok {
				add(key+".time_format", "%q is not one of %s", t.TimeFormat, strings.Join(IngestTimeFormats, ", "))
			}
		}
	}
	if in.MaxPayload < 16 {
		add("ingest.max_payload", "%d bytes is too small", in.MaxPayload)
	}
	if in.MaxSensors < 1 {
		add("ingest.max_sensors", "%d must be at least 1", in.MaxSensors)
	}
	if in.MaxSkew <= 0 {
		add("ingest.max_skew", "must be positive")
	}
	if in.MaxIDLen < 1 || in.MaxIDLen > 1024 {
		add("ingest.max_id_len", "%d must be between 1 and 1024", in.MaxIDLen)
	}
}
