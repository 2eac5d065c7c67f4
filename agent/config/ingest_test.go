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
