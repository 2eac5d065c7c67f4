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
	// Timezone is the zone of time_format "local" times (Tasmota's Time):
	// an IANA name ("Europe/Zurich"); "" or "local" means the system's.
	Timezone string `yaml:"timezone"`
	// HomeAssistant consumes Home Assistant MQTT discovery configs (opt-in).
	HomeAssistant HADiscoveryConfig `yaml:"homeassistant_discovery"`
	// Sparkplug decodes Sparkplug B on spBv1.0/# (opt-in, read-only).
	Sparkplug SparkplugConfig `yaml:"sparkplug"`
}

// HADiscoveryConfig: Home Assistant MQTT discovery.
type HADiscoveryConfig struct {
	Enabled     bool   `yaml:"enabled"`
	Prefix      string `yaml:"prefix"`       // discovery prefix; "" = homeassistant
	MaxEntities int    `yaml:"max_entities"` // 0 = 1000
}

// SparkplugConfig: Sparkplug B decoding.
type SparkplugConfig struct {
	Enabled      bool     `yaml:"enabled"`
	Groups       []string `yaml:"groups"`        // group ids; empty = all
	UnitProperty string   `yaml:"unit_property"` // metric property holding the unit; "" = engUnit
}

// ValueConfig is one JSON leaf of a values list.
type ValueConfig struct {
	Path string `yaml:"path"` // "DS18B20.Temperature"
	Kind string `yaml:"kind"` // "" = the last path segment
	Unit string `yaml:"unit"`
}

// FlattenConfig turns every numeric leaf of a JSON object into a sensor.
type FlattenConfig struct {
	Depth   int      `yaml:"depth"` // 0 = 2
	Root    string   `yaml:"root"`  // JSON path of the object to walk; "" = the payload
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
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

	Preset string `yaml:"preset"` // tasmota, zigbee2mqtt, shelly-gen2, shelly-gen1, esphome, thin-edge
	Prefix string `yaml:"prefix"` // replaces the preset's topic prefix

	ID         string            `yaml:"id"`          // sensor id base from captures: "{device}/{channel}"
	Values     []ValueConfig     `yaml:"values"`      // mapping mode: these leaves
	Flatten    *FlattenConfig    `yaml:"flatten"`     // mapping mode: every numeric leaf
	Units      map[string]string `yaml:"units"`       // unit by leaf key in mapping mode
	UnitFields []string          `yaml:"unit_fields"` // payload fields named by units "@1", "@2"
	Kinds      map[string]string `yaml:"kinds"`       // kind by leaf key in mapping mode
	LowerKind  bool              `yaml:"lower_kind"`
	Online     []string          `yaml:"online"`  // format liveness: online payloads
	Offline    []string          `yaml:"offline"` // format liveness: offline payloads
	IDTags     []string          `yaml:"id_tags"` // format line: tags whose values join the sensor id
}

// IngestFormats are the payload codecs a topic may name.
var IngestFormats = []string{"json", "number", "auto", "liveness", "line", "ignore"}

// IngestTimeFormats are the timestamp formats a topic may name ("" = auto).
var IngestTimeFormats = []string{"auto", "unix_s", "unix_ms", "unix_us", "unix_ns", "rfc3339", "local"}

// IngestPresets are the device presets a topic may name.
var IngestPresets = []string{"tasmota", "zigbee2mqtt", "shelly-gen2", "shelly-gen1", "esphome", "thin-edge"}

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
		if t.Preset != "" {
			ok := false
			for _, p := range IngestPresets {
				ok = ok || t.Preset == p
			}
			if !ok {
				add(key+".preset", "%q is not one of %s", t.Preset, strings.Join(IngestPresets, ", "))
			}
			if t.Pattern != "" || t.Format != "" || t.Values != nil || t.Flatten != nil || t.ID != "" {
				add(key, "a preset takes only prefix")
			}
			continue
		}
		if t.Prefix != "" {
			add(key+".prefix", "only a preset has a prefix")
		}
		mapped := len(t.Values) > 0 || t.Flatten != nil
		if t.Pattern == "" {
			add(key+".pattern", "must not be empty")
		} else if !strings.Contains(t.Pattern, "{sensor") && !strings.Contains(t.Pattern, "{device") && t.ID == "" &&
			t.Sensor == "" && t.Format != "line" && t.Format != "ignore" {
			add(key+".pattern", "%q has no {sensor} placeholder and the topic no sensor field", t.Pattern)
		}
		ok := false
		for _, f := range IngestFormats {
			ok = ok || t.Format == f
		}
		if !ok {
			add(key+".format", "%q is not one of %s", t.Format, strings.Join(IngestFormats, ", "))
		}
		if (t.Format == "json" || t.Format == "auto") && !mapped && t.Value == "" {
			add(key+".value", "must name the JSON field of the value")
		}
		if mapped && t.Format != "json" {
			add(key+".format", "values and flatten need format json")
		}
		if len(t.Values) > 0 && t.Flatten != nil {
			add(key+".flatten", "values and flatten are exclusive")
		}
		for j, v := range t.Values {
			if v.Path == "" {
				add(fmt.Sprintf("%s.values[%d].path", key, j), "must not be empty")
			}
		}
		if f := t.Flatten; f != nil && (f.Depth < 0 || f.Depth > 30) {
			add(key+".flatten.depth", "%d must be between 0 (default 2) and 30", f.Depth)
		}
		if len(t.IDTags) > 0 && t.Format != "line" {
			add(key+".id_tags", "need format line")
		}
		if (len(t.Online) > 0 || len(t.Offline) > 0) && t.Format != "liveness" {
			add(key+".online", "online and offline need format liveness")
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
	if in.Timezone != "" && in.Timezone != "local" {
		if _, err := time.LoadLocation(in.Timezone); err != nil {
			add("ingest.timezone", "%q: %v", in.Timezone, err)
		}
	}
	if in.HomeAssistant.MaxEntities < 0 {
		add("ingest.homeassistant_discovery.max_entities", "%d must not be negative", in.HomeAssistant.MaxEntities)
	}
	if strings.ContainsAny(in.HomeAssistant.Prefix, "+#") {
		add("ingest.homeassistant_discovery.prefix", "%q must not hold wildcards", in.HomeAssistant.Prefix)
	}
	for i, g := range in.Sparkplug.Groups {
		if g == "" || strings.ContainsAny(g, "/+#") {
			add(fmt.Sprintf("ingest.sparkplug.groups[%d]", i), "%q is not a group id", g)
		}
	}
	if in.MaxIDLen < 1 || in.MaxIDLen > 1024 {
		add("ingest.max_id_len", "%d must be between 1 and 1024", in.MaxIDLen)
	}
}
