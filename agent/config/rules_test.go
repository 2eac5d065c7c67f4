package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const exampleRules = `
rules:
  - name: boilers
    match: {sensor: "boiler-*", kind: temperature}
    filters: [{type: calibrate, scale: 1.0, offset: -0.5}, {type: median, window: 5}]
    detectors: [{type: threshold, max: 90, clear_max: 85, for: 30s}, {type: auto}]
    alert: {open: 0.8, close: 0.5, for: 0s, resolve_after: 1m, repeat: 0s}
  - name: default
    detectors: [{type: auto, threshold: 6}, {type: silence, after: 10m}]
`

func TestParse_rules(t *testing.T) {
	cfg, err := Parse([]byte(exampleRules))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if len(cfg.Rules) != 2 {
		t.Fatalf("rules = %+v", cfg.Rules)
	}
	r := cfg.Rules[0]
	if r.Name != "boilers" || r.Match != (Match{Sensor: "boiler-*", Kind: "temperature"}) ||
		len(r.Filters) != 2 || r.Filters[0].Type != "calibrate" || r.Filters[0].Offset != -0.5 || r.Filters[1].Window != 5 ||
		len(r.Detectors) != 2 || *r.Detectors[0].Max != 90 || *r.Detectors[0].ClearMax != 85 || *r.Detectors[0].For != 30*time.Second ||
		r.Alert.ResolveAfter != time.Minute || r.Alert.Open != 0.8 {
		t.Errorf("rule 0 = %+v", r)
	}
	if d := cfg.Rules[1].Detectors[1]; d.Type != "silence" || d.After != 10*time.Minute {
		t.Errorf("rule 1 detector 1 = %+v", d)
	}
	// the effective config renders and reads back the same
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal()) = %v\n%s", err, b)
	}
	if !reflect.DeepEqual(again.Rules, cfg.Rules) {
		t.Errorf("round trip:\n%+v\n%+v", again.Rules, cfg.Rules)
	}
}

func TestParse_ruleErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown detector key", `rules: [{name: a, detectors: [{type: auto}, {type: mad, windw: 5}]}]`,
			"rules[0].detectors[1].windw: unknown key (line 1)"},
		{"key of another type", `rules: [{name: a, detectors: [{type: threshold, max: 1, window: 5}]}]`,
			"rules[0].detectors[0].window: not a threshold key"},
		{"unknown filter key", "rules:\n  - name: a\n    filters:\n      - {type: ewma, half_lif: 1m}\n",
			"rules[0].filters[0].half_lif: unknown key (line 4)"},
		{"unknown rule key", `rules: [{name: a, detector: [{type: auto}]}]`, "rules[0].detector: unknown key"},
		{"unknown match key", `rules: [{name: a, match: {sensr: x}, detectors: [{type: auto}]}]`, "rules[0].match.sensr: unknown key"},
		{"unknown alert key", `rules: [{name: a, alert: {opne: 1}, detectors: [{type: auto}]}]`, "rules[0].alert.opne: unknown key"},
		{"unknown detector type", `rules: [{name: a, detectors: [{type: magic}]}]`, `rules[0].detectors[0].type: unknown detector "magic"`},
		{"missing filter type", `rules: [{name: a, filters: [{scale: 2}]}]`, "rules[0].filters[0].type: missing"},
		{"no name", `rules: [{detectors: [{type: auto}]}]`, "rules[0].name: must not be empty"},
		{"duplicate name", `rules: [{name: a, detectors: [{type: auto}]}, {name: a, detectors: [{type: auto}]}]`,
			`rules[1].name: "a" is also the name of rules[0]`},
		{"bad glob", `rules: [{name: a, match: {sensor: "["}, detectors: [{type: auto}]}]`, "rules[0].match.sensor: bad glob"},
		{"empty rule", `rules: [{name: a}]`, "rules[0]: lists no filters and no detectors"},
		{"clamp without max", `rules: [{name: a, filters: [{type: clamp, min: 0}]}]`, "rules[0].filters[0]: clamp needs min and max"},
		{"even median", `rules: [{name: a, filters: [{type: median, window: 4}]}]`, "rules[0].filters[0].window: 4 must be odd"},
		{"threshold clear above max", `rules: [{name: a, detectors: [{type: threshold, max: 5, clear_max: 6}]}]`,
			"rules[0].detectors[0].clear_max: needs max and must not be above it"},
		{"rate without limit", `rules: [{name: a, detectors: [{type: rate}]}]`, "rules[0].detectors[0].limit: must be positive"},
		{"two silences", `rules: [{name: a, detectors: [{type: silence}, {type: silence}]}]`,
			"rules[0].detectors[1]: at most one silence detector per rule"},
		{"close above open", `rules: [{name: a, detectors: [{type: auto}], alert: {open: 0.6, close: 0.7}}]`,
			"rules[0].alert.close: 0.7 must be in (0, open 0.6]"},
		{"negative for", `rules: [{name: a, detectors: [{type: auto, for: -1s}]}]`, "rules[0].detectors[0].for: must not be negative"},
		{"default with match", `rules: [{name: default, match: {kind: t}, detectors: [{type: auto}]}]`, "rules[0].match: the default rule"},
		{"bad duration", `rules: [{name: a, detectors: [{type: silence, after: soon}]}]`, "yaml: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v; want %q", tt.yaml, err, tt.want)
			}
		})
	}
}
