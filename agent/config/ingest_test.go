package config

import (
	"strings"
	"testing"
)

func TestParse_ingest(t *testing.T) {
	good := `
ingest:
  topics:
    - {pattern: "sensors/{sensor}/{kind}", format: json, value: "value", time: "ts", time_format: unix_ms}
    - {pattern: "gw/batch", format: json, value: "v", sensor: "id"}
    - {pattern: "esp/{sensor+}/state", format: number, kind: temperature, unit: "°C"}
`
	cfg, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.Ingest.Topics[0].TimeFormat; got != "unix_ms" {
		t.Errorf("time_format = %q", got)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"ingest:\n  topics:\n    - {pattern: \"a/{kind}\", format: json}\n", "ingest.topics[0].pattern:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: xml}\n", "ingest.topics[0].format:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: auto, time_format: unix}\n", "ingest.topics[0].time_format:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: number, time: ts}\n", "ingest.topics[0].time:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: json, value: \"\"}\n", "ingest.topics[0].value:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: json, tme: ts}\n", "tme"},
	} {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", tt.yaml, err, tt.want)
		}
	}
}

func TestParse_ingestDevices(t *testing.T) {
	good := `
ingest:
  timezone: Europe/Zurich
  homeassistant_discovery: {enabled: true}
  sparkplug: {enabled: true, groups: [plant], unit_property: engUnit}
  topics:
    - {preset: tasmota}
    - {preset: zigbee2mqtt, prefix: z2m}
    - pattern: "diy/{device}/state"
      format: json
      time: ts
      time_format: unix_ms
      values:
        - {path: env.t, kind: temperature, unit: "°C"}
        - {path: door}
    - pattern: "gw/{device}/tele"
      format: json
      time: Time
      time_format: local
      flatten: {depth: 3, root: data, exclude: [rssi, "ENERGY.TotalStartTime"]}
      units: {Power: W}
    - {pattern: "telegraf/{host}/#", id: "{host}", format: line, id_tags: [source], time_format: unix_ms}
    - {pattern: "x/{device}/status", format: liveness, online: [up], offline: [down]}
`
	cfg, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	in := cfg.Ingest
	if !in.HomeAssistant.Enabled || !in.Sparkplug.Enabled || in.Sparkplug.Groups[0] != "plant" || in.Timezone != "Europe/Zurich" {
		t.Errorf("ingest = %+v", in)
	}
	if in.Topics[1].Prefix != "z2m" || in.Topics[2].Values[0].Unit != "°C" || in.Topics[3].Flatten.Depth != 3 ||
		in.Topics[4].IDTags[0] != "source" || in.Topics[5].Offline[0] != "down" {
		t.Errorf("topics = %+v", in.Topics)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"ingest:\n  topics:\n    - {preset: tasmotta}\n", "ingest.topics[0].preset:"},
		{"ingest:\n  topics:\n    - {preset: tasmota, pattern: \"a/{sensor}\"}\n", "ingest.topics[0]: a preset takes only prefix"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{sensor}\", format: json, value: v, prefix: x}\n", "ingest.topics[0].prefix:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: number, values: [{path: a}]}\n", "ingest.topics[0].format: values and flatten"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: json, values: [{kind: t}]}\n", "ingest.topics[0].values[0].path:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: json, flatten: {depth: -1}}\n", "ingest.topics[0].flatten.depth:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: json, value: v, id_tags: [x]}\n", "ingest.topics[0].id_tags:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: number, online: [x]}\n", "ingest.topics[0].online:"},
		{"ingest:\n  timezone: Mars/Olympus\n", "ingest.timezone:"},
		{"ingest:\n  sparkplug: {groups: [\"a/b\"]}\n", "ingest.sparkplug.groups[0]:"},
		{"ingest:\n  homeassistant_discovery: {prefix: \"ha/#\"}\n", "ingest.homeassistant_discovery.prefix:"},
		{"ingest:\n  topics:\n    - {pattern: \"a/{device}\", format: json, flatten: {dept: 1}}\n", "dept"},
	} {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", tt.yaml, err, tt.want)
		}
	}
}
