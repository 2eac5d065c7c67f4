package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// TestIngestOptions_configDefaults checks that the default config builds a Decoder and
// that its topics are ingest's DefaultTopics.
func TestIngestOptions_configDefaults(t *testing.T) {
	opts := ingestOptions(config.Default().Ingest)
	if _, err := ingest.New(opts); err != nil {
		t.Fatalf("New(default config) = %v", err)
	}
	if !reflect.DeepEqual(opts.Topics, ingest.DefaultTopics()) {
		t.Errorf("config default topics %+v; ingest.DefaultTopics() %+v", opts.Topics, ingest.DefaultTopics())
	}
	// Every format and time format the config accepts, ingest accepts.
	for _, f := range config.IngestFormats {
		for _, tf := range append(config.IngestTimeFormats, "") {
			topic := ingest.Topic{Pattern: "a/{sensor}", Format: f, TimeFormat: ingest.TimeFormat(tf)}
			if f != "number" && f != "line" && f != "ignore" {
				topic.Value, topic.Time = "v", "ts"
			}
			if _, err := ingest.New(ingest.Options{Topics: []ingest.Topic{topic}}); err != nil {
				t.Errorf("New(format %q, time_format %q) = %v", f, tf, err)
			}
		}
	}
}

// TestIngestOptions_devices checks that every device key reaches the decoder.
func TestIngestOptions_devices(t *testing.T) {
	cfg, err := config.Parse([]byte(`
ingest:
  timezone: Europe/Zurich
  homeassistant_discovery: {enabled: true, prefix: ha}
  sparkplug: {enabled: true, groups: [plant]}
  topics:
    - {preset: tasmota, prefix: site/tele}
    - {pattern: "diy/{device}/state", format: json, values: [{path: env.t, kind: temperature, unit: "°C"}]}
    - {pattern: "gw/{device}", format: json, flatten: {depth: 1, exclude: [rssi]}, units: {p: W}}
    - {pattern: "telegraf/{host}/#", id: "{host}", format: line, id_tags: [source]}
    - {pattern: "x/{device}/status", format: liveness, online: [up], offline: [down]}
`))
	if err != nil {
		t.Fatal(err)
	}
	opts := ingestOptions(cfg.Ingest)
	if opts.Location == nil || opts.Location.String() != "Europe/Zurich" || opts.HomeAssistant.Prefix != "ha" || opts.Sparkplug.Groups[0] != "plant" {
		t.Errorf("options = %+v", opts)
	}
	d, err := ingest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	arrived := time.Now()
	for _, tt := range []struct{ topic, payload, sensor, unit string }{
		{"site/tele/ds/SENSOR", `{"DS18B20":{"Temperature":20.9},"TempUnit":"C"}`, "ds/DS18B20/Temperature", "°C"},
		{"diy/porch/state", `{"env":{"t":4.5}}`, "porch/env/t", "°C"},
		{"gw/g1", `{"p":3,"rssi":-70}`, "g1/p", "W"},
		{"telegraf/h1/cpu", `cpu,source=s1,x=y idle=1`, "h1/cpu/s1/idle", ""},
		{"x/d1/status", `down`, "d1", ""},
	} {
		out, err := d.Decode(tt.topic, []byte(tt.payload), arrived, nil)
		if err != nil || len(out) != 1 || out[0].Sensor != tt.sensor || out[0].Unit != tt.unit {
			t.Errorf("Decode(%q) = %+v, %v; want sensor %q unit %q", tt.topic, out, err, tt.sensor, tt.unit)
		}
	}
}
